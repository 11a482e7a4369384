#!/bin/sh
# Regenerates the Go code of proto/evident/v1/*.proto with the pinned
# generators (see the Makefile). Usage: proto/gen.sh [OUTDIR] (default: the
# repository root, i.e. in place).
set -eu
cd "$(dirname "$0")/.."
out=${1:-.}
protoc -I proto \
  --go_out="$out" --go_opt=module=github.com/evident-dev/evident \
  --go-grpc_out="$out" --go-grpc_opt=module=github.com/evident-dev/evident \
  proto/evident/v1/evident.proto
