// Package mlsclientpb holds the generated Go bindings of the MLSClient
// gRPC service of the MLS working group's interoperability harness, built
// from interop/proto/mls_client.proto by interop/gen.sh.
//
// The files are generated and committed so that building the interop
// client and runner never needs protoc; edit the .proto and rerun gen.sh,
// never the .pb.go files.
package mlsclientpb
