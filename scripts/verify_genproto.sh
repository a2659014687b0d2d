#!/usr/bin/env bash
# Fails if the committed generated code in proto/ differs in any way from what
# scripts/genproto.sh produces now (edited .proto not regenerated, hand edits,
# other tool versions, stale generated files without a .proto).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$root/scripts/genproto.sh" "$tmp"

status=0
shopt -s nullglob
for f in "$tmp"/*.pb.go; do
  name="$(basename "$f")"
  if [ ! -f "proto/$name" ]; then
    echo "verify_genproto: proto/$name is missing; run make proto" >&2
    status=1
  elif ! diff -u "proto/$name" "$f"; then
    echo "verify_genproto: proto/$name differs from the generated code; run make proto" >&2
    status=1
  fi
done
for f in proto/*.pb.go; do
  name="$(basename "$f")"
  if [ ! -f "$tmp/$name" ]; then
    echo "verify_genproto: proto/$name has no .proto source; delete it or restore its .proto" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "verify_genproto: generated code is up to date"
exit $status
