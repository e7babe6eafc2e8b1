#!/usr/bin/env bash
# The capture behind docs/debugging.md: every step of the operator checklist
# (../shared/seed/ebpf-debug.en.md) run for real on this machine, each command
# printed before its output.
#
#   sudo scripts/debugging_capture.sh          # from anywhere; run as root
#
# It sets up, with test-safe paths only (CONTRACTS.md, "Test safety"):
#   - a cgroup of its own, balancing-doc-<pid>, under the cgroup2 mount read
#     from /proc/mounts, with a client "pod" cgroup below it (kubelet's systemd
#     layout), so that events name a pod;
#   - a pin directory of its own, /sys/fs/bpf/balancing-doc-<pid>;
#   - a scratch directory (mktemp) holding the run directory (--run-dir), the
#     agent's log, the kubeconfig and kubectl's cache;
#   - the fake API server (scripts/fake_apiserver.py, TLS and a token, on
#     127.0.0.1 only) with a node, Services, EndpointSlices, pods and both kinds
#     of policy, all on loopback addresses;
#   - loopback backends: two HTTP servers and dnsmasq, on free ports;
#   - the real agent following that server as node-1.
# Real clients (curl, dig) run in the client pod's cgroup; nothing connects
# outside 127.0.0.0/8. On every exit (trap) the agent is stopped,
# `balancing-agent uninstall --bpffs ... --run-dir ...` detaches and unpins,
# the cgroups are removed, the server, backends and dnsmasq are stopped (each by
# the pid this script started), and the scratch directory is deleted.
#
# Output: "### step N: title", "~# command", the command's output, then
# "--- step N: ok" or "--- step N: FAILED (exit S)"; the last line is
# "debugging capture: N steps, N failed". Exit status 0 when every step passed.
# spec/e2e/debugging_capture_spec.lua runs it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

if [[ $(id -u) -ne 0 ]]; then
  echo "debugging_capture: needs root (it loads eBPF programs and makes a cgroup)" >&2
  exit 2
fi

BUILD_DIR=${BALANCING_BUILD_DIR:-build}
AGENT=$BUILD_DIR/bin/balancing-agent
INSPECT=$BUILD_DIR/bin/inspect
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3
for tool in "$AGENT" "$INSPECT" bpftool kubectl jq curl dnsmasq unshare "$PYTHON"; do
  if ! command -v "$tool" >/dev/null; then
    echo "debugging_capture: $tool is missing (scripts/setup.sh installs the tools; cmake --build build builds the agent)" >&2
    exit 2
  fi
done
CGROUP2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [[ -z $CGROUP2 ]]; then
  echo "debugging_capture: no cgroup2 mount in /proc/mounts" >&2
  exit 2
fi
if ! awk '$2 == "/sys/fs/bpf" && $3 == "bpf" { found = 1 } END { exit !found }' /proc/mounts; then
  echo "debugging_capture: bpffs is not mounted at /sys/fs/bpf" >&2
  exit 2
fi
# (processes started here run without a sanitizer preload of a spec runner)
unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
# (the agent and inspect read these; only the options given here count)
unset BALANCING_BPFFS BALANCING_RUN_DIR BALANCING_CGROUP BALANCING_MANIFESTS BALANCING_EVENTS \
  BALANCING_BPF_LOG_LEVEL BALANCING_LUA_DIR BALANCING_LISTEN KUBERNETES_SERVICE_HOST

