//! The MLSClient service over OpenMLS.

use std::sync::{Mutex, MutexGuard};

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls::schedule::psk::ResumptionPskUsage;
use openmls::schedule::{ExternalPsk, PreSharedKeyId, Psk};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use tonic::{Request, Response, Status};

use crate::handles::{Handles, Joiner, Member};
use crate::pb;
use crate::pb::mls_client_server::MlsClient;
use crate::wire::{self, invalid};

const NAME: &str = "OpenMLS 0.9.2";

/// Past epochs whose resumption PSK a member keeps (resumption_psk
/// proposals name an earlier epoch).
const RESUMPTION_PSKS: usize = 16;

const NO_REINIT: &str = "OpenMLS 0.9.2 cannot reinitialize a group: it has no API to \
    create a ReInit proposal, a suspended group, or a new group whose first epoch \
    uses a resumption PSK with usage reinit";
const NO_BRANCH: &str = "OpenMLS 0.9.2 cannot branch a group: it has no API to create a \
    group whose first epoch uses a resumption PSK with usage branch (PSK proposals \
    are restricted to usage application)";

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

#[derive(Default)]
pub struct Driver {
    handles: Mutex<Handles>,
}

impl Driver {
    /// All work is synchronous and short, so one lock over every handle
    /// keeps the driver simple; a panic in another request must not wedge
    /// the rest of the run.
    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handshake messages go out as PrivateMessage or PublicMessage as the
/// runner asks; incoming ones may be either, since external commits and
/// external proposals are always PublicMessage.
fn wire_format_policy(encrypt: bool) -> WireFormatPolicy {
    if encrypt {
        MIXED_CIPHERTEXT_WIRE_FORMAT_POLICY
    } else {
        MIXED_PLAINTEXT_WIRE_FORMAT_POLICY
    }
}

fn join_config(encrypt: bool) -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(wire_format_policy(encrypt))
        .use_ratchet_tree_extension(true)
        .number_of_resumption_psks(RESUMPTION_PSKS)
        .build()
}

/// A fresh signature key pair, with the private key as bytes (the
/// harness returns it from CreateKeyPackage).
fn new_signer(
    provider: &OpenMlsRustCrypto,
    cs: Ciphersuite,
) -> Result<(SignatureKeyPair, Vec<u8>), Status> {
    let scheme = cs.signature_algorithm();
    let (private, public) = provider
        .crypto()
        .signature_key_gen(scheme)
        .map_err(|e| invalid("signature key", e))?;
    Ok((
        SignatureKeyPair::from_raw(scheme, private.clone(), public),
        private,
    ))
}

fn credential_with_key(identity: &[u8], signer: &SignatureKeyPair) -> CredentialWithKey {
    CredentialWithKey {
        credential: wire::credential(identity),
        signature_key: signer.to_public_vec().into(),
    }
}

fn random(provider: &OpenMlsRustCrypto, len: usize) -> Result<Vec<u8>, Status> {
    provider
        .rand()
        .random_vec(len)
        .map_err(|e| Status::internal(format!("randomness: {e:?}")))
}

fn external_psk_id(
    provider: &OpenMlsRustCrypto,
    cs: Ciphersuite,
    id: &[u8],
) -> Result<PreSharedKeyId, Status> {
    PreSharedKeyId::new(
        cs,
        provider.rand(),
        Psk::External(ExternalPsk::new(id.to_vec())),
    )
    .map_err(|e| invalid("external PSK id", e))
}

fn resumption_psk_id(m: &Member, epoch: u64) -> Result<PreSharedKeyId, Status> {
    let nonce = random(&m.provider, m.group.ciphersuite().hash_length())?;
    Ok(PreSharedKeyId::resumption(
        ResumptionPskUsage::Application,
        m.group.group_id().clone(),
        GroupEpoch::from(epoch),
        nonce,
    ))
}

fn epoch_authenticator(group: &MlsGroup) -> Vec<u8> {
    if !group.is_active() {
        // Removed: there is no epoch to authenticate.
        return Vec::new();
    }
    group.epoch_authenticator().as_slice().to_vec()
}

/// What an incoming handshake or application message turned out to be.
enum Incoming {
    Application { plaintext: Vec<u8>, aad: Vec<u8> },
    Proposal,
    Commit,
}

