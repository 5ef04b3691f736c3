#!/usr/bin/env bash
# Builds the lab's Kubernetes control plane once and caches it outside the clone.
#
# Why a script: Debian ships no kube-apiserver binary, only the `kubernetes`
# source package (1.20.2, vendored). It builds with Debian's Go 1.19 through the
# upstream Makefile (a plain `go build` fails). Everything is unpacked with
# `dpkg -x` into the cache folder, so the machine's own packages stay untouched.
#
# Usage: lab/build_control_plane.sh [CACHE_DIR]   (default ${AOI_CACHE_DIR:-~/.cache/aoi})
set -euo pipefail

cache="${1:-${AOI_CACHE_DIR:-$HOME/.cache/aoi}}"
bin="$cache/bin"
want=(kube-apiserver kube-controller-manager kube-scheduler etcd)
missing=0
for b in "${want[@]}"; do [ -x "$bin/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then
  echo "control plane already built in $bin"
  exit 0
fi

mkdir -p "$bin" "$cache/build"
work="$cache/build"
apt_dir="$work/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"

# A private apt configuration: the machine's Debian entry, plus deb-src.
sources="$apt_dir/debian.sources"
src_entry=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm( |$|\n)/ && !/security/ {print; exit}' /etc/apt/sources.list.d/debian.sources)
if [ -z "$src_entry" ]; then
  echo "error: no Debian bookworm entry in /etc/apt/sources.list.d/debian.sources; add a deb-src entry by hand" >&2
  exit 1
fi
printf '%s\n' "$src_entry" | sed -e 's/^Types:.*/Types: deb deb-src/' -e 's/^Suites:.*/Suites: bookworm/' >"$sources"
apt_opts=(-o "Dir::Etc::sourcelist=$sources" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$apt_dir/lists"
  -o "Dir::Cache::archives=$apt_dir/archives" -o "APT::Sandbox::User=root")

echo "== apt metadata (private lists in $apt_dir)"
apt-get "${apt_opts[@]}" -qq update

cd "$work"
if [ ! -x "$work/root/usr/lib/go-1.19/bin/go" ] || [ ! -x "$work/root/usr/bin/etcd" ]; then
  echo "== downloading Go 1.19 and etcd-server"
  apt-get "${apt_opts[@]}" -qq download golang-1.19-go golang-1.19-src etcd-server
  mkdir -p root
  for deb in golang-1.19-go_*.deb golang-1.19-src_*.deb etcd-server_*.deb; do dpkg -x "$deb" root; done
fi
cp "$work/root/usr/bin/etcd" "$bin/etcd"

src=$(ls -d "$work"/kubernetes-1.20* 2>/dev/null | head -n1 || true)
if [ -z "$src" ]; then
  echo "== downloading the kubernetes source package"
  apt-get "${apt_opts[@]}" -qq source --download-only kubernetes
  dpkg-source -x --no-check kubernetes_*.dsc >/dev/null
  src=$(ls -d "$work"/kubernetes-1.20* | head -n1)
fi

export GOROOT="$work/root/usr/lib/go-1.19"
export PATH="$GOROOT/bin:$PATH"
export GOFLAGS=-mod=vendor GO111MODULE=on GOPATH="$work/gopath" GOCACHE="$work/gocache"
cd "$src"
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  if [ ! -x "$bin/$cmd" ]; then
    echo "== building $cmd (several minutes on 2 cores)"
    make WHAT="cmd/$cmd" >"$work/make-$cmd.log" 2>&1 || { tail -n 30 "$work/make-$cmd.log" >&2; exit 1; }
    cp "_output/local/bin/linux/amd64/$cmd" "$bin/$cmd"
  fi
done
echo "control plane built in $bin"
