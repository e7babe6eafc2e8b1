#!/usr/bin/env bash
# The whole product on one machine: installs what is missing, builds, starts the real
# balancing-agent standalone on a scratch copy of examples/standalone/ (a Service, a
# LocalRedirectPolicy and a BalancingPolicy, all on loopback), attached to a demo cgroup of its
# own; sends curl and dig from inside that cgroup through each frontend to small loopback
# backends; prints `inspect` (showMapData, traceMapData) and the translation events through jq;
# edits a manifest and shows the agent following it; then stops the agent and removes everything
# it made (programs, pins, the cgroup, the backends, scratch files) — on every exit, failure
# included. Needs root and a kernel with cgroup eBPF. Any step that fails: one "demo: FAILED"
# line saying what, exit status 1.
#
#   BALANCING_BUILD_DIR=DIR        the build to run (default build/)
#   BALANCING_DEMO_SKIP_SETUP=1    neither scripts/setup.sh nor the build (spec/e2e/demo_spec.lua)
# shellcheck disable=SC2317 # the functions run by until_ok and the traps are called indirectly
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: needs root (the agent loads eBPF programs; the demo makes a cgroup)" >&2
  exit 2
fi

build_dir=${BALANCING_BUILD_DIR:-build}
if [[ ${BALANCING_DEMO_SKIP_SETUP:-0} != 1 ]]; then
  scripts/setup.sh
  cmake -S . -B "$build_dir" >/dev/null
  cmake --build "$build_dir" -j "$(nproc)" >/dev/null
fi
agent=$build_dir/bin/balancing-agent
inspect=$build_dir/bin/inspect

started=$SECONDS
id=$$
pins=      # set once the demo owns it: /sys/fs/bpf/balancing-demo-$id
scratch=
cgroup=
agent_pid=
backend_pids=()   # "pid:marker" of each backend process
agent_port=

step() { printf '\n== %s\n' "$*"; }
# One line on stderr, then the EXIT trap cleans up.
fail() {
  printf 'demo: FAILED: %s\n' "$*" >&2
  if [[ -n $scratch && -s $scratch/agent.log ]]; then
    echo "demo: the agent's last log lines:" >&2
    tail -n 15 "$scratch/agent.log" "$scratch/agent.err" >&2 || true
  fi
  exit 1
}
# Prints a command as typed, then runs it.
shown() {
  printf '$ %s\n' "$*"
  "$@"
}