ID=$$
PINS=/sys/fs/bpf/balancing-doc-$ID
CGROUP=$CGROUP2/balancing-doc-$ID
WORK=$(mktemp -d "/tmp/balancing-doc-$ID.XXXXXX")
RUN_DIR=$WORK/run
LOG=$WORK/agent.log
TOKEN=debug-token-$ID
NODE=node-1
# The client pod: its cgroup as kubelet's systemd driver names it, below ours.
CLIENT_UID=6f1c0a8e-5d2b-4c3a-9e47-0c1d2e3f4a5b
CLIENT_CONTAINER=4c5bd1a6e2f03b7c9d8e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e
POD_SLICE=$CGROUP/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${CLIENT_UID//-/_}.slice
CLIENT_CGROUP=$POD_SLICE/cri-containerd-$CLIENT_CONTAINER.scope
AGENT_PID="" SERVER_PID="" BACKENDS_PID="" DNSMASQ_PID="" AGENT_RAN=""

# Stops pid (only while its command line still contains marker) and waits
# for it to be gone.
stop() {
  local pid=$1 marker=$2 i
  [[ -n $pid ]] || return 0
  for i in $(seq 1 100); do
    if [[ ! -r /proc/$pid/cmdline ]] || ! { tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"; } 2>/dev/null \
      || [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then
      wait "$pid" 2>/dev/null
      return 0
    fi
    if ((i == 1)); then kill -TERM "$pid" 2>/dev/null; fi
    if ((i == 60)); then kill -KILL "$pid" 2>/dev/null; fi
    sleep 0.05
  done
  echo "debugging_capture: pid $pid ($marker) is still running" >&2
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  echo
  echo "== cleanup"
  stop "$AGENT_PID" balancing-agent
  if [[ -n $AGENT_RAN || -e $PINS ]]; then
    echo "~# $AGENT uninstall --bpffs $PINS --cgroup $CGROUP --run-dir $RUN_DIR"
    "$AGENT" uninstall --bpffs "$PINS" --cgroup "$CGROUP" --run-dir "$RUN_DIR" 2>&1 | tail -n 3
  fi
  stop "$DNSMASQ_PID" dnsmasq
  stop "$BACKENDS_PID" debugging-backends
  stop "$SERVER_PID" fake_apiserver
  local dir
  for dir in "$CLIENT_CGROUP" "$POD_SLICE" "${POD_SLICE%/*}" "$CGROUP/kubepods.slice" "$CGROUP"; do
    [[ -d $dir ]] && rmdir "$dir"
  done
  [[ -d $PINS ]] && rmdir "$PINS"
  rm -rf "$WORK"
  local left=
  for path in "$PINS" "$CGROUP" "$WORK"; do
    [[ -e $path ]] && left="$left $path"
  done
  if [[ -n $left ]]; then
    echo "debugging_capture: left behind:$left" >&2
    status=1
  else
    echo "removed: $PINS $CGROUP $WORK; stopped: agent ${AGENT_PID:--}, fake API server ${SERVER_PID:--}," \
      "backends ${BACKENDS_PID:--}, dnsmasq ${DNSMASQ_PID:--}"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
  echo "debugging_capture: $*" >&2
  [[ -f $LOG ]] && { echo "--- the agent's log ends:" >&2; tail -n 20 "$LOG" >&2; }
  exit 1
}

# Polls a command (quiet) every 50 ms for at most $1 seconds.
wait_for() {
  local seconds=$1 i
  shift
  for ((i = 0; i < seconds * 20; i++)); do
    if eval "$*" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  return 1
}

STEP=0 FAILED=0
# step TITLE COMMAND: prints the command, runs it (its stderr too), says ok or FAILED.
step() {
  STEP=$((STEP + 1))
  printf '\n### step %d: %s\n~# %s\n' "$STEP" "$1" "$2"
  local status=0
  eval "$2" 2>&1 || status=$?
  if ((status == 0)); then
    echo "--- step $STEP: ok"
  else
    echo "--- step $STEP: FAILED (exit $status)"
    FAILED=$((FAILED + 1))
  fi
}

# in_pod COMMAND...: runs COMMAND in the client pod's cgroup (the shell moves
# itself there, then execs it, so the pid is the client's; kept for the trace).
in_pod() {
  sh -c 'echo $$ >>"$1"; echo $$ >"$2/cgroup.procs" && shift 2 && exec "$@"' sh "$WORK/client.pids" "$CLIENT_CGROUP" "$@"
}

echo "== debugging capture: pins $PINS, cgroup $CGROUP, run dir $RUN_DIR, log $LOG"
echo "   kernel $(uname -r), $(bpftool version 2>/dev/null | head -n1)"

# --- backends: HTTP on 127.0.0.1 and 127.0.0.2 (ports from the kernel), dnsmasq on 127.0.0.3;
# the same process finds free ports for dnsmasq and the agent's --listen
mkdir -p "$RUN_DIR" "$WORK/lua" "$WORK/objects" "$WORK/home" "$WORK/tracefs"
# A one-socket DNS client (dig sends from a worker thread, whose trace lines carry a
# thread ID that the trace filter below cannot know).
cat >"$WORK/dns_query.py" <<'PY'
"""dns_query.py SERVER NAME: one A query over UDP from one socket, in one thread;
prints the answers and the address the reply came from."""
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2)
sock.sendto(struct.pack(">HHHHHH", 0x2f1d, 0x0100, 1, 0, 0, 0) + question, (server, 53))
reply, source = sock.recvfrom(512)
at = 12 + len(question)
for _ in range(struct.unpack(">H", reply[6:8])[0]):
    at += 2  # the name, compressed
    kind, _, _, length = struct.unpack(">HHIH", reply[at:at + 10])
    at += 10
    if kind == 1:
        print("%s. A %s" % (name, socket.inet_ntoa(reply[at:at + length])))
    at += length
print("(the reply came from %s:%d)" % source)
PY
"$PYTHON" -I - debugging-backends "$WORK/backends" 127.0.0.1 127.0.0.2 >"$WORK/backends.log" 2>&1 <<'EOF' &
# HTTP backends on port 0 of each address: each answers with its own address.
import http.server, os, socket, sys, threading
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from backend %s:%d\n" % self.server.server_address).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
servers = [http.server.HTTPServer((address, 0), Handler) for address in sys.argv[3:]]
def free_port(kind, address):  # (a port free now, for dnsmasq and the agent, which cannot take port 0)
    import socket
    probe = socket.socket(socket.AF_INET, kind)
    probe.bind((address, 0))
    port = probe.getsockname()[1]
    probe.close()
    return port
ports = [s.server_address[1] for s in servers]
ports += [free_port(socket.SOCK_DGRAM, "127.0.0.3"), free_port(socket.SOCK_STREAM, "127.0.0.1")]
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(" ".join(map(str, ports)) + "\n")
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
EOF
BACKENDS_PID=$!
wait_for 10 "[[ -s $WORK/backends ]]" || die "the HTTP backends did not start: $(cat "$WORK/backends.log")"
read -r PORT_A PORT_B DNS_PORT LISTEN_PORT <"$WORK/backends"
dnsmasq --no-daemon --keep-in-foreground --conf-file=/dev/null --pid-file= --port="$DNS_PORT" \
  --listen-address=127.0.0.3 --bind-interfaces --no-resolv --no-hosts \
  --address=/web.demo.test/127.10.0.1 >"$WORK/dnsmasq.log" 2>&1 &
DNSMASQ_PID=$!
echo "   backends: http 127.0.0.1:$PORT_A, http 127.0.0.2:$PORT_B (pid $BACKENDS_PID); dnsmasq 127.0.0.3:$DNS_PORT (pid $DNSMASQ_PID)"

# --- the cluster's objects (the node and the policies without balancing's annotations:
# the agent writes them)
cat >"$WORK/objects/cluster.yaml" <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  labels: {kubernetes.io/hostname: $NODE, kubernetes.io/os: linux}
status:
  addresses:
    - {type: InternalIP, address: 127.0.0.1}
    - {type: Hostname, address: $NODE}
---
# demo/web: a ClusterIP Service with two backends (one EndpointSlice per backend port)
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo, uid: 0d5e6f70-0000-4000-8000-000000000101}
spec:
  type: ClusterIP
  clusterIP: 127.10.0.1
  clusterIPs: [127.10.0.1]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-a, namespace: demo, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: $PORT_A, protocol: TCP}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}, nodeName: $NODE}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-b, namespace: demo, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: $PORT_B, protocol: TCP}]