fn process(m: &mut Member, bytes: &[u8]) -> Result<Incoming, Status> {
    let msg = wire::protocol_message(bytes)?;
    let processed = m
        .group
        .process_message(&m.provider, msg)
        .map_err(|e| invalid("process message", e))?;
    let aad = processed.aad().to_vec();
    match processed.into_content() {
        ProcessedMessageContent::ApplicationMessage(a) => Ok(Incoming::Application {
            plaintext: a.into_bytes(),
            aad,
        }),
        ProcessedMessageContent::ProposalMessage(p)
        | ProcessedMessageContent::ExternalJoinProposalMessage(p) => {
            m.group
                .store_pending_proposal(m.provider.storage(), *p)
                .map_err(|e| invalid("store proposal", e))?;
            Ok(Incoming::Proposal)
        }
        ProcessedMessageContent::StagedCommitMessage(c) => {
            m.group
                .merge_staged_commit(&m.provider, *c)
                .map_err(|e| invalid("merge commit", e))?;
            Ok(Incoming::Commit)
        }
        _ => Err(Status::invalid_argument("unexpected message content")),
    }
}

/// Processes the proposals the runner hands over with a commit, except
/// the member's own, which are already in its proposal store.
fn process_proposals(m: &mut Member, proposals: &[Vec<u8>]) -> Result<(), Status> {
    for p in proposals {
        if m.own_proposals.contains(p) {
            continue;
        }
        match process(m, p)? {
            Incoming::Proposal => {}
            _ => {
                return Err(Status::invalid_argument(
                    "by-reference message is not a proposal",
                ))
            }
        }
    }
    Ok(())
}

/// Records a proposal the member sent and returns it for the runner.
fn proposed(m: &mut Member, msg: MlsMessageOut) -> Reply<pb::ProposalResponse> {
    let proposal = wire::encode(&msg)?;
    m.own_proposals.insert(proposal.clone());
    ok(pb::ProposalResponse { proposal })
}

/// A proposal the committer builds and carries inline.
enum Inline {
    Add(Box<KeyPackage>),
    Remove(LeafNodeIndex),
    Psk(PreSharedKeyId),
    Extensions(Extensions<GroupContext>),
}

