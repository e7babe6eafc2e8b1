/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * THE shared header of Balancing: every map key and value, the event
 * record, every reason code and constant. The eBPF programs, the C core and
 * Lua (ffi.cdef of this very text, see lua/balancing/abi.lua) all use it, so
 * no layout is written twice.
 *
 * Rules that keep one text readable by all three:
 *  - constants are enums, never #define: LuaJIT's ffi.cdef drops
 *    preprocessor lines (abi.lua strips every line starting with '#');
 *  - no preprocessor line may change the meaning of the body;
 *  - structs have natural alignment with explicit padding, so BPF (clang
 *    -target bpf), gcc and LuaJIT agree byte for byte;
 *  - addresses and ports are in network byte order, as the kernel hands
 *    them to cgroup sock_addr programs (ctx->user_ip4, ctx->user_port).
 *
 * IPv6: this version programs IPv4. The IPv4 maps keep compact 4-byte
 * address keys; IPv6 will get maps of its own (map_service6, ...) that reuse
 * the value structs below. The event record already carries 16-byte
 * addresses and an is_ipv4 flag, so consumers will not change.
 */
#ifndef BALANCING_H
#define BALANCING_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#include <linux/bpf.h> /* struct bpf_spin_lock (abi.lua declares it for LuaJIT) */
#endif

/* Bumped whenever a layout below changes: a pinned map set from another ABI
 * version is recreated rather than reused (core/loader.c). */
enum balancing_abi {
	BALANCING_ABI_VERSION = 2,
};

/* Which kind of object programmed a frontend. The order is the lookup
 * priority for one address:port:protocol (LocalRedirect first). */
enum nat_type {
	NAT_TYPE_SERVICE = 0,
	NAT_TYPE_LOCAL_REDIRECT = 1,
	NAT_TYPE_BALANCING = 2,
};

/* How the frontend was derived; shown as "mode" in the frontend view. */
enum nat_mode {
	NAT_MODE_NONE = 0,
	NAT_MODE_CLUSTER_IP = 1,
	NAT_MODE_NODE_PORT = 2,
	NAT_MODE_LOAD_BALANCER = 3,
	NAT_MODE_EXTERNAL_IP = 4,
	NAT_MODE_REDIRECT_SERVICE = 5,
	NAT_MODE_REDIRECT_ADDRESS = 6,
	NAT_MODE_BALANCING_POD = 7,
	NAT_MODE_BALANCING_HOST_PORT = 8,
	NAT_MODE_BALANCING_NODE_PROXY = 9,
	NAT_MODE_BALANCING_ADDRESS = 10,
};

/* Protocols as IPPROTO_* values (the same numbers as in <netinet/in.h>). */
enum balancing_protocol {
	BALANCING_PROTO_TCP = 6,
	BALANCING_PROTO_UDP = 17,
};

/* Why a translation failed (or 0 when it succeeded). */
enum balancing_reason {
	REASON_OK = 0,
	REASON_NO_BACKEND = 1,        /* the frontend has zero backends */
	REASON_NO_LOCAL_BACKEND = 2,  /* traffic policy Local, none on this node */
	REASON_BACKEND_MISSING = 3,   /* a slot below the count is absent */
	REASON_NAT_RECORD_FAILED = 4, /* translated, reverse record not stored */
	REASON_REDIRECT_LIMIT = 5,    /* LocalRedirect over its QoS limit and no
					 Balancing/Service entry behind it: the
					 connection proceeds untranslated */
};

/* The hook that produced an event. */
enum balancing_hook {
	HOOK_CONNECT4 = 1,
	HOOK_SENDMSG4 = 2,
};

/* What a cgroup sock_addr program returns. A reject with no retval set
 * reaches the caller as EPERM, so every reject sets one first. */
enum balancing_verdict {
	VERDICT_REJECT = 0,
	VERDICT_PROCEED = 1,
};

/* A NodePort frontend's service_key.address: it matches any node IP. */
enum balancing_node_port {
	NODE_PORT_ANY_ADDRESS = 0,
};