endpoints: [{addresses: [127.0.0.2], conditions: {ready: true}, nodeName: $NODE}]
---
# demo/api: its BalancingPolicy api-canary sends it to the pods labelled app=api-canary
apiVersion: v1
kind: Service
metadata: {name: api, namespace: demo, uid: 0d5e6f70-0000-4000-8000-000000000102}
spec:
  type: ClusterIP
  clusterIP: 127.10.0.2
  clusterIPs: [127.10.0.2]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, namespace: demo, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: $PORT_A, protocol: TCP}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}, nodeName: $NODE}]
---
# demo/dns: the "cluster DNS" (its endpoint 127.0.0.4 answers nothing); the
# LocalRedirectPolicy node-local-dns sends it to this node's node-local-dns pod
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: demo, uid: 0d5e6f70-0000-4000-8000-000000000103}
spec:
  type: ClusterIP
  clusterIP: 127.10.0.53
  clusterIPs: [127.10.0.53]
  ports: [{name: dns, port: 53, protocol: UDP, targetPort: 53}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: dns-1, namespace: demo, labels: {kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{name: dns, port: 53, protocol: UDP}]
endpoints: [{addresses: [127.0.0.4], conditions: {ready: true}, nodeName: $NODE}]
---
# demo/legacy: a Service whose endpoints are gone
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: demo, uid: 0d5e6f70-0000-4000-8000-000000000104}
spec:
  type: ClusterIP
  clusterIP: 127.10.0.9
  clusterIPs: [127.10.0.9]
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Pod
metadata:
  name: node-local-dns-x7k2p
  namespace: demo
  uid: 0d5e6f70-0000-4000-8000-000000000201
  labels: {k8s-app: node-local-dns}
