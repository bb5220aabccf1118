// Package pprf implements the puncturable pseudorandom function of
// Decentralised MLS (draft-kohbrok-mls-dmls, "Puncturable pseudorandom
// function") and the DMLS derivation of a child epoch's init_secret that is
// built on it ("DMLS key schedule").
//
// # Why
//
// In Decentralised MLS an epoch may have several children (two members
// commit on the same epoch and Matrix delivers both), so a member must keep
// an old epoch's init secret after it has used it once. Keeping the plain
// RFC 9420 init_secret would let whoever later steals the stored state
// re-derive every child ever made from it. A puncturable PRF keyed by the
// epoch's parent_init_secret gives each child its own output and forgets
// how to compute that output again: after evaluating an input, the state no
// longer holds any secret from which that input's output follows, while
// every other input can still be evaluated.
//
// # The construction
//
// DeriveFSSecret(secret, input), for a secret and an input of KDF.Nh bytes
// each, is a GGM tree: the secret is the root, and every node secret S has
// the children
//
//	left  = ExpandWithLabel(S, "tree", "left",  KDF.Nh)
//	right = ExpandWithLabel(S, "tree", "right", KDF.Nh)
//
// exactly as RFC 9420 §9 derives the secret tree. The input selects a leaf
// of the tree of depth 8·KDF.Nh by its bits, most significant bit of the
// first byte first; a 0 bit descends left and a 1 bit right. The output is
// DeriveSecret(leaf_secret, "pprf").
//
// The draft says "the same tree is used but with KDF.Nh leaves" and treats
// the input as "the leaf index". Read literally, a tree with KDF.Nh leaves
// (32 for SHA-256) has only 32 possible inputs, yet the input is an
// arbitrary KDF.Nh-byte string; and an input interpreted as an integer
// index would be out of range for almost every value. The only reading
// under which every Nh-byte input has its own leaf, and so puncturing one
// input cannot disable another, is a tree with 2^(8·Nh) leaves addressed by
// the input's bits, which is what this package implements. If the draft
// settles on another reading, it becomes a new DMLS variant (the room's
// algorithm name), not a silent change here.
//
// # State and puncturing
//
// A PPRF holds its frontier: the secrets of the roots of the subtrees that
// are still whole, kept sorted and pairwise disjoint. A new PPRF holds only
// the root. Evaluating an input finds the frontier node above its leaf,
// derives the path from there to the leaf, keeps the sibling of every path
// node (the copath) in the frontier, and zeroes the consumed node secret,
// every path secret and the leaf secret. The leaf is then covered by no
// frontier node, so evaluating the same input again fails with ErrPunctured;
// every other leaf is still below exactly one frontier node. Each evaluation
// adds at most 8·Nh−1 secrets (255 for SHA-256: 8 KiB of secrets, about 8.3 KiB
// encoded, since the encoding states the frontier's shape in 2 bits a
// node rather than each node's position; see encoding.go), which
// is acceptable for the few children an epoch has while it is retained.
//
// A PPRF is mutable and not safe for concurrent use, like secrettree.Tree:
// zeroing a consumed secret is only meaningful if no other value shares it.
// Clone makes an independent copy for a caller that needs to keep the
// state before an evaluation (for example until a database transaction
// commits); Wipe zeroes every secret a PPRF holds. MarshalBinary and
// UnmarshalBinary give a versioned encoding for storage; the decoder checks
// sizes, ordering and disjointness and never trusts a declared length.
//
// # Indexed PPRFs
//
// NewIndexed makes the same tree with a small leaf depth, bits (1 to 32),
// as a store of 2^bits one-time secrets addressed by an index: for example
// a batch of KeyPackages, KeyPackage i taking EvaluateIndex(i) as its seed.
// A secret is derived when it is used, which punctures its index: the
// stored state can no longer derive it (forward secrecy for that
// KeyPackage), while the unused ones stay available. Leaf i is
// the one whose path is i's bits, most significant first, so leaves are
// in index order. The derivation is the one above, only shallower, and
// Evaluate takes the path as ceil(bits/8) bytes with the trailing bits
// zero. What is stored is the frontier, not one secret per index: a fresh
// PPRF holds only the root, and after k evaluations it holds at most
// k·bits node secrets, typically far fewer, since neighbouring indexes
// share copath nodes and a subtree whose leaves are all used holds
// nothing. Used in index order it never holds more than bits. An indexed PPRF is encoded
// with its leaf depth (format versions 2 and 3 record it); it is not a
// DMLS epoch's state, and the DMLS functions below refuse it.
//
// # The DMLS key schedule
//
// DMLS replaces init_secret = DeriveSecret(epoch_secret, "init") by
//
//	parent_init_secret  = DeriveSecret(epoch_secret, "parent_init")
//	commit_confirmation = DeriveSecret(path_secret[n], "conf")
//	init_secret_[n]     = DeriveChildSecret(parent_init_secret, "child_init",
//	                                        commit_confirmation, GroupContext_[n])
//	DeriveChildSecret(prf_key, label, input_secret, context) =
//	    DeriveFSSecret(prf_key, ExpandWithLabel(input_secret, label, context, KDF.Nh))
//
// ParentInitSecret, CommitConfirmation and PPRF.ChildInitSecret compute
// these. The epoch keeps New(parent_init_secret) (encoded) instead of its
// init_secret; each commit on it evaluates that PPRF once.
// KeepForChildren, NextChildInit and CheckKept do the same on the stored
// bytes, which is the form the key schedule's InitScheme seam works in. GroupContext_[n]
// is the parent epoch's GroupContext, as in the draft's notation
// (init_secret_[n] is derived in epoch n) and as keyschedule.Child documents.
//
// path_secret[n] is the path secret of the root of the committer's update
// path (RFC 9420 §7.4). A commit without an update path has none, and this
// package does not invent one: DMLS rooms require every commit to carry an
// update path, and a receiver rejects a pathless commit (ErrNoUpdatePath is
// the sentinel for that). The alternative, using commit_secret, fails
// exactly where DMLS is needed: a pathless commit has the all-zero
// commit_secret, and since the parent GroupContext is the same for all of
// an epoch's children, two competing pathless commits on one epoch would
// ask the PPRF for the same input and the second could never be processed.
// A fresh path gives every commit its own input and gives post-compromise
// security to the fork that wins; DESIGN §5 already requires it of
// resolving commits, and RFC 9420 always allows a committer to include one.
// One path has no node at all: that of a committer who is the only member
// left. Its commit_secret is then the fresh path_secret[0] (RFC 9420
// §7.4), and package group derives the confirmation from it; nobody else
// processes such a commit.
//
// A consequence every caller must respect: a child can be derived once.
// The committer derives its new epoch when it creates the commit and must
// not process its own commit again when the homeserver echoes it back; a
// receiver that processes a commit inside a transaction that later fails
// must restore the PPRF it had before (keep the old encoding or a Clone).
package pprf