/* Units and widths the datapath computes with. */
enum balancing_units {
	NS_PER_SEC = 1000000000, /* bpf_ktime_get_ns() to seconds */
	BITS_PER_U32 = 32,       /* high half of a u64 (tgid, cookie folding) */
};

/* murmur3's 32-bit finalizer (fmix32), which spreads the sequential socket
 * cookies over the UDP backend slots. */
enum balancing_hash {
	HASH_FMIX32_SHIFT_1 = 16,
	HASH_FMIX32_SHIFT_2 = 13,
	HASH_FMIX32_MUL_1 = 0x85ebca6b,
	HASH_FMIX32_MUL_2 = 0xc2b2ae35,
};

/* service_value.flags */
enum service_flags {
	SERVICE_FLAG_LOCAL_ONLY = 1, /* use only slots 0..local_count-1 */
};

/* backend_value.flags */
enum backend_flags {
	BACKEND_FLAG_LOCAL = 1, /* the backend runs on this node */
};

/* balancing_event.flags */
enum event_flags {
	EVENT_FLAG_SUCCESS = 1,
	EVENT_FLAG_REDIRECT_HIT_LIMIT = 2, /* LocalRedirect QoS limit reached,
					      the lookup fell through */
	EVENT_FLAG_AFFINITY_HIT = 4,       /* backend taken from affinity */
	EVENT_FLAG_LOOP_SKIPPED = 8,       /* LocalRedirect skipped: the client
					      is one of the policy's backends */
};

/* map_configure.bpf_log_level: a line is printed when its level is at most
 * the configured one. */
enum bpf_log_level {
	BPF_LOG_OFF = 0,
	BPF_LOG_ERROR = 1,
	BPF_LOG_INFO = 2,
	BPF_LOG_VERBOSE = 3,
};

/* Default map sizes, for 10,000 Services / 100,000 endpoints with room to
 * spare (spec/unit/map_sizes_spec.lua: at least twice what the benchmark
 * cluster of scripts/bench/reconcile needs — 22,000 frontends, 220,000 backend
 * slots, since every NodePort, ingress and external IP repeats its Service's
 * backends). The agent overrides them from its configuration before the maps
 * are created. */
enum balancing_map_defaults {
	DEFAULT_MAX_SERVICES = 65536,    /* frontends: svc ports x kinds */
	DEFAULT_MAX_BACKENDS = 524288,   /* backend slots over all frontends */
	DEFAULT_MAX_AFFINITY = 65536,    /* LRU */
	DEFAULT_MAX_NAT_RECORDS = 262144, /* LRU */
	DEFAULT_MAX_TCP_NAT_RECORDS = 262144, /* slots: a power of two */
	DEFAULT_MAX_NODE_IPS = 16384,
	DEFAULT_MAX_NODE_PROXY_IPS = 4096,
	DEFAULT_MAX_REDIRECT_QOS = 4096,
	DEFAULT_MAX_REDIRECT_LOOP = 16384,
	DEFAULT_MAX_TRANSLATION_COUNTERS = 32768, /* LRU: (owner, result) pairs */
	DEFAULT_EVENT_RING_BYTES = 4194304,
	/* slots a datapath lookup may scan: bounds every loop for the verifier */
	MAX_BACKENDS_PER_FRONTEND = 65535,
};

/* map_service: one entry per frontend. A NodePort entry has address 0 and
 * matches any destination found in map_node_ip. */
struct service_key {
	__u32 address;  /* IPv4, network order; 0 = NodePort on any node IP */
	__u16 port;     /* network order */
	__u8 protocol;  /* enum balancing_protocol */
	__u8 nat_type;  /* enum nat_type */
};

struct service_value {
	__u32 service_id;       /* Service ID, or the policy's serviceId */
	__u16 total_count;      /* backend slots 0..total_count-1 */
	__u16 local_count;      /* the first local_count slots are local */
	__u32 affinity_seconds; /* 0 = no session affinity */
	__u8 nat_mode;          /* enum nat_mode */
	__u8 flags;             /* enum service_flags */
	__u16 pad;
};