spec:
  nodeName: $NODE
  containers: [{name: node-cache, image: registry.k8s.io/dns/k8s-dns-node-cache:1.23.1}]
status:
  phase: Running
  podIP: 127.0.0.3
  podIPs: [{ip: 127.0.0.3}]
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Pod
metadata:
  name: api-canary-5d8f9
  namespace: demo
  uid: 0d5e6f70-0000-4000-8000-000000000202
  labels: {app: api-canary}
spec:
  nodeName: $NODE
  containers: [{name: api, image: example.com/api:canary, ports: [{name: http, containerPort: $PORT_B}]}]
status:
  phase: Running
  podIP: 127.0.0.2
  podIPs: [{ip: 127.0.0.2}]
  conditions: [{type: Ready, status: "True"}]
---
# the client: its cgroup is made below the agent's --cgroup
apiVersion: v1
kind: Pod
metadata:
  name: client-6c9f7
  namespace: demo
  uid: $CLIENT_UID
  labels: {app: client}
spec:
  nodeName: $NODE
  containers: [{name: client, image: example.com/toolbox:1}]
status:
  phase: Running
  podIP: 127.0.0.5
  podIPs: [{ip: 127.0.0.5}]
  conditions: [{type: Ready, status: "True"}]
  containerStatuses: [{name: client, containerID: "containerd://$CLIENT_CONTAINER", ready: true}]
---
apiVersion: balancing.elf.io/v1beta1
kind: LocalRedirectPolicy
metadata: {name: node-local-dns, creationTimestamp: "2026-11-30T10:00:00Z"}
spec:
  frontend:
    serviceMatcher:
      namespace: demo
      serviceName: dns
      toPorts: [{port: "53", protocol: UDP, name: dns}]
  backend:
    endpointSelector: {matchLabels: {k8s-app: node-local-dns}}
    toPorts: [{port: "$DNS_PORT", protocol: UDP, name: dns}]
