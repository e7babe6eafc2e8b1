#!/usr/bin/env bash
# The datapath, shown with real clients: installs what is missing, builds, loads Balancing's
# eBPF programs into a demo cgroup of its own, programs a TCP and a UDP (DNS) frontend with
# loopback backends, sends curl and dig through them, prints the translation events and the
# frontends, and removes everything on exit. Needs root and a kernel with cgroup eBPF.
#
# (A later issue turns this into the full demo: the agent standalone on examples/standalone/.)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: needs root (it loads eBPF programs and makes a cgroup)" >&2
  exit 2
fi
scripts/setup.sh
cmake -S . -B build >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
exec luajit scripts/demo/datapath.lua "$@"
