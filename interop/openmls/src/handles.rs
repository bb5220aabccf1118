//! The opaque numbers handed to the runner and what they stand for.
//!
//! OpenMLS keeps a group's state in a storage provider keyed by group id,
//! and one driver process plays several members of the same group (alice
//! and carol, or bob and dave). Every member and every pending join
//! therefore owns its own provider, and moves it along when it becomes a
//! member.

use std::collections::{HashMap, HashSet};

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use tonic::Status;

/// One member's view of a group.
pub struct Member {
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
    pub group: MlsGroup,
    /// Proposal messages this member sent: the runner hands them back with
    /// the commit that covers them, but they are already in the member's
    /// proposal store, and a PrivateMessage cannot be read by its sender.
    pub own_proposals: HashSet<Vec<u8>>,
}

/// A key package (or new-member proposal) waiting for its Welcome; its
/// private keys live in the provider's storage.
pub struct Joiner {
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
}

#[derive(Default)]
pub struct Handles {
    next: u32,
    members: HashMap<u32, Member>,
    joiners: HashMap<u32, Joiner>,
    signers: HashMap<u32, SignatureKeyPair>,
}

fn unknown(what: &str, id: u32) -> Status {
    Status::not_found(format!("unknown {what} {id}"))
}

impl Handles {
    fn id(&mut self) -> u32 {
        self.next += 1;
        self.next
    }

    pub fn add_member(&mut self, m: Member) -> u32 {
        let id = self.id();
        self.members.insert(id, m);
        id
    }

    pub fn member(&mut self, id: u32) -> Result<&mut Member, Status> {
        self.members
            .get_mut(&id)
            .ok_or_else(|| unknown("state", id))
    }

    /// Moves the member to a fresh id: the runner treats states as values
    /// and uses the id returned by the last RPC that advanced it.
    pub fn advance(&mut self, id: u32) -> Result<u32, Status> {
        let m = self
            .members
            .remove(&id)
            .ok_or_else(|| unknown("state", id))?;
        Ok(self.add_member(m))
    }

    pub fn add_joiner(&mut self, j: Joiner) -> u32 {
        let id = self.id();
        self.joiners.insert(id, j);
        id
    }

    pub fn take_joiner(&mut self, id: u32) -> Result<Joiner, Status> {
        self.joiners
            .remove(&id)
            .ok_or_else(|| unknown("transaction", id))
    }

    /// The provider of a member or joiner, for storing PSKs.
    pub fn provider(&mut self, id: u32) -> Result<&OpenMlsRustCrypto, Status> {
        if let Some(m) = self.members.get(&id) {
            return Ok(&m.provider);
        }
        self.joiners
            .get(&id)
            .map(|j| &j.provider)
            .ok_or_else(|| unknown("state or transaction", id))
    }

    pub fn add_signer(&mut self, s: SignatureKeyPair) -> u32 {
        let id = self.id();
        self.signers.insert(id, s);
        id
    }

    pub fn signer(&self, id: u32) -> Result<&SignatureKeyPair, Status> {
        self.signers
            .get(&id)
            .ok_or_else(|| unknown("external signer", id))
    }

    pub fn free(&mut self, id: u32) {
        self.members.remove(&id);
        self.joiners.remove(&id);
        self.signers.remove(&id);
    }
}
