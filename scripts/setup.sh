#!/usr/bin/env bash
# Installs what Balancing needs to build, test and demo on Debian 12, as root.
# Installs only what is missing; safe to run again.
set -euo pipefail

packages=(
  cmake make gcc pkg-config clang llvm
  libbpf-dev bpftool libelf-dev zlib1g-dev
  luajit libluajit-5.1-dev lua-cjson lua-yaml lua-filesystem lua-system lua-busted lua-check
  libcurl4-openssl-dev libev-dev
  iproute2 iptables nftables dnsmasq-base dnsutils python3 curl jq
  openssl python3-yaml python3-kubernetes python3-prometheus-client
  python3-jsonschema nodejs
)
# kubectl for the fake API server's specs: Debian's kubernetes-client, unless a kubectl is there
# already (dpkg refuses a second package that owns /usr/bin/kubectl, e.g. the Google Cloud SDK's).
command -v kubectl >/dev/null || packages+=(kubernetes-client)
# npm for the CEL implementation of spec/e2e/deploy_spec.lua: Debian's, unless one came with
# nodejs already (NodeSource's nodejs carries its own and conflicts with Debian's npm).
command -v npm >/dev/null || packages+=(npm)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages (${missing[*]}) and not root: install them first" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A real CEL implementation (@bufbuild/cel, pinned in scripts/crd/package-lock.json) to
# evaluate the CRDs' x-kubernetes-validations in spec/e2e/deploy_spec.lua.
crd_dir="$(dirname "$0")/crd"
if [[ ! -f $crd_dir/node_modules/@bufbuild/cel/package.json ]]; then
  echo "setup: npm ci in $crd_dir (@bufbuild/cel)" >&2
  (cd "$crd_dir" && npm ci --no-audit --no-fund --silent) ||
    echo "setup: npm ci failed: spec/e2e/deploy_spec.lua cannot evaluate the CEL rules" >&2
fi
