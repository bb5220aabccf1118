// Package runner drives two implementations of the MLS interop harness's
// MLSClient gRPC service through shared scenarios and checks that they
// agree: every member must derive the same epoch authenticator after every
// epoch, read every application message the others send, and export the
// same secrets.
//
// It plays the role of the MLS working group's test runner, but with the
// scenarios written as Go code rather than JSON scripts so that each
// scenario can run with the roles of the two clients swapped and with
// handshake messages sent both as PublicMessage and as PrivateMessage.
// Results are counted per cipher suite and printed as
//
//	interop: <peer> suite=<n> scenarios=<passed>/<total>
//
// A scenario whose RPCs a client answers with UNIMPLEMENTED counts in the
// total but not as passed, and is reported as unsupported rather than as a
// disagreement.
package runner