---
# the same frontend, written later: the older policy keeps it
apiVersion: balancing.elf.io/v1beta1
kind: LocalRedirectPolicy
metadata: {name: node-local-dns-copy, creationTimestamp: "2026-11-30T11:00:00Z"}
spec:
  frontend:
    serviceMatcher:
      namespace: demo
      serviceName: dns
      toPorts: [{port: "53", protocol: UDP, name: dns}]
  backend:
    endpointSelector: {matchLabels: {k8s-app: node-local-dns}}
    toPorts: [{port: "$DNS_PORT", protocol: UDP, name: dns}]
---
apiVersion: balancing.elf.io/v1beta1
kind: BalancingPolicy
metadata: {name: api-canary, creationTimestamp: "2026-11-30T10:30:00Z"}
spec:
  frontend:
    serviceMatcher:
      namespace: demo
      serviceName: api
      toPorts: [{port: "80", protocol: TCP, name: http}]
  backend:
    serviceEndpoint:
      endpointSelector: {matchLabels: {app: api-canary}}
      toPorts: [{port: "$PORT_B", protocol: TCP, name: http}]
      redirectMode: podEndpoint
EOF

# --- the fake API server (TLS with a throwaway CA, a bearer token, 127.0.0.1 only)
"$PYTHON" -I scripts/fake_apiserver.py --tls --token "$TOKEN" --ca-file "$WORK/ca.crt" \
  --port-file "$WORK/apiserver.port" --manifests "$WORK/objects" --exit-with-parent $$ >"$WORK/apiserver.log" 2>&1 &
SERVER_PID=$!
wait_for 30 "[[ -s $WORK/apiserver.port ]]" || die "the fake API server did not start: $(cat "$WORK/apiserver.log")"
API_PORT=$(tr -d '\n' <"$WORK/apiserver.port")
API=https://127.0.0.1:$API_PORT
CRD=/apis/balancing.elf.io/v1beta1
api_get() { curl -sf --max-time 2 --cacert "$WORK/ca.crt" -H "Authorization: Bearer $TOKEN" "$API$1"; }
cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "$API", certificate-authority: "$WORK/ca.crt"}}]
users: [{name: operator, user: {token: "$TOKEN"}}]
contexts: [{name: fake, context: {cluster: fake, user: operator}}]
current-context: fake
EOF
# kubectl reads this kubeconfig and keeps its cache in the scratch HOME
export KUBECONFIG=$WORK/kubeconfig HOME=$WORK/home
echo "   fake API server $API (pid $SERVER_PID); export KUBECONFIG=$KUBECONFIG"

# --- the agent, in the cgroups made here
mkdir -p "$CLIENT_CGROUP" || die "cannot create $CLIENT_CGROUP"
"$AGENT" --kubeconfig "$WORK/kubeconfig" --node-name "$NODE" --cgroup "$CGROUP" --bpffs "$PINS" \
  --run-dir "$RUN_DIR" --lua-dir "$WORK/lua" --listen "127.0.0.1:$LISTEN_PORT" >"$LOG" 2>&1 &
AGENT_PID=$! AGENT_RAN=1
echo "   agent pid $AGENT_PID: $AGENT --kubeconfig $WORK/kubeconfig --node-name $NODE --cgroup $CGROUP --bpffs $PINS" \
  "--run-dir $RUN_DIR --lua-dir $WORK/lua --listen 127.0.0.1:$LISTEN_PORT >$LOG"
wait_for 30 "curl -sf --max-time 1 http://127.0.0.1:$LISTEN_PORT/readyz || ! kill -0 $AGENT_PID" || true
curl -sf --max-time 1 "http://127.0.0.1:$LISTEN_PORT/readyz" >/dev/null || die "the agent was not ready within 30 s"
# its annotations written and seen back, its state file naming the policies' IDs
# (waited for with curl on the API: each kubectl costs most of a second)
wait_for 10 "api_get /api/v1/nodes/$NODE | grep -q balancing.elf.io/nodeId" || die "node $NODE was not annotated"
wait_for 10 "[[ \$( (api_get $CRD/localredirectpolicies; api_get $CRD/balancingpolicies) | grep -o balancing.elf.io/serviceId | wc -l) -eq 3 ]]" \
  || die "the policies were not annotated"
