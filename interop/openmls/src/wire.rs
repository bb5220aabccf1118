//! Decoding and encoding of the TLS-encoded MLS structures carried in the
//! harness's byte fields, with errors the runner can read.

use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::{Deserialize as _, VLBytes};
use openmls::prelude::*;
use openmls_traits::crypto::OpenMlsCrypto;
use tonic::Status;

use crate::pb;

/// An INVALID_ARGUMENT status naming what failed; OpenMLS errors carry no
/// secrets, so their debug form is safe to return.
pub fn invalid(what: &str, err: impl std::fmt::Debug) -> Status {
    Status::invalid_argument(format!("{what}: {err:?}"))
}

fn message(bytes: &[u8], what: &str) -> Result<MlsMessageBodyIn, Status> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| invalid(what, e))?;
    Ok(msg.extract())
}

pub fn key_package(bytes: &[u8], crypto: &impl OpenMlsCrypto) -> Result<KeyPackage, Status> {
    match message(bytes, "key package")? {
        MlsMessageBodyIn::KeyPackage(kp) => kp
            .validate(crypto, ProtocolVersion::Mls10)
            .map_err(|e| invalid("key package", e)),
        _ => Err(Status::invalid_argument("expected MLSMessage(KeyPackage)")),
    }
}

pub fn welcome(bytes: &[u8]) -> Result<Welcome, Status> {
    match message(bytes, "welcome")? {
        MlsMessageBodyIn::Welcome(w) => Ok(w),
        _ => Err(Status::invalid_argument("expected MLSMessage(Welcome)")),
    }
}

pub fn group_info(bytes: &[u8]) -> Result<VerifiableGroupInfo, Status> {
    match message(bytes, "group info")? {
        MlsMessageBodyIn::GroupInfo(gi) => Ok(gi),
        _ => Err(Status::invalid_argument("expected MLSMessage(GroupInfo)")),
    }
}

pub fn protocol_message(bytes: &[u8]) -> Result<ProtocolMessage, Status> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| invalid("message", e))?
        .try_into_protocol_message()
        .map_err(|e| invalid("expected PublicMessage or PrivateMessage", e))
}

/// The out-of-band ratchet tree; an empty field means none was sent.
pub fn ratchet_tree(bytes: &[u8]) -> Result<Option<RatchetTreeIn>, Status> {
    if bytes.is_empty() {
        return Ok(None);
    }
    RatchetTreeIn::tls_deserialize_exact(bytes)
        .map(Some)
        .map_err(|e| invalid("ratchet tree", e))
}

pub fn encode(value: &impl tls_codec::Serialize) -> Result<Vec<u8>, Status> {
    value
        .tls_serialize_detached()
        .map_err(|e| Status::internal(format!("encode: {e:?}")))
}

/// Converts the harness's (type, data) extensions through their wire form,
/// so OpenMLS parses known types into its own representation.
pub fn extensions(list: &[pb::Extension]) -> Result<Extensions<GroupContext>, Status> {
    let mut out = Vec::with_capacity(list.len());
    for ext in list {
        let ext_type = u16::try_from(ext.extension_type)
            .map_err(|_| Status::invalid_argument("extension type exceeds uint16"))?;
        let mut wire = ext_type.to_be_bytes().to_vec();
        wire.extend(encode(&VLBytes::new(ext.extension_data.clone()))?);
        out.push(Extension::tls_deserialize_exact(&wire).map_err(|e| invalid("extension", e))?);
    }
    Extensions::from_vec(out).map_err(|e| invalid("extensions", e))
}

/// The basic credential with the given identity.
pub fn credential(identity: &[u8]) -> Credential {
    BasicCredential::new(identity.to_vec()).into()
}

/// The leaf index of the member whose basic credential holds identity.
pub fn leaf_of(
    mut members: impl Iterator<Item = Member>,
    identity: &[u8],
) -> Result<LeafNodeIndex, Status> {
    members
        .find(|m| m.credential.serialized_content() == identity)
        .map(|m| m.index)
        .ok_or_else(|| {
            Status::invalid_argument(format!(
                "no member with identity {:?}",
                String::from_utf8_lossy(identity)
            ))
        })
}

pub fn ciphersuite(id: u32) -> Result<Ciphersuite, Status> {
    u16::try_from(id)
        .ok()
        .and_then(|id| Ciphersuite::try_from(id).ok())
        .ok_or_else(|| Status::invalid_argument(format!("unknown cipher suite {id}")))
}
