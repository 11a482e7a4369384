#!/bin/sh
# Regenerates the checked-in Go code from proto/evident/v1/*.proto with the
# pinned generator versions (see Makefile: PROTOC_GEN_GO, PROTOC_GEN_GO_GRPC).
set -eu
cd "$(dirname "$0")/.."
protoc -I proto \
  --go_out=. --go_opt=module=github.com/evident-dev/evident \
  --go-grpc_out=. --go-grpc_opt=module=github.com/evident-dev/evident \
  proto/evident/v1/evident.proto