/* map_backend: the dense slots of one frontend, local backends first. */
struct backend_key {
	struct service_key frontend;
	__u32 slot;
};

struct backend_value {
	__u32 address; /* IPv4, network order */
	__u16 port;    /* network order */
	__u8 flags;    /* enum backend_flags */
	__u8 pad;
};

/* map_affinity (LRU): the backend one client network namespace got for one
 * frontend. Used only while the slot still holds that same backend. */
struct affinity_key {
	__u64 netns_cookie;
	struct service_key frontend;
};

struct affinity_value {
	__u64 expires_ns; /* bpf_ktime_get_ns() clock */
	__u32 address;    /* the backend, network order */
	__u16 port;
	__u16 slot;
};

/* map_nat_record (LRU): reverse translation for recvmsg4/getpeername4 of
 * UDP sockets (and TCP records of a datapath before map_nat_record_tcp). */
struct nat_record_key {
	__u64 socket_cookie;
	__u32 address; /* backend, network order */
	__u16 port;
	__u16 pad;
};

struct nat_record_value {
	struct service_key frontend; /* to check the frontend still exists */
	__u32 dialed_address;        /* what the client asked for (NodePort:
					the node IP it dialed) */
	__u32 service_id;            /* to check it is still the same owner */
};

/* map_nat_record_tcp (array): the reverse record of a TCP connection, in
 * slot (socket cookie mod the slot count). A connect writes its slot, which
 * costs one store where an LRU insert costs a bucket lock, a free-list pop
 * and, once the map is full, an eviction (docs/benchmarks.md). A newer
 * socket whose cookie takes the same slot overwrites the record, as an LRU
 * would evict an idle one; getpeername4 restores only from a slot whose key
 * is its own socket's and peer's. The lock keeps a slot whole while another
 * CPU writes or reads it. */
struct nat_record_tcp {
	struct bpf_spin_lock lock;
	__u32 pad;
	struct nat_record_key key; /* socket cookie 0: an empty slot */
	struct nat_record_value value;
};

/* map_node_ip: every IPv4 address of every node. */
struct node_ip_key {
	__u32 address; /* network order */
};

struct node_ip_value {
	__u32 node_id;
};

/* map_node_proxy_ip: nodeId -> the node's proxy IP. */
struct node_proxy_ip_key {
	__u32 node_id;
};

struct node_proxy_ip_value {
	__u32 address; /* network order */
};

/* map_configure: an array of one entry. Its BTF key is a plain __u32 (the
 * kernel refuses a struct key for arrays); this struct has the same layout. */
struct configure_key {
	__u32 index; /* always CONFIGURE_INDEX */
};

enum configure_index {
	CONFIGURE_INDEX = 0,
};

/* map_configure.events: which translations the programs send to map_event
 * (--events). Zero, what a map not yet written holds, is all of them. */
enum balancing_event_filter {
	EVENTS_ALL = 0,
	EVENTS_FAILURES = 1,
	EVENTS_OFF = 2,
};

struct configure_value {
	__u32 abi_version;        /* BALANCING_ABI_VERSION of the writer */
	__u32 bpf_log_level;      /* enum bpf_log_level */
	__u32 redirect_qos_limit; /* LocalRedirect per frontend per second, 0 = none */
	__u32 node_id;            /* this node's ID, 0 when unknown */
	__u32 events;             /* enum balancing_event_filter */
};

/* map_redirect_qos: the LocalRedirect counter of one frontend in one second. */
struct redirect_qos_value {
	__u64 second; /* bpf_ktime_get_ns() / 1e9 */
	__u32 count;
	__u32 pad;
};

/* map_redirect_loop: (pod cgroup, LocalRedirect frontend) pairs for which
 * the redirect is skipped, because the client is one of the policy's own
 * backend pods (node-local DNS forwarding to the cluster DNS Service). The
 * identity is the pod's cgroup v2 ID (its directory's inode), not a netns
 * cookie: a hostNetwork pod shares the host's netns with every host process,
 * but has a cgroup of its own. The client matches when the pod cgroup is its
 * own cgroup or one of its ancestors, so a container started in the pod
 * later is covered without a new entry. */
