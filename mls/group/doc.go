// Package group is the RFC 9420 group state machine: group creation (§11),
// proposals and commits (§12), Welcome messages and joining (§12.4.3),
// external commits, PSKs, reinitialisation and branching, and application
// messages. It combines the packages below it (tree, treekem, keyschedule,
// secrettree, framing, welcome) and adds the protocol rules that relate
// them: proposal-list validation and application order, when a path is
// required, who may send what.
//
// # State as values
//
// A Group is one member's view of one epoch, in three parts:
//
//   - *Public: the GroupContext, the ratchet tree, the transcript hashes,
//     the epoch secrets and the secret tree. It is the same for every
//     member, so many of our devices in one group can share one copy
//     (DESIGN §4).
//   - *Private: the member's leaf index, signature key and private tree
//     keys (treekem.PrivateState).
//   - what the member saw during the epoch: the proposals cached for
//     commits by reference, and the private keys of its own pending
//     Update proposals.
//
// Creating a commit (Commit, JoinExternal) and processing one (Handle)
// return new values and leave the receiver usable: the new epoch gets a new
// Public, a new Private and a fresh proposal cache, and the old ones stay
// as they were, so a caller can keep several branches of a group (DESIGN
// §5). A pending commit is adopted with HandlePendingCommit or simply
// dropped.
//
// # The mutations within an epoch
//
// Two things change inside an epoch, and both are guarded by mutexes:
//
//   - The secret tree's ratchets, which sending and receiving
//     PrivateMessages consume. They live in the *Public, so every Group
//     sharing that Public shares them: a generation decrypted through one
//     is consumed for all (which suits an application service that
//     decrypts each message once), and each member sends from its own
//     leaf's ratchet. A caller that wants independent ratchets per member
//     decodes a separate Public.
//   - The proposal cache and own-Update keys, which belong to the Group
//     value (not shared with states of other epochs).
//
// Everything else in a Public or Private is immutable once built.
//
// # Several members of ours in one group
//
// An application service keeps one group state per room for all of its
// devices in it (DESIGN §4): one *Public per epoch and one *Private per
// device. Under the DMLS key schedule an epoch derives each child once
// (its PRF is punctured), so a commit must be processed once for all of
// them, not once per member:
//
//   - Group.HandleCommitShared processes a received commit for the
//     receiver's member and further members of ours whose Privates belong
//     to the same Public (the receiver may be a view without a Private,
//     New(pub, nil, cfg)). It verifies the commit, applies its proposals,
//     merges the path and runs the key schedule once; each surviving
//     member then decrypts its own path secret (one HPKE decryption, at
//     its lowest common ancestor with the committer) and takes the keys
//     above it, each derived once for all members (treekem.PathKeys).
//     Any member's failure refuses the commit as a whole, before
//     the PRF is punctured. Handle is the same code with one member.
//   - CommitOptions.Others makes our own commit yield the next Privates
//     of our other members (PendingCommit.Others), from the path secrets
//     the committer generated: no HPKE. CommitOptions.Joiners does the
//     same for members it adds that are ours (PendingCommit.Joiners):
//     each one's leaf key from its KeyPackageBundle and the keys above it
//     from the path secret a Welcome would carry. The Welcome leaves them
//     out (none is made when no one else is added): opening it would cost
//     each the GroupInfo with the whole tree, and sealing to them an HPKE
//     encapsulation each.
//   - JoinPrivate joins one more member of ours into an epoch whose
//     Public we hold: it opens the Welcome, checks that it is for exactly
//     that epoch (GroupContext, confirmation tag, and the epoch
//     authenticator its joiner secret derives) and derives only the
//     member's Private, without a new Public or another validation of the
//     tree.
//   - PrivatesAfter gives members of ours that entered an epoch late
//     (after its commit was processed for the others) their Privates in
//     the next epoch, from that commit and the next Public: the commit is
//     checked to make exactly that epoch, and no key schedule runs, so
//     the parent's PRF is not asked for the same child twice.
//
// Cost model, for a commit with a path in a group of n leaves processed
// for k members of ours: the shared work is one signature verification,
// staging the proposals (a copy-on-write tree), merging the path and
// rehashing the nodes it changed (O(log n); a decoded tree hashes all of
// its nodes once), one key schedule, and one HPKE key derivation per node
// of the committer's filtered direct path that any member sits under (at
// most log n); each member adds one HPKE decryption, a comparison of its
// path secret with the one its common ancestor's key was derived from,
// and O(log n) for its Private. Checking the members' Privates against
// the tree costs one X25519 base multiplication per leaf and per distinct
// node key (treekem.KeyCheck), not per member and node. Processing the
// commit once per member would repeat the shared work k times and, under
// DMLS, fail for every member after the first.
//
// # Storage in parts
//
// A Public is stored as three parts so that each is written only when it
// changes: MarshalStatic (GroupContext, tree, confirmation tag, the epoch
// secrets other than the init secret, a ReInit), written once when the
// epoch is made; MarshalInitState, the init secret or DMLS PRF, which
// changes each time a child is derived; and MarshalSecretTree, which each
// PrivateMessage sent or read advances. Public.Changes counts the changes
// of the two mutable parts, so that a caller can tell which to write;
// UnmarshalPublicParts reassembles them (the mutable parts name their
// epoch, and parts of different epochs are refused). A Private is stored
// by Private.MarshalBinary; it never changes.
//
// # Past epochs
//
// A state remembers the resumption PSKs of Config.RetainedEpochs past
// epochs and, if Config.PastEpochs asks for it, the secret trees of that
// many past epochs, so that application messages sent before a commit and
// delivered after it still decrypt (RFC 9420 §9.2). A past epoch's secret
// tree is the one its own Public holds, so a generation read through
// either is consumed for both; only what reading a PrivateMessage takes
// is kept, not the epoch's other secrets. Group.MarshalBinary stores them
// with the state.
package group
