#!/usr/bin/env bash
# Makes room before a test run: a warm Rust cache only grows (incremental sessions, artifacts of
# dependency versions no longer locked), and a CI run once died half-way with "No space left on
# device". The regenerable parts go first, smallest loss first; the Go tools, the control-plane
# binaries and the node images (slow to rebuild) are never touched here.
#
# usage: scripts/lib/disk-guard.sh TARGET_DIR   (PALISADE_MIN_FREE_GIB, default 12)
set -euo pipefail
target="${1:?usage: disk-guard.sh TARGET_DIR}"
need="${PALISADE_MIN_FREE_GIB:-12}"

free_gib() { # free GiB on the filesystem holding $1 (or its nearest existing parent)
  local d="$1"
  while [ ! -e "$d" ]; do d="$(dirname "$d")"; done
  df -Pk "$d" | awk 'NR == 2 { print int($4 / 1048576) }'
}
report() { echo "disk: $(free_gib "$target") GiB free where the build goes, $(free_gib /tmp) GiB in /tmp; Rust target dir $(du -sh "$target" 2>/dev/null | cut -f1 || echo 0)"; }

report
[ "$(free_gib "$target")" -lt "$need" ] || exit 0
echo "disk: under $need GiB free: dropping the incremental compilation caches of $target"
rm -rf "$target"/*/incremental "$target"/*/*/incremental
[ "$(free_gib "$target")" -lt "$need" ] || { report; exit 0; }
echo "disk: still under $need GiB free: removing $target (the next build is a cold one)"
rm -rf "$target"
report
if [ "$(free_gib "$target")" -lt "$need" ]; then
  echo "disk: warning: only $(free_gib "$target") GiB free; a full build and test run needs about $need" >&2
fi