fn inline_proposal(m: &Member, d: &pb::ProposalDescription) -> Result<Inline, Status> {
    let cs = m.group.ciphersuite();
    match d.proposal_type.as_slice() {
        b"add" => {
            let kp = wire::key_package(&d.key_package, m.provider.crypto())?;
            Ok(Inline::Add(Box::new(kp)))
        }
        b"remove" => Ok(Inline::Remove(wire::leaf_of(
            m.group.members(),
            &d.removed_id,
        )?)),
        b"externalPSK" => Ok(Inline::Psk(external_psk_id(&m.provider, cs, &d.psk_id)?)),
        b"resumptionPSK" => Ok(Inline::Psk(resumption_psk_id(m, d.epoch_id)?)),
        b"groupContextExtensions" => Ok(Inline::Extensions(wire::extensions(&d.extensions)?)),
        b"reinit" => Err(Status::unimplemented(NO_REINIT)),
        other => Err(Status::invalid_argument(format!(
            "unknown proposal type {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

fn commit(m: &mut Member, req: &pb::CommitRequest) -> Reply<pb::CommitResponse> {
    process_proposals(m, &req.by_reference)?;
    let inline = req
        .by_value
        .iter()
        .map(|d| inline_proposal(m, d))
        .collect::<Result<Vec<_>, _>>()?;
    let Member {
        provider,
        signer,
        group,
        ..
    } = m;
    let mut builder = group
        .commit_builder()
        .consume_proposal_store(true)
        .force_self_update(req.force_path);
    for p in inline {
        builder = match p {
            Inline::Add(kp) => builder.propose_adds([*kp]),
            Inline::Remove(leaf) => builder.propose_removals([leaf]),
            Inline::Psk(id) => builder.add_proposal(Proposal::PreSharedKey(Box::new(
                PreSharedKeyProposal::new(id),
            ))),
            Inline::Extensions(e) => builder
                .propose_group_context_extensions(e)
                .map_err(|e| invalid("group context extensions", e))?,
        };
    }
    let bundle = builder
        .load_psks(provider.storage())
        .map_err(|e| invalid("load PSKs", e))?
        .use_ratchet_tree_extension(!req.external_tree)
        .build(provider.rand(), provider.crypto(), &*signer, |_| true)
        .map_err(|e| invalid("build commit", e))?
        .stage_commit(&*provider)
        .map_err(|e| invalid("stage commit", e))?;
    let welcome = match bundle.to_welcome_msg() {
        Some(w) => wire::encode(&w)?,
        None => Vec::new(),
    };
    let ratchet_tree = if req.external_tree {
        let staged = group
            .pending_commit()
            .ok_or_else(|| Status::internal("no pending commit after staging"))?;
        match staged
            .export_ratchet_tree(provider.crypto(), group.export_ratchet_tree())
            .map_err(|e| invalid("ratchet tree", e))?
        {
            Some(tree) => wire::encode(&tree)?,
            None => return Err(Status::internal("pending commit has no ratchet tree")),
        }
    } else {
        Vec::new()
    };
    ok(pb::CommitResponse {
        commit: wire::encode(bundle.commit())?,
        welcome,
        ratchet_tree,
    })
}

#[tonic::async_trait]
impl MlsClient for Driver {
    async fn name(&self, _: Request<pb::NameRequest>) -> Reply<pb::NameResponse> {
        ok(pb::NameResponse { name: NAME.into() })
    }

    async fn supported_ciphersuites(
        &self,
        _: Request<pb::SupportedCiphersuitesRequest>,
    ) -> Reply<pb::SupportedCiphersuitesResponse> {
        let provider = OpenMlsRustCrypto::default();
        let ciphersuites = provider
            .crypto()
            .supported_ciphersuites()
            .into_iter()
            .map(|cs| u32::from(u16::from(cs)))
            .collect();
        ok(pb::SupportedCiphersuitesResponse { ciphersuites })
    }

    async fn create_group(
        &self,
        req: Request<pb::CreateGroupRequest>,
    ) -> Reply<pb::CreateGroupResponse> {
        let req = req.into_inner();
        let cs = wire::ciphersuite(req.cipher_suite)?;
        let provider = OpenMlsRustCrypto::default();
        let (signer, _) = new_signer(&provider, cs)?;
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(cs)
            .wire_format_policy(wire_format_policy(req.encrypt_handshake))
            .use_ratchet_tree_extension(true)
            .number_of_resumption_psks(RESUMPTION_PSKS)
            .build();
        let group = MlsGroup::new_with_group_id(
            &provider,
            &signer,
            &config,
            GroupId::from_slice(&req.group_id),
            credential_with_key(&req.identity, &signer),
        )
        .map_err(|e| invalid("create group", e))?;
        let state_id = self.handles().add_member(Member {
            provider,
            signer,
            group,
            own_proposals: Default::default(),
        });
        ok(pb::CreateGroupResponse { state_id })
    }

    async fn create_key_package(
        &self,
        req: Request<pb::CreateKeyPackageRequest>,
    ) -> Reply<pb::CreateKeyPackageResponse> {
        let req = req.into_inner();
        let cs = wire::ciphersuite(req.cipher_suite)?;
        let provider = OpenMlsRustCrypto::default();
        let (signer, signature_priv) = new_signer(&provider, cs)?;
        let bundle = KeyPackage::builder()
            .build(
                cs,
                &provider,
                &signer,
                credential_with_key(&req.identity, &signer),
            )
            .map_err(|e| invalid("key package", e))?;
        let key_package = wire::encode(&MlsMessageOut::from(bundle.key_package().clone()))?;
        let init_priv = bundle.init_private_key().to_vec();
        let transaction_id = self.handles().add_joiner(Joiner { provider, signer });
        ok(pb::CreateKeyPackageResponse {
            transaction_id,
            key_package,
            init_priv,
            // OpenMLS exposes the leaf's private HPKE key only to its own
            // tests (feature test-utils); the runner does not use it.
            encryption_priv: Vec::new(),
            signature_priv,
        })
    }

    async fn join_group(&self, req: Request<pb::JoinGroupRequest>) -> Reply<pb::JoinGroupResponse> {
        let req = req.into_inner();
        let welcome = wire::welcome(&req.welcome)?;
        let tree = wire::ratchet_tree(&req.ratchet_tree)?;
        let mut handles = self.handles();
        // A key package is single-use: OpenMLS deletes its private keys as
        // it reads the Welcome, so the transaction ends here either way.
        let Joiner { provider, signer } = handles.take_joiner(req.transaction_id)?;
        let group = StagedWelcome::new_from_welcome(
            &provider,
            &join_config(req.encrypt_handshake),
            welcome,
            tree,
        )
        .map_err(|e| invalid("process welcome", e))?
        .into_group(&provider)
        .map_err(|e| invalid("join group", e))?;
        let epoch_authenticator = epoch_authenticator(&group);
        let state_id = handles.add_member(Member {
            provider,
            signer,
            group,
            own_proposals: Default::default(),
        });
        ok(pb::JoinGroupResponse {
            state_id,
            epoch_authenticator,
        })
    }

    async fn external_join(
        &self,
        req: Request<pb::ExternalJoinRequest>,
    ) -> Reply<pb::ExternalJoinResponse> {
        let req = req.into_inner();
        if req.remove_prior {
            // OpenMLS removes an earlier leaf only when it has the joiner's
            // signature key; the driver's joiners always have fresh keys.
            return Err(Status::unimplemented(
                "OpenMLS 0.9.2 removes a prior leaf only by matching signature key, not by identity",
            ));
        }
        let group_info = wire::group_info(&req.group_info)?;
        let cs = group_info.ciphersuite();
        let provider = OpenMlsRustCrypto::default();
        let mut psks = Vec::with_capacity(req.psks.len());
        for psk in &req.psks {
            let id = external_psk_id(&provider, cs, &psk.psk_id)?;
            id.store(&provider, &psk.psk_secret)
                .map_err(|e| invalid("store PSK", e))?;
            psks.push(PreSharedKeyProposal::new(id));
        }
        let (signer, _) = new_signer(&provider, cs)?;
        let mut builder =
            MlsGroup::external_commit_builder().with_config(join_config(req.encrypt_handshake));
        if let Some(tree) = wire::ratchet_tree(&req.ratchet_tree)? {
            builder = builder.with_ratchet_tree(tree);
        }
        let (group, bundle) = builder
            .build_group(
                &provider,
                group_info,
                credential_with_key(&req.identity, &signer),
            )
            .map_err(|e| invalid("external commit", e))?
            .add_psk_proposals(psks)
            .load_psks(provider.storage())
            .map_err(|e| invalid("load PSKs", e))?
            .build(provider.rand(), provider.crypto(), &signer, |_| true)
            .map_err(|e| invalid("build external commit", e))?
            .finalize(&provider)
            .map_err(|e| invalid("finalize external commit", e))?;
        let commit = wire::encode(bundle.commit())?;
        let epoch_authenticator = epoch_authenticator(&group);
        let state_id = self.handles().add_member(Member {
            provider,
            signer,
            group,
            own_proposals: Default::default(),
        });
        ok(pb::ExternalJoinResponse {
            state_id,
            commit,
            epoch_authenticator,
        })
    }

    async fn group_info(&self, req: Request<pb::GroupInfoRequest>) -> Reply<pb::GroupInfoResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        let gi = m
            .group
            .export_group_info(m.provider.crypto(), &m.signer, !req.external_tree)
            .map_err(|e| invalid("group info", e))?;
        let ratchet_tree = if req.external_tree {
            wire::encode(&m.group.export_ratchet_tree())?
        } else {
            Vec::new()
        };
        ok(pb::GroupInfoResponse {
            group_info: wire::encode(&gi)?,
            ratchet_tree,
        })
    }

    async fn state_auth(&self, req: Request<pb::StateAuthRequest>) -> Reply<pb::StateAuthResponse> {
        let mut handles = self.handles();
        let m = handles.member(req.into_inner().state_id)?;
        ok(pb::StateAuthResponse {
            state_auth_secret: epoch_authenticator(&m.group),
        })
    }

    async fn export(&self, req: Request<pb::ExportRequest>) -> Reply<pb::ExportResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        let exported_secret = m
            .group
            .export_secret(
                m.provider.crypto(),
                &req.label,
                &req.context,
                req.key_length as usize,
            )
            .map_err(|e| invalid("export", e))?;
        ok(pb::ExportResponse { exported_secret })
    }

    async fn protect(&self, req: Request<pb::ProtectRequest>) -> Reply<pb::ProtectResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        m.group.set_aad(req.authenticated_data);
        let msg = m
            .group
            .create_message(&m.provider, &m.signer, &req.plaintext)
            .map_err(|e| invalid("protect", e))?;
        ok(pb::ProtectResponse {
            ciphertext: wire::encode(&msg)?,
        })
    }

    async fn unprotect(&self, req: Request<pb::UnprotectRequest>) -> Reply<pb::UnprotectResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        match process(m, &req.ciphertext)? {
            Incoming::Application { plaintext, aad } => ok(pb::UnprotectResponse {
                authenticated_data: aad,
                plaintext,
            }),
            _ => Err(Status::invalid_argument("not an application message")),
        }
    }

    async fn store_psk(&self, req: Request<pb::StorePskRequest>) -> Reply<pb::StorePskResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let provider = handles.provider(req.state_or_transaction_id)?;
        // The nonce is not part of the storage key.
        PreSharedKeyId::external(req.psk_id, Vec::new())
            .store(provider, &req.psk_secret)
            .map_err(|e| invalid("store PSK", e))?;
        ok(pb::StorePskResponse {})
    }

    async fn add_proposal(
        &self,
        req: Request<pb::AddProposalRequest>,
    ) -> Reply<pb::ProposalResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        let kp = wire::key_package(&req.key_package, m.provider.crypto())?;
        let (msg, _) = m
            .group
            .propose_add_member(&m.provider, &m.signer, &kp)
            .map_err(|e| invalid("add proposal", e))?;
        proposed(m, msg)
    }

    async fn update_proposal(
        &self,
        req: Request<pb::UpdateProposalRequest>,
    ) -> Reply<pb::ProposalResponse> {
        let mut handles = self.handles();
        let m = handles.member(req.into_inner().state_id)?;
        let (msg, _) = m
            .group
            .propose_self_update(&m.provider, &m.signer, LeafNodeParameters::default())
            .map_err(|e| invalid("update proposal", e))?;
        proposed(m, msg)
    }

    async fn remove_proposal(
        &self,
        req: Request<pb::RemoveProposalRequest>,
    ) -> Reply<pb::ProposalResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        let leaf = wire::leaf_of(m.group.members(), &req.removed_id)?;
        let (msg, _) = m
            .group
            .propose_remove_member(&m.provider, &m.signer, leaf)
            .map_err(|e| invalid("remove proposal", e))?;
        proposed(m, msg)
    }

    async fn external_psk_proposal(
        &self,
        req: Request<pb::ExternalPskProposalRequest>,
    ) -> Reply<pb::ProposalResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        let id = external_psk_id(&m.provider, m.group.ciphersuite(), &req.psk_id)?;
        let (msg, _) = m
            .group
            .propose_pre_shared_key(&m.provider, &m.signer, id)
            .map_err(|e| invalid("external PSK proposal", e))?;
        proposed(m, msg)
    }

    async fn resumption_psk_proposal(
        &self,
        req: Request<pb::ResumptionPskProposalRequest>,
    ) -> Reply<pb::ProposalResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        let id = resumption_psk_id(m, req.epoch_id)?;
        let (msg, _) = m
            .group
            .propose(
                &m.provider,
                &m.signer,
                Propose::PreSharedKey(id),
                ProposalOrRefType::Reference,
            )
            .map_err(|e| invalid("resumption PSK proposal", e))?;
        proposed(m, msg)
    }

    async fn group_context_extensions_proposal(
        &self,
        req: Request<pb::GroupContextExtensionsProposalRequest>,
    ) -> Reply<pb::ProposalResponse> {
        let req = req.into_inner();
        let extensions = wire::extensions(&req.extensions)?;
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        let (msg, _) = m
            .group
            .propose_group_context_extensions(&m.provider, extensions, &m.signer)
            .map_err(|e| invalid("group context extensions proposal", e))?;
        proposed(m, msg)
    }

    async fn commit(&self, req: Request<pb::CommitRequest>) -> Reply<pb::CommitResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        commit(handles.member(req.state_id)?, &req)
    }

    async fn handle_commit(
        &self,
        req: Request<pb::HandleCommitRequest>,
    ) -> Reply<pb::HandleCommitResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        process_proposals(m, &req.proposal)?;
        match process(m, &req.commit)? {
            Incoming::Commit => {}
            _ => return Err(Status::invalid_argument("message is not a commit")),
        }
        let epoch_authenticator = epoch_authenticator(&m.group);
        let state_id = handles.advance(req.state_id)?;
        ok(pb::HandleCommitResponse {
            state_id,
            epoch_authenticator,
        })
    }

    async fn handle_pending_commit(
        &self,
        req: Request<pb::HandlePendingCommitRequest>,
    ) -> Reply<pb::HandleCommitResponse> {
        let req = req.into_inner();
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        if m.group.pending_commit().is_none() {
            return Err(Status::failed_precondition("no pending commit"));
        }
        m.group
            .merge_pending_commit(&m.provider)
            .map_err(|e| invalid("merge pending commit", e))?;
        let epoch_authenticator = epoch_authenticator(&m.group);
        let state_id = handles.advance(req.state_id)?;
        ok(pb::HandleCommitResponse {
            state_id,
            epoch_authenticator,
        })
    }

    async fn re_init_proposal(
        &self,
        _: Request<pb::ReInitProposalRequest>,
    ) -> Reply<pb::ProposalResponse> {
        Err(Status::unimplemented(NO_REINIT))
    }

    async fn re_init_commit(&self, _: Request<pb::CommitRequest>) -> Reply<pb::CommitResponse> {
        Err(Status::unimplemented(NO_REINIT))
    }

    async fn handle_pending_re_init_commit(
        &self,
        _: Request<pb::HandlePendingCommitRequest>,
    ) -> Reply<pb::HandleReInitCommitResponse> {
        Err(Status::unimplemented(NO_REINIT))
    }

    async fn handle_re_init_commit(
        &self,
        _: Request<pb::HandleCommitRequest>,
    ) -> Reply<pb::HandleReInitCommitResponse> {
        Err(Status::unimplemented(NO_REINIT))
    }

    async fn re_init_welcome(
        &self,
        _: Request<pb::ReInitWelcomeRequest>,
    ) -> Reply<pb::CreateSubgroupResponse> {
        Err(Status::unimplemented(NO_REINIT))
    }

    async fn handle_re_init_welcome(
        &self,
        _: Request<pb::HandleReInitWelcomeRequest>,
    ) -> Reply<pb::JoinGroupResponse> {
        Err(Status::unimplemented(NO_REINIT))
    }

    async fn create_branch(
        &self,
        _: Request<pb::CreateBranchRequest>,
    ) -> Reply<pb::CreateSubgroupResponse> {
        Err(Status::unimplemented(NO_BRANCH))
    }

    async fn handle_branch(
        &self,
        _: Request<pb::HandleBranchRequest>,
    ) -> Reply<pb::HandleBranchResponse> {
        Err(Status::unimplemented(NO_BRANCH))
    }

    async fn new_member_add_proposal(
        &self,
        req: Request<pb::NewMemberAddProposalRequest>,
    ) -> Reply<pb::NewMemberAddProposalResponse> {
        let req = req.into_inner();
        let group_info = wire::group_info(&req.group_info)?;
        let cs = group_info.ciphersuite();
        let provider = OpenMlsRustCrypto::default();
        let (signer, signature_priv) = new_signer(&provider, cs)?;
        let bundle = KeyPackage::builder()
            .build(
                cs,
                &provider,
                &signer,
                credential_with_key(&req.identity, &signer),
            )
            .map_err(|e| invalid("key package", e))?;
        let msg = JoinProposal::new::<<OpenMlsRustCrypto as OpenMlsProvider>::StorageProvider>(
            bundle.key_package().clone(),
            group_info.group_id().clone(),
            group_info.epoch(),
            &signer,
        )
        .map_err(|e| invalid("new member add proposal", e))?;
        let init_priv = bundle.init_private_key().to_vec();
        let transaction_id = self.handles().add_joiner(Joiner { provider, signer });
        ok(pb::NewMemberAddProposalResponse {
            transaction_id,
            proposal: wire::encode(&msg)?,
            init_priv,
            // OpenMLS exposes the leaf's private HPKE key only to its own
            // tests (feature test-utils); the runner does not use it.
            encryption_priv: Vec::new(),
            signature_priv,
        })
    }

    async fn create_external_signer(
        &self,
        req: Request<pb::CreateExternalSignerRequest>,
    ) -> Reply<pb::CreateExternalSignerResponse> {
        let req = req.into_inner();
        let cs = wire::ciphersuite(req.cipher_suite)?;
        let provider = OpenMlsRustCrypto::default();
        let (signer, _) = new_signer(&provider, cs)?;
        let sender = ExternalSender::new(
            signer.to_public_vec().into(),
            wire::credential(&req.identity),
        );
        let external_sender = wire::encode(&sender)?;
        let signer_id = self.handles().add_signer(signer);
        ok(pb::CreateExternalSignerResponse {
            signer_id,
            external_sender,
        })
    }

    async fn add_external_signer(
        &self,
        req: Request<pb::AddExternalSignerRequest>,
    ) -> Reply<pb::ProposalResponse> {
        let req = req.into_inner();
        let sender = ExternalSender::tls_deserialize_exact(req.external_sender.as_slice())
            .map_err(|e| invalid("external sender", e))?;
        let mut handles = self.handles();
        let m = handles.member(req.state_id)?;
        let mut extensions = m.group.extensions().clone();
        let mut senders = extensions.external_senders().cloned().unwrap_or_default();
        senders.push(sender);
        extensions
            .add_or_replace(Extension::ExternalSenders(senders))
            .map_err(|e| invalid("external_senders extension", e))?;
        let (msg, _) = m
            .group
            .propose_group_context_extensions(&m.provider, extensions, &m.signer)
            .map_err(|e| invalid("group context extensions proposal", e))?;
        proposed(m, msg)
    }

    async fn external_signer_proposal(
        &self,
        req: Request<pb::ExternalSignerProposalRequest>,
    ) -> Reply<pb::ProposalResponse> {
        let req = req.into_inner();
        let desc = req
            .description
            .ok_or_else(|| Status::invalid_argument("missing proposal description"))?;
        let group_info = wire::group_info(&req.group_info)?;
        let group_id = group_info.group_id().clone();
        let epoch = group_info.epoch();
        let index = SenderExtensionIndex::new(req.signer_index);
        let handles = self.handles();
        let signer = handles.signer(req.signer_id)?;
        let msg = match desc.proposal_type.as_slice() {
            b"remove" => {
                let tree = match wire::ratchet_tree(&req.ratchet_tree)? {
                    Some(tree) => tree,
                    None => group_info
                        .extensions()
                        .ratchet_tree()
                        .map(|e| e.ratchet_tree().clone())
                        .ok_or_else(|| Status::invalid_argument("no ratchet tree"))?,
                };
                let provider = OpenMlsRustCrypto::default();
                let (public, _) = PublicGroup::from_external(
                    provider.crypto(),
                    provider.storage(),
                    tree,
                    group_info,
                    ProposalStore::new(),
                )
                .map_err(|e| invalid("group from group info", e))?;
                let leaf = wire::leaf_of(public.members(), &desc.removed_id)?;
                ExternalProposal::new_remove::<OpenMlsRustCrypto>(
                    leaf, group_id, epoch, signer, index,
                )
                .map_err(|e| invalid("external remove proposal", e))?
            }
            b"add" => {
                let provider = OpenMlsRustCrypto::default();
                let kp = wire::key_package(&desc.key_package, provider.crypto())?;
                ExternalProposal::new_add::<OpenMlsRustCrypto>(kp, group_id, epoch, signer, index)
                    .map_err(|e| invalid("external add proposal", e))?
            }
            b"groupContextExtensions" => {
                ExternalProposal::new_group_context_extensions::<OpenMlsRustCrypto>(
                    wire::extensions(&desc.extensions)?,
                    group_id,
                    epoch,
                    signer,
                    index,
                )
                .map_err(|e| invalid("external group context extensions proposal", e))?
            }
            other => {
                return Err(Status::unimplemented(format!(
                    "OpenMLS 0.9.2 builds external proposals of type add, remove and \
                     groupContextExtensions only, not {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        ok(pb::ProposalResponse {
            proposal: wire::encode(&msg)?,
        })
    }

    async fn free(&self, req: Request<pb::FreeRequest>) -> Reply<pb::FreeResponse> {
        self.handles().free(req.into_inner().state_id);
        ok(pb::FreeResponse {})
    }
}
