#!/usr/bin/env bash
# Regenerates the Go code for every proto/*.proto with pinned tool versions.
#
#   scripts/genproto.sh            # writes proto/*.pb.go beside the .proto files
#   scripts/genproto.sh OUTDIR     # writes the generated files into OUTDIR instead
#
# Nothing but Go is needed: the compiler (tools/protogen, on
# github.com/bufbuild/protocompile) and the plugins protoc-gen-go and
# protoc-gen-go-grpc are tools pinned in tools/go.mod, kept out of
# ringtrain's own go.mod, and built into bin/tools.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-proto}"
mkdir -p "$out"

die() { echo "genproto: $*" >&2; exit 1; }

tools="$root/bin/tools"
go -C tools build -o "$tools/" tool || die "building the tools of tools/go.mod failed (go -C tools build -o bin/tools/ tool)"

shopt -s nullglob
files=(proto/*.proto)
[ ${#files[@]} -gt 0 ] || die "no .proto files in proto/"
names=()
for f in "${files[@]}"; do names+=("$(basename "$f")"); done

"$tools/protogen" -I proto -out "$out" \
  -plugin go="$tools/protoc-gen-go" -opt go=paths=source_relative \
  -plugin go-grpc="$tools/protoc-gen-go-grpc" -opt go-grpc=paths=source_relative \
  "${names[@]}"
