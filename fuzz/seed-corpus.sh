#!/usr/bin/env bash
# Seeds fuzz/corpus/audit (gitignored) from fuzz/seeds/, the repository's samples and the Pod Security
# Admission conformance fixtures in ../shared (when present). Idempotent: files are named by
# content hash, so running it again adds nothing new.
#
# usage: fuzz/seed-corpus.sh [PSA_TESTDATA_DIR]
set -euo pipefail
FUZZ="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$FUZZ")"
PSA="${1:-$ROOT/../shared/conformance/pod-security-admission/testdata}"
OUT="$FUZZ/corpus/audit"
mkdir -p "$OUT"

add() { # add FILE: copy under its sha1 (libFuzzer's own naming)
  local h
  h=$(sha1sum "$1" | cut -d' ' -f1)
  [ -e "$OUT/$h" ] || cp "$1" "$OUT/$h"
}

# Whole sample files (multi-document streams) and each of their documents alone.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in "$ROOT"/config/samples/*.yaml; do
  add "$f"
  awk -v dir="$tmp" -v base="$(basename "$f" .yaml)" \
    '/^---/{n++; next} {print > (dir "/" base "-" n ".yaml")}' "$f"
done
for f in "$tmp"/*.yaml; do add "$f"; done
# Hand-written seeds for what the samples lack (List, JSON, flow style, RBAC/network edge cases).
for f in "$FUZZ"/seeds/*; do add "$f"; done

# PSA fixtures: every check's pass/fail pods at the newest version, and the oldest version
# (annotations-based seccomp/AppArmor).
if [ -d "$PSA" ]; then
  newest=$(ls "$PSA/restricted" | sort -V | tail -1)
  oldest=$(ls "$PSA/restricted" | sort -V | head -1)
  for level in baseline restricted; do
    for v in "$newest" "$oldest"; do
      for f in "$PSA/$level/$v"/*/*.yaml; do
        [ -e "$f" ] && add "$f"
      done
    done
  done
else
  echo "seed-corpus: $PSA not found; PSA fixtures not added" >&2
fi
echo "seed-corpus: $(ls "$OUT" | wc -l) inputs in $OUT"

# The baseline target: hand-written specs (fuzz/seeds-baseline/).
OUT_BASELINE="$FUZZ/corpus/baseline"
mkdir -p "$OUT_BASELINE"
for f in "$FUZZ"/seeds-baseline/*; do
  h=$(sha1sum "$f" | cut -d' ' -f1)
  [ -e "$OUT_BASELINE/$h" ] || cp "$f" "$OUT_BASELINE/$h"
done
