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
