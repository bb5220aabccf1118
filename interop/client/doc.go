// Package client implements the MLSClient gRPC service of the MLS
// working group's interop harness (interop/proto/mls_client.proto) on top
// of mls/group, so that independent implementations can drive our RFC 9420
// code through the same flows as theirs.
//
// The service keeps a Store of handles: state_id values name group states
// (immutable *group.Group values plus what this member did in the epoch),
// transaction_id values name KeyPackages waiting for a Welcome, reinit_id
// values name groups suspended by a ReInit, and signer_id values name
// external signers. Every RPC that advances a group stores the new state
// under a new handle and leaves the old one usable until Free.
//
// Rejections of what a peer sent are reported with codes.InvalidArgument
// and a message naming the RFC 9420 rule that was broken (see status.go);
// operations our group layer cannot perform answer codes.Unimplemented.
package client
