#!/usr/bin/env bash
# Builds vcsim-export, the project's vCenter simulator: Debian's govmomi vcsim (golang-github-vmware-govmomi-dev)
# with simulator/*.go compiled into its package (go build -overlay; no vcsim file is changed), and
# cmd/vcsim-export as its main. Offline but for apt.
#   build.sh              -> prints the path of vcsim-export
#   build.sh --with-govc  -> also builds govc, VMware's CLI, from Debian's source package (benchmarks compare
#                            with it), and prints its path on a second line
# Exit status 3: the Debian packages cannot be installed here (test/support/vcsim.ts then skips the vSphere tests).
# Binaries are cached in $VCSIM_HOME (default ~/.cache/hypervisord-vcsim), rebuilt when a source here changes.
# Installing the Debian packages needs root (or sudo) once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${VCSIM_HOME:-$HOME/.cache/hypervisord-vcsim}
with_govc=0
[ "${1:-}" = "--with-govc" ] && with_govc=1
mkdir -p "$out"
# Test files run in parallel may call this at once: one builds, the others then find the build fresh.
exec 9>"$out/build.lock"
flock 9
export DEBIAN_FRONTEND=noninteractive

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

# Exit 3 (the tests then skip, saying why) only when the toolchain cannot be installed here; any other failure,
# a compile error above all, fails the build, and the tests with it.
install_packages() {
  echo "installing $* with apt" >&2
  if ! { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "$@"; } >&2; then
    echo "cannot install the Debian packages $* (apt as root or through sudo is needed)" >&2
    exit 3
  fi
}

govmomi=/usr/share/gocode/src/github.com/vmware/govmomi
if ! command -v go >/dev/null || [ ! -d "$govmomi/simulator" ] || [ ! -d /usr/share/gocode/src/github.com/google/uuid ]; then
  install_packages golang-go golang-github-vmware-govmomi-dev golang-github-google-uuid-dev
fi

# GOPATH mode with Debian's /usr/share/gocode: nothing is downloaded.
export GO111MODULE=off GOPROXY=off GOFLAGS= GOCACHE="$out/gocache"
stamp=$( (cd "$here" && cat build.sh simulator/*.go cmd/vcsim-export/*.go; go version) | sha256sum | cut -c1-16)
if [ ! -x "$out/vcsim-export" ] || [ "$(cat "$out/vcsim-export.stamp" 2>/dev/null)" != "$stamp" ]; then
  gopath="$out/gopath"
  rm -rf "$gopath" && mkdir -p "$gopath/src/vcsim-export"
  cp "$here"/cmd/vcsim-export/*.go "$gopath/src/vcsim-export/"
  # Each simulator/NAME.go becomes govmomi's simulator/zz_hypervisord_NAME.go for this build.
  {
    printf '{"Replace":{'
    sep=
    for f in "$here"/simulator/*.go; do
      printf '%s"%s/simulator/zz_hypervisord_%s":"%s"' "$sep" "$govmomi" "$(basename "$f")" "$f"
      sep=,
    done
    printf '}}\n'
  } > "$out/overlay.json"
  (cd "$gopath/src/vcsim-export" && GOPATH="$gopath:/usr/share/gocode" \
    go build -overlay "$out/overlay.json" -ldflags='-s -w' -o "$out/vcsim-export.new" . >&2)
  mv "$out/vcsim-export.new" "$out/vcsim-export"
  echo "$stamp" > "$out/vcsim-export.stamp"
fi

if [ "$with_govc" = 1 ] && [ ! -x "$out/govc" ]; then
  # govc is not in the -dev package: it is built from the source package of the installed govmomi.
  version=$(dpkg-query -W -f='${Version}' golang-github-vmware-govmomi-dev)
  if [ -z "$(apt-cache showsrc golang-github-vmware-govmomi 2>/dev/null)" ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources | as_root tee /etc/apt/sources.list.d/hypervisord-deb-src.sources >/dev/null
    as_root apt-get update -qq >&2
  fi
  install_packages dpkg-dev golang-github-kr-pretty-dev
  src="$out/govc-src"
  mkdir -p "$src"
  if [ ! -d "$src/gopath/src/github.com/vmware/govmomi/govc" ]; then
    (cd "$src" && apt-get source -qq --download-only "golang-github-vmware-govmomi=$version" >&2 && dpkg-source -x --no-check ./*.dsc tree >&2)
    mkdir -p "$src/gopath/src/github.com/vmware"
    ln -sfn "$src/tree" "$src/gopath/src/github.com/vmware/govmomi"
  fi
  (cd "$src/gopath/src/github.com/vmware/govmomi" && GOPATH="$src/gopath:/usr/share/gocode" go build -ldflags='-s -w' -o "$out/govc" ./govc >&2)
fi

echo "$out/vcsim-export"
if [ "$with_govc" = 1 ]; then echo "$out/govc"; fi