wait_for 10 "$INSPECT --bpffs $PINS --run-dir $RUN_DIR traceMapData balancing demo api-canary | grep -q 'api-canary (id [1-9]'" \
  || die "the state file does not name the policy's ID"

# --- the checklist
echo
echo "== node eBPF checks"
step "the pinned maps" "ls $PINS"
step "the maps, by their pins (bpftool map show lists every map on the machine; these are balancing's)" \
  "for pin in $PINS/map_*; do bpftool map show pinned \$pin; done"
step "a map dumped with its BTF field names" "bpftool map dump pinned $PINS/map_configure"
step "where cgroup v2 is mounted" "grep cgroup2 /proc/mounts"
step "the cgroup v2 mount" "ls $CGROUP2"
step "balancing's programs (by the IDs attached to the cgroup)" \
  "for id in \$(bpftool -j cgroup show $CGROUP | jq -r '.[].id'); do bpftool prog show id \$id; done"
step "the programs attached to the cgroup" "bpftool cgroup tree $CGROUP"
step "the programs' log level" "$INSPECT --bpffs $PINS setMapData configure bpfLogLevel verbose"

echo
echo "== clients in the client pod's cgroup ($CLIENT_CGROUP)"
step "curl the Service demo/web three times (nothing listens on 127.10.0.1)" \
  "for i in 1 2 3; do in_pod curl -s --max-time 3 http://127.10.0.1/; done"
step "curl the Service demo/api (its BalancingPolicy api-canary sends it to the canary pod)" \
  "in_pod curl -s --max-time 3 http://127.10.0.2/"
step "a DNS query to the Service demo/dns (its LocalRedirectPolicy node-local-dns sends it to this node's pod)" \
  "in_pod $PYTHON -I $WORK/dns_query.py 127.10.0.53 web.demo.test"
step "curl the Service demo/legacy, which has no endpoints (curl's exit status 7 expected)" \
  "in_pod curl -sS --max-time 3 http://127.10.0.9/; test \$? -eq 7"
CLIENT_PIDS=$(sort -u "$WORK/client.pids" | paste -sd'|')

if [[ -r /sys/kernel/tracing/trace ]]; then
  TRACE=/sys/kernel/tracing/trace
  TRACE_READ="grep -E -- '-($CLIENT_PIDS) +\\[.*balancing: ' $TRACE"
else
  # tracefs is not mounted on this host: mounted in a private mount namespace of
  # the reader's own, seen by no one else and gone when grep exits
  TRACE=$WORK/tracefs/trace
  TRACE_READ="unshare -m sh -c 'mount -t tracefs tracefs $WORK/tracefs && grep -E -- \"-($CLIENT_PIDS) +\\[.*balancing: \" $TRACE'"
fi
step "the programs' trace lines of these clients (the non-consuming trace file, filtered by their pids)" "$TRACE_READ"
"$INSPECT" --bpffs "$PINS" setMapData configure bpfLogLevel error >/dev/null

echo
echo "== the agent's log"
wait_for 5 "[[ \$(grep -c '\"formatted ebpf event\"' $LOG) -ge 6 ]] && grep -q '\"isSuccess\":false' $LOG" \
  || echo "   (fewer events than clients within 5 s)"
step "the translation events (the agent's stdout: kubectl logs of its pod on a cluster)" \
  "grep \"formatted ebpf event\" $LOG | jq ."
step "events and drops in the agent's metrics" \
  "curl -s http://127.0.0.1:$LISTEN_PORT/metrics | grep -E '^balancing_(events_total|events_dropped_total|translations_total)'"

echo
echo "== objects"
step "the nodes' annotations" "kubectl get nodes -o jsonpath='{.items[*].metadata.annotations}' | jq ."
step "the BalancingPolicies' annotations" "kubectl get balancingpolicies -o jsonpath='{.items[*].metadata.annotations}' | jq ."
step "the LocalRedirectPolicies' annotations" \
  "kubectl get localredirectpolicies -o jsonpath='{.items[*].metadata.annotations}' | jq ."
