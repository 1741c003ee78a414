# shellcheck shell=bash
# Build + cache of the local control-plane binaries (sourced by scripts/control-plane).
#
# Binaries are built from the Go modules in tools/control-plane/{k8s,etcd}
# (pinned by their go.mod/go.sum) and cached under
#   ${PALISADE_CP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palisade/control-plane}/
#     k8s-<K8S_VERSION>/{kube-apiserver,kube-controller-manager,kubectl}
#     etcd-<ETCD_VERSION>/etcd
# Each directory has a .stamp (hash of go.mod, go.sum and the build flags);
# a directory whose stamp matches is reused, otherwise it is rebuilt.

CP_ROOT="${CP_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
CP_TOOLS="$CP_ROOT/tools/control-plane"
# shellcheck source=/dev/null
. "$CP_TOOLS/versions.env"

CP_CACHE="${PALISADE_CP_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/palisade/control-plane}"
CP_K8S_DIR="$CP_CACHE/k8s-$K8S_VERSION"
CP_ETCD_DIR="$CP_CACHE/etcd-$ETCD_VERSION"
CP_K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

cp_log() { printf '[control-plane] %s\n' "$*" >&2; }

# Content of the info file the module proxy serves for a module version
# (gives the release time, used as buildDate so builds are reproducible).
_cp_mod_json() { # module@version field
  (cd "$CP_TOOLS/k8s" && go mod download -json "$1") | sed -n 's/^[[:space:]]*"'"$2"'": "\(.*\)",\{0,1\}$/\1/p' | head -1
}

_cp_k8s_ldflags() {
  local ver="$K8S_VERSION" major minor commit date info
  major="${ver#v}"; major="${major%%.*}"
  minor="${ver#v*.}"; minor="${minor%%.*}"
  info="$(_cp_mod_json "k8s.io/kubernetes@$ver" Info)"
  # "Time" from the proxy's .info, e.g. 2026-02-10T12:53:36Z
  date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")"
  # The proxy does not tell the upstream git commit; use the module's
  # content hash (go.sum h1:) instead, which identifies the source exactly.
  commit="$(_cp_mod_json "k8s.io/kubernetes@$ver" Sum)"
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  printf '%s' "$flags"
}

_cp_etcd_ldflags() {
  # etcd reports version from its source; only GitSHA is settable.
  printf '%s' "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$(_cp_mod_json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" Sum)"
}

_cp_stamp() { # moddir ldflags
  { cat "$1/go.mod" "$1/go.sum"; printf 'CGO_ENABLED=0 -trimpath %s %s/%s\n' "$2" "$(go env GOOS)" "$(go env GOARCH)"; } | sha256sum | cut -d' ' -f1
}

_cp_have() { # dir stamp cmds...
  local dir="$1" stamp="$2" c; shift 2
  [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ] || return 1
  for c in "$@"; do [ -x "$dir/$c" ] || return 1; done
}

_cp_go_build() { # moddir out ldflags pkgs...   (out: a dir ending in / or a file)
  local moddir="$1" out="$2" ldflags="$3"; shift 3
  (
    cd "$moddir" || exit 1
    export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
    go build -trimpath -ldflags "$ldflags" -o "$out" "$@"
  )
}

_cp_build_one() { # name moddir dir ldflags cmds-csv pkgs...
  local name="$1" moddir="$2" dir="$3" ldflags="$4" cmds="$5"; shift 5
  local stamp tmp start c
  IFS=, read -r -a cmdarr <<<"$cmds"
  stamp="$(_cp_stamp "$moddir" "$ldflags")"
  if _cp_have "$dir" "$stamp" "${cmdarr[@]}"; then
    cp_log "$name: cached in $dir"
    return 0
  fi
  cp_log "$name: building ${cmdarr[*]} (this can take 15+ minutes on a cold cache)"
  start=$SECONDS
  tmp="$(mktemp -d "$CP_CACHE/.build-$name.XXXXXX")"
  local out="$tmp/"
  # a single command is written under its own name (etcd's package path ends in /v3)
  [ "${#cmdarr[@]}" -eq 1 ] && out="$tmp/${cmdarr[0]}"
  if ! _cp_go_build "$moddir" "$out" "$ldflags" "$@"; then
    rm -rf "$tmp"
    cp_log "$name: build FAILED"
    return 1
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  for c in "${cmdarr[@]}"; do mv "$tmp/$c" "$dir/$c"; done
  rm -rf "$tmp"
  printf '%s\n' "$stamp" >"$dir/.stamp"
  cp_log "$name: built in $((SECONDS - start)) s -> $dir"
}

# cp_build: ensure all binaries are in the cache (idempotent, serialised by a lock).
cp_build() {
  command -v go >/dev/null || { cp_log "go is not installed"; return 1; }
  mkdir -p "$CP_CACHE"
  (
    flock -w 3600 9 || { cp_log "timed out waiting for the build lock $CP_CACHE/.lock"; exit 1; }
    _cp_build_one etcd "$CP_TOOLS/etcd" "$CP_ETCD_DIR" "$(_cp_etcd_ldflags)" etcd \
      go.etcd.io/etcd/server/v3
    _cp_build_one k8s "$CP_TOOLS/k8s" "$CP_K8S_DIR" "$(_cp_k8s_ldflags)" "$(IFS=,; echo "${CP_K8S_CMDS[*]}")" \
      "${CP_K8S_CMDS[@]/#/k8s.io/kubernetes/cmd/}"
  ) 9>"$CP_CACHE/.lock"
}