struct redirect_loop_key {
	__u64 cgroup_id;
	struct service_key frontend;
};

/* How many cgroup levels below the root the datapath looks for a pod cgroup
 * of map_redirect_loop (kubelet's pod cgroups sit at level 2 or 3, a few more when
 * the node itself runs in a container). A deeper pod is not exempt. */
enum redirect_loop_limits {
	REDIRECT_LOOP_MAX_LEVEL = 16,
};

struct redirect_loop_value {
	__u32 service_id; /* the policy that asked for it */
};

/* map_translations (per-CPU LRU hash): how many translations of one
 * frontend owner ended how, counted whatever map_configure.events says, so
 * /metrics names the Service failing with EHOSTUNREACH without any event
 * (balancing_translations_total{type,owner,result}). One key per owner and
 * result that happened: an idle pair is what an LRU evicts first. */
struct translation_key {
	__u32 service_id; /* the owner: Service ID or the policy's serviceId */
	__u8 nat_type;    /* enum nat_type */
	__u8 reason;      /* enum balancing_reason: REASON_OK when translated */
	__u16 pad;
};

struct translation_value {
	__u64 count; /* of this CPU; readers sum over the possible CPUs */
};

/* map_stale_backend: a transient request of the agent for the iter/udp
 * program balancing_stale_udp, (frontend, backend) pairs that the last apply
 * took out of a UDP frontend. A connected UDP socket whose reverse record
 * says it reached that backend through that frontend is destroyed, so that
 * its client re-resolves (docs/datapath.md, "Stale sockets"). */
struct stale_backend_key {
	struct service_key frontend; /* as in the socket's nat_record_value */
	__u32 address;               /* the backend that left, network order */
	__u16 port;                  /* network order */
	__u16 pad;
};

struct stale_backend_value {
	__u32 unused; /* the key is the whole request */
};

/* How many pairs one run of the iterator takes; the agent splits a larger
 * request into runs of this size. */
enum stale_backend_limits {
	MAX_STALE_BACKENDS = 4096,
};

/* The programs wake the ring's reader only once this share of the ring
 * (1/EVENT_WAKEUP_FRACTION of its size) waits to be read; below it the
 * reader finds the events at its next tick (the agent polls every 100 ms).
 * A wakeup per event, which bpf_ringbuf_submit(e, 0) does whenever the
 * reader keeps up, costs an irq_work and a context switch per connect. */
enum { EVENT_WAKEUP_FRACTION = 8 };

/* map_event_drops (per-CPU array, one entry): the events map_event had no
 * room for (bpf_ringbuf_reserve failed: the reader is behind), so the agent
 * can count them on /metrics (balancing_events_dropped_total{stage="ring"}).
 * Per-CPU so that a flood on every CPU shares no cache line. */
struct event_drops_value {
	__u64 count; /* of this CPU; readers sum over the possible CPUs */
};

/* map_event (ring buffer): one record per translation, success or failure. */
struct balancing_event {
	__u64 timestamp_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 netns_cookie;
	__u64 cgroup_id;
	__u32 pid;          /* thread group id of the client */
	__u32 service_id;
	__u32 original_address[4]; /* [0] holds IPv4, network order */
	__u32 nat_address[4];      /* translated destination, 0 on failure */
	__u16 original_port;       /* network order */
	__u16 nat_port;            /* network order */
	__u8 protocol;             /* enum balancing_protocol */
	__u8 nat_type;             /* enum nat_type */
	__u8 nat_mode;             /* enum nat_mode */
	__u8 reason;               /* enum balancing_reason */
	__u8 is_ipv4;
	__u8 hook;                 /* enum balancing_hook */
	__u8 flags;                /* enum event_flags */
	__u8 pad;
};

#endif /* BALANCING_H */
