#!/usr/bin/env bash
# Regenerates the Go code for every proto/*.proto with pinned tool versions.
#
#   scripts/genproto.sh            # writes proto/*.pb.go beside the .proto files
#   scripts/genproto.sh OUTDIR     # writes the generated files into OUTDIR instead
#
# Pinned: protoc 3.21.12 (Debian: apt-get install -y protobuf-compiler),
# protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.6.2. The plugins are installed
# with `go install` into $TOOLS_BIN (default: $(go env GOPATH)/bin) if missing
# or at another version. Any other protoc version is an error, because the
# generated files record it and CI diffs them.
set -euo pipefail

PROTOC_VERSION="3.21.12"
PROTOC_GEN_GO_VERSION="v1.36.12"
PROTOC_GEN_GO_GRPC_VERSION="1.6.2"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-proto}"
mkdir -p "$out"

tools_bin="${TOOLS_BIN:-$(go env GOPATH)/bin}"
mkdir -p "$tools_bin"
export PATH="$tools_bin:$PATH"

die() { echo "genproto: $*" >&2; exit 1; }

command -v protoc >/dev/null ||
  die "protoc not found; install protoc ${PROTOC_VERSION} (Debian: apt-get install -y protobuf-compiler)"
got="$(protoc --version | awk '{print $2}')"
[ "$got" = "$PROTOC_VERSION" ] ||
  die "protoc is ${got}, want ${PROTOC_VERSION}; install that version or put it first on PATH"

have_version() { # binary expected-version
  [ -x "$tools_bin/$1" ] && [ "$("$tools_bin/$1" --version 2>/dev/null | awk '{print $2}')" = "$2" ]
}
if ! have_version protoc-gen-go "$PROTOC_GEN_GO_VERSION"; then
  GOBIN="$tools_bin" GOFLAGS=-mod=mod go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
fi
if ! have_version protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"; then
  GOBIN="$tools_bin" GOFLAGS=-mod=mod go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v${PROTOC_GEN_GO_GRPC_VERSION}"
fi
have_version protoc-gen-go "$PROTOC_GEN_GO_VERSION" || die "protoc-gen-go is not ${PROTOC_GEN_GO_VERSION} after install"
have_version protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION" || die "protoc-gen-go-grpc is not ${PROTOC_GEN_GO_GRPC_VERSION} after install"

shopt -s nullglob
files=(proto/*.proto)
[ ${#files[@]} -gt 0 ] || die "no .proto files in proto/"
names=()
for f in "${files[@]}"; do names+=("$(basename "$f")"); done

protoc -I proto \
  --plugin=protoc-gen-go="$tools_bin/protoc-gen-go" \
  --plugin=protoc-gen-go-grpc="$tools_bin/protoc-gen-go-grpc" \
  --go_out="$out" --go_opt=paths=source_relative \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
  "${names[@]}"
