#!/usr/bin/env bash
# Installs what the tests and demo need on a fresh Debian machine of this kind (idempotent):
# Debian packages via apt-get, the Rust components. Go and Rust themselves come with the machine.
set -euo pipefail
missing=()
for tool in openssl curl jq python3; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# lua5.4: runs the Argo CD health check's tests; buildah + umoci + skopeo: build and
# inspect the container image without a Docker engine.
for tool in lua5.4 buildah umoci skopeo; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
command -v go >/dev/null 2>&1 || missing+=(golang-go)
# chromium: renders the HTML report in tests/report_html.rs; time (GNU): peak RSS in benchmarks.
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/time ] || missing+=(time)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for comp in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp"
done