step "the agent's identity lines" "grep '\"msg\":\"annotated\"' $LOG | jq -c ."

echo
echo "== the data in the eBPF maps"
step "every map" "$INSPECT --bpffs $PINS --run-dir $RUN_DIR showMapData all"
step "one Service" "$INSPECT --bpffs $PINS --run-dir $RUN_DIR traceMapData service demo web"
step "one LocalRedirectPolicy" "$INSPECT --bpffs $PINS --run-dir $RUN_DIR traceMapData localRedirect demo node-local-dns"
step "one BalancingPolicy, by the Service its frontend matches" \
  "$INSPECT --bpffs $PINS --run-dir $RUN_DIR traceMapData balancing demo api"
step "a policy that is not programmed" \
  "$INSPECT --bpffs $PINS --run-dir $RUN_DIR traceMapData localRedirect demo node-local-dns-copy"
step "a Service programmed without a backend" "$INSPECT --bpffs $PINS --run-dir $RUN_DIR traceMapData service demo legacy"
step "an object the agent does not know (exit status 2 expected)" \
  "$INSPECT --bpffs $PINS --run-dir $RUN_DIR traceMapData service demo nope; test \$? -eq 2"

echo
echo "== an annotation the API server refuses"
# (RBAC is not part of the fake API server: its fault switch answers the agent's next
# PATCH of this policy with 403, as a ClusterRole without "patch" would)
curl -sf --cacert "$WORK/ca.crt" -X POST "$API/_fake/faults" \
  -d '{"failRequests": 1, "failCode": 403, "failPath": "/localredirectpolicies/dns-refused"}' >/dev/null \
  || die "the fault was not switched on"
cat >"$WORK/dns-refused.yaml" <<EOF
apiVersion: balancing.elf.io/v1beta1
kind: LocalRedirectPolicy
metadata:
  name: dns-refused
  annotations: {owner: platform-team}
spec:
  frontend:
    addressMatcher:
      ip: 127.10.0.54
      toPorts: [{port: "53", protocol: UDP, name: dns}]
  backend:
    endpointSelector: {matchLabels: {k8s-app: node-local-dns}}
    toPorts: [{port: "$DNS_PORT", protocol: UDP, name: dns}]
EOF
step "a new LocalRedirectPolicy" "kubectl create --validate=false -f $WORK/dns-refused.yaml"
wait_for 10 "grep -q '\"annotation refused\"' $LOG" || echo "   (no refusal within 10 s)"
step "its annotations: no serviceId" \
  "kubectl get localredirectpolicies dns-refused -o jsonpath='{.metadata.annotations}' | jq ."
step "the agent's line" "grep '\"annotation refused\"' $LOG | jq ."
# (the state file follows within a second of an ID given: the agent's one-second tick)
wait_for 5 "$INSPECT --bpffs $PINS --run-dir $RUN_DIR traceMapData localRedirect demo dns-refused" \
  || echo "   (the state file does not name dns-refused within 5 s)"
step "what inspect says of it" "$INSPECT --bpffs $PINS --run-dir $RUN_DIR traceMapData localRedirect demo dns-refused"
# (the fault answered one request: the next PATCH passes, as after the ClusterRole is fixed)
step "the policy changed (the agent asks again for each new version of the object)" \
  "kubectl annotate localredirectpolicies dns-refused reviewed=yes"
wait_for 10 "api_get $CRD/localredirectpolicies/dns-refused | grep -q balancing.elf.io/serviceId" \
  || echo "   (no serviceId within 10 s)"
step "its annotations now" "kubectl get localredirectpolicies dns-refused -o jsonpath='{.metadata.annotations}' | jq ."

echo
echo "debugging capture: $STEP steps, $FAILED failed"
((FAILED == 0))
