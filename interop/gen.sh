#!/usr/bin/env bash
# Regenerates the Go bindings of the interop harness's MLSClient service
# from interop/proto/mls_client.proto. The generated files are committed so
# that builds never need protoc.
#
# Needs protoc (Debian: protobuf-compiler) and the two Go plugins:
#   go install google.golang.org/protobuf/cmd/protoc-gen-go@latest
#   go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@latest
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$PATH:$(go env GOPATH)/bin"
protoc \
  --proto_path=proto \
  --go_out=mlsclientpb --go_opt=paths=source_relative \
  --go-grpc_out=mlsclientpb --go-grpc_opt=paths=source_relative \
  mls_client.proto