# true while pid is a live process (not a zombie) that is still what the demo started: a child of
# this shell (before or after its exec) or a process whose command line contains marker. A pid is
# only ever signalled while this holds. (Builtins only: it runs in every wait loop.)
alive() {
  local pid=$1 marker=$2 stat fields args
  { read -r stat <"/proc/$pid/stat" && mapfile -d '' args <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
  read -r -a fields <<<"${stat##*) }" # state, ppid, ...
  [[ ${fields[0]} != Z ]] && [[ ${fields[1]} == "$$" || " ${args[*]} " == *"$marker"* ]]
}
# stop PID MARKER [SIGNAL]: signals it and waits (at most 10 s, then SIGKILL) until it is gone.
stop() {
  local pid=$1 marker=$2 signal=${3:-TERM} i
  alive "$pid" "$marker" || return 0
  kill -"$signal" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$pid" "$marker" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" "$marker" || return 0
    sleep 0.1
  done
  echo "demo: process $pid ($marker) would not stop" >&2
  return 1
}

cleaned=0
cleanup() {
  local status=$?
  ((cleaned)) && return 0
  cleaned=1
  trap '' INT TERM
  local problems=0 entry pid i
  if [[ -n $agent_pid ]]; then
    stop "$agent_pid" balancing-agent TERM || problems=1
  fi
  for entry in "${backend_pids[@]}"; do # all signalled first, then each waited for
    alive "${entry%%:*}" "${entry#*:}" && kill -TERM "${entry%%:*}" 2>/dev/null
  done
  for entry in "${backend_pids[@]}"; do
    stop "${entry%%:*}" "${entry#*:}" TERM || problems=1
  done
  # the datapath: programs detached from the demo cgroup, every pin removed
  if [[ -n $pins && -e $pins ]]; then
    if ! "$agent" uninstall --bpffs "$pins" --cgroup "${cgroup:-/nonexistent}" --run-dir "$run_dir" \
      >/dev/null 2>"${scratch:-/tmp}/uninstall.err"; then
      echo "demo: balancing-agent uninstall failed: $(cat "${scratch:-/tmp}/uninstall.err" 2>/dev/null)" >&2
      problems=1
    fi
    [[ -d $pins ]] && { rm -rf -- "$pins" || problems=1; }
  fi
  if [[ -n $cgroup && -d $cgroup ]]; then
    # a client still inside (none should be: each has a time limit) was started by the demo
    while read -r pid; do
      kill -KILL "$pid" 2>/dev/null || true
    done <"$cgroup/cgroup.procs"
    for ((i = 0; i < 50; i++)); do
      rmdir "$cgroup" 2>/dev/null && break
      sleep 0.1
    done
    [[ -d $cgroup ]] && { echo "demo: cannot remove $cgroup" >&2; problems=1; }
  fi
  if [[ -n $scratch ]]; then
    rm -rf -- "$scratch"
  fi
  if ((problems)); then
    echo "demo: FAILED: cleanup left something behind (above)" >&2
    ((status)) || status=1
  elif ((status == 0)); then
    echo "removed: the backends, the cgroup $cgroup, the pins $pins, the scratch files"
    echo
    echo "demo: done in $((SECONDS - started)) s"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# Runs a command inside the demo cgroup (the shell moves itself there, then becomes the command).
in_cgroup() {
  sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cgroup" "$@"
}

# until SECONDS COMMAND...: runs the command every 0.1 s until it succeeds; fails after SECONDS.
until_ok() {
  local seconds=$1 deadline
  shift
  deadline=$((SECONDS + seconds))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------------------------
[[ -x $agent && -x $inspect ]] || fail "$agent or $inspect is not built (run without BALANCING_DEMO_SKIP_SETUP)"
for tool in curl dig dnsmasq jq python3; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (scripts/setup.sh installs it)"
done
# Debian's python3 (setup.sh installs it) starts faster than a version manager's shim
python=$(command -v /usr/bin/python3 || command -v python3)

cgroup2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
cgroup2=$(printf '%b' "$cgroup2") # /proc/mounts writes a space as \040
[[ -n $cgroup2 && -d $cgroup2 ]] || fail "no cgroup2 file system is mounted (/proc/mounts)"
scratch=$(mktemp -d /tmp/balancing-demo.XXXXXX)
manifests=$scratch/manifests
run_dir=$scratch/run
mkdir "$manifests" "$run_dir"
cp examples/standalone/*.yaml "$manifests/"
[[ ! -e /sys/fs/bpf/balancing-demo-$id ]] || fail "/sys/fs/bpf/balancing-demo-$id exists already (not the demo's: left alone)"
pins=/sys/fs/bpf/balancing-demo-$id
mkdir "$cgroup2/balancing-demo-$id" || fail "cannot create the demo cgroup $cgroup2/balancing-demo-$id"
cgroup=$cgroup2/balancing-demo-$id

step "the objects: a copy of examples/standalone/ in $manifests"
shown "$agent" plan --manifests "$manifests" --node-name standalone

step "backends on loopback: HTTP on 127.0.0.{1,2,4,5,6}:18080, dnsmasq on 127.0.0.1:15353 (the Service's) and 127.0.0.3:15353 (the node-local cache)"
"$python" scripts/demo/http_backend.py 18080 127.0.0.1 127.0.0.2 127.0.0.4 127.0.0.5 127.0.0.6 \
  >"$scratch/http.out" 2>&1 &
backend_pids+=("$!:http_backend.py")
dnsmasq_args=(--no-daemon --keep-in-foreground --conf-file=/dev/null --port=15353 --bind-interfaces
  --no-resolv --no-hosts --log-facility=- --no-ping)
dnsmasq "${dnsmasq_args[@]}" --listen-address=127.0.0.1 --address=/demo.balancing.test/192.0.2.10 \
  >"$scratch/dnsmasq-service.out" 2>&1 &
backend_pids+=("$!:dnsmasq")
dnsmasq "${dnsmasq_args[@]}" --listen-address=127.0.0.3 --address=/demo.balancing.test/192.0.2.53 \
  >"$scratch/dnsmasq-node-local.out" 2>&1 &
backend_pids+=("$!:dnsmasq")
# each backend answers, or has exited with its reason
http_ready() {
  alive "${backend_pids[0]%%:*}" http_backend.py || fail "the HTTP backends did not start: $(cat "$scratch/http.out")"
  grep -q '^ready' "$scratch/http.out"
}
dns_ready() { # INDEX ADDRESS ANSWER OUTPUT
  alive "${backend_pids[$1]%%:*}" dnsmasq || fail "dnsmasq on $2:15353 did not start: $(tail -n 3 "$4")"
  [[ $(dig +short +time=1 +tries=1 -p 15353 "@$2" demo.balancing.test 2>/dev/null) == "$3" ]]
}
until_ok 10 http_ready || fail "the HTTP backends did not start within 10 s"
until_ok 10 dns_ready 1 127.0.0.1 192.0.2.10 "$scratch/dnsmasq-service.out" ||
  fail "dnsmasq on 127.0.0.1:15353 did not answer within 10 s"
until_ok 10 dns_ready 2 127.0.0.3 192.0.2.53 "$scratch/dnsmasq-node-local.out" ||
  fail "dnsmasq on 127.0.0.3:15353 did not answer within 10 s"

step "the agent, standalone: pins in $pins, programs attached to $cgroup"
agent_port=$(free_port)
agent_args=(--manifests "$manifests" --node-name standalone --bpffs "$pins" --cgroup "$cgroup"
  --listen "127.0.0.1:$agent_port" --run-dir "$run_dir" --events all)
printf '$ %s %s &\n' "$agent" "${agent_args[*]}"
# the agent reads its options from the environment too: only the demo's count
env -u LD_PRELOAD -u NODE_NAME -u KUBECONFIG -u KUBERNETES_SERVICE_HOST -u BALANCING_MANIFESTS \
  -u BALANCING_LUA_DIR -u BALANCING_LOG_LEVEL -u BALANCING_BPF_LOG_LEVEL -u BALANCING_REDIRECT_QOS_LIMIT \
  -u BALANCING_OUT_CLUSTER -u BALANCING_SERVICE_PROXY_NAME -u BALANCING_EVENTS -u BALANCING_RUN_DIR \
  "$agent" "${agent_args[@]}" >"$scratch/agent.log" 2>"$scratch/agent.err" &
agent_pid=$!
ready() {
  alive "$agent_pid" balancing-agent || fail "the agent exited: $(tail -n 5 "$scratch/agent.err" "$scratch/agent.log")"
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$agent_port/readyz") == 200 ]]
}
until_ok 20 ready || fail "the agent did not answer 200 on /readyz within 20 s"
echo "ready: /readyz answers 200 on 127.0.0.1:$agent_port"
echo "started: agent pid $agent_pid; backends pids ${backend_pids[*]%%:*}; cgroup $cgroup; pins $pins"

# expect LABEL PATTERN COMMAND...: runs a client inside the demo cgroup, prints its answer, and
# fails unless the answer matches the extended regular expression.
expect() {
  local label=$1 pattern=$2 answer
  shift 2
  answer=$(in_cgroup "$@" 2>&1) || true
  answer=${answer%$'\n'}
  printf '  %-34s %s\n' "$label" "${answer:-(no answer)}"
  [[ $answer =~ $pattern ]] || fail "$label: expected an answer matching '$pattern', got '${answer:-nothing}'"
}

step "clients inside the demo cgroup; nothing listens on 127.10.0.x"
echo "Service demo/web, 127.10.0.1:80 -> 127.0.0.1:18080, 127.0.0.2:18080"
for i in 1 2 3 4 5 6; do
  expect "curl http://127.10.0.1/" '^hello from backend 127\.0\.0\.[12]:18080$' curl -s --max-time 3 http://127.10.0.1/
done
echo "Service demo/dns, 127.10.0.53:53 -> dnsmasq 127.0.0.1:15353 (answers 192.0.2.10)"
expect "dig @127.10.0.53 (UDP)" '^192\.0\.2\.10$' dig +short +time=2 +tries=1 @127.10.0.53 demo.balancing.test
expect "dig +tcp @127.10.0.53" '^192\.0\.2\.10$' dig +short +tcp +time=2 +tries=1 @127.10.0.53 demo.balancing.test
echo "LocalRedirectPolicy node-local-dns, 127.10.0.10:53 -> the node-local pod 127.0.0.3:15353 (answers 192.0.2.53)"
expect "dig @127.10.0.10 (UDP)" '^192\.0\.2\.53$' dig +short +time=2 +tries=1 @127.10.0.10 demo.balancing.test
expect "dig +tcp @127.10.0.10" '^192\.0\.2\.53$' dig +short +tcp +time=2 +tries=1 @127.10.0.10 demo.balancing.test
echo "BalancingPolicy web-global, 127.10.0.2:80 -> 127.0.0.4:18080, 127.0.0.5:18080"
for i in 1 2 3 4; do
  expect "curl http://127.10.0.2/" '^hello from backend 127\.0\.0\.[45]:18080$' curl -s --max-time 3 http://127.10.0.2/
done
echo "the same curl from outside the demo cgroup: not translated, so refused"
outside=$(curl -s --max-time 2 http://127.10.0.1/ 2>&1) && fail "curl outside the cgroup got an answer: $outside"
echo "  curl http://127.10.0.1/            (no answer)"

step "what is programmed in the kernel"
shown "$inspect" --bpffs "$pins" --run-dir "$run_dir" showMapData all ||
  fail "inspect showMapData all failed"
echo
shown "$inspect" --bpffs "$pins" --run-dir "$run_dir" traceMapData service demo web ||
  fail "inspect traceMapData service demo web failed"
echo
# (policies are cluster-scoped: the NAMESPACE word is not used)
shown "$inspect" --bpffs "$pins" --run-dir "$run_dir" traceMapData localRedirect kube-system node-local-dns ||
  fail "inspect traceMapData localRedirect kube-system node-local-dns failed"
echo
shown "$inspect" --bpffs "$pins" --run-dir "$run_dir" traceMapData balancing default web-global ||
  fail "inspect traceMapData balancing default web-global failed"

step "the translation events, as the agent logs them"
# each type's events reach the log within about 100 ms of the translation
events() { grep "formatted ebpf event" "$scratch/agent.log"; }
has_events() {
  events | jq -s -e 'any(.[]; .natType == "service") and any(.[]; .natType == "localRedirect")
    and any(.[]; .natType == "balancing")' >/dev/null 2>&1
}
until_ok 10 has_events || fail "no formatted ebpf event of each type (service, localRedirect, balancing) in the agent's log"
# every event line is one JSON object and nothing else
lines=$(events | wc -l)
objects=$(events | jq -c 'select(type == "object")' | wc -l) || fail "an event line of the agent's log is not JSON"
((lines == objects)) || fail "$lines event lines in the agent's log but $objects JSON objects"
echo '$ grep "formatted ebpf event" agent.log | jq .    (the first of each type)'
for type in service localRedirect balancing; do
  events | jq -s --arg t "$type" 'map(select(.natType == $t))[0]'
done
echo
echo '$ grep "formatted ebpf event" agent.log | jq -r ...    (all of them, one a line)'
events |
  jq -r '"\(.natType)\t\(.policyName)\t\(.protocol)\t\(.destIp):\(.destPort) -> \(.natIp):\(.natPort)\tsuccess=\(.isSuccess)\tpid=\(.clientPid)"' |
  column -t -s $'\t'

step "edit a manifest: web-global gets a third backend, 127.0.0.6:18080"
edited_at=$(date +%s%3N)
sed -i 's/addresses: \[127\.0\.0\.4, 127\.0\.0\.5\]/addresses: [127.0.0.4, 127.0.0.5, 127.0.0.6]/' \
  "$manifests/balancing-policy.yaml"
diff -u examples/standalone/balancing-policy.yaml "$manifests/balancing-policy.yaml" |
  sed -e "1s|.*|--- examples/standalone/balancing-policy.yaml|" -e "2s|.*|+++ $manifests/balancing-policy.yaml|" &&
  fail "the edit changed nothing in balancing-policy.yaml"
three_backends() {
  "$inspect" --bpffs "$pins" --json showMapData service 2>/dev/null |
    jq -e '.frontends[] | select(.address == "127.10.0.2" and .port == 80) | select(.backends | length == 3)' >/dev/null
}
until_ok 10 three_backends || fail "the agent did not program the third backend of web-global within 10 s"
echo "the agent followed the edit: programmed $(($(date +%s%3N) - edited_at)) ms after it"
shown "$inspect" --bpffs "$pins" --run-dir "$run_dir" traceMapData balancing default web-global ||
  fail "inspect traceMapData balancing default web-global failed"
reached_third=0
for i in $(seq 1 30); do
  answer=$(in_cgroup curl -s --max-time 3 http://127.10.0.2/ 2>&1) || true
  printf '  %-34s %s\n' "curl http://127.10.0.2/" "${answer:-(no answer)}"
  [[ $answer =~ ^hello\ from\ backend\ 127\.0\.0\.[456]:18080$ ]] || fail "curl http://127.10.0.2/: got '${answer:-nothing}'"
  if [[ $answer == *127.0.0.6:18080 ]]; then
    reached_third=1
    break
  fi
done
((reached_third)) || fail "30 connections to 127.10.0.2 and none reached the new backend 127.0.0.6"

step "stop the agent and remove everything the demo made"
stop "$agent_pid" balancing-agent TERM || fail "the agent would not stop"
echo "agent stopped (pid $agent_pid; the datapath stays pinned until uninstall)"
shown "$agent" uninstall --bpffs "$pins" --cgroup "$cgroup" --run-dir "$run_dir" || fail "balancing-agent uninstall failed"
exit 0 # the EXIT trap removes the rest (backends, cgroup, scratch files) and says so
