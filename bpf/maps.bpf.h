/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The maps of the datapath, pinned by name under the pin directory
 * (LIBBPF_PIN_BY_NAME + the loader's pin_root_path). Sizes here are the
 * defaults of bpf/balancing.h; the loader sets the configured ones before
 * load. Key and value types come from balancing.h, so BTF names every field
 * and `bpftool map dump` shows them.
 */
#ifndef BALANCING_MAPS_BPF_H
#define BALANCING_MAPS_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DEFAULT_MAX_SERVICES);
	__type(key, struct service_key);
	__type(value, struct service_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_service SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DEFAULT_MAX_BACKENDS);
	__type(key, struct backend_key);
	__type(value, struct backend_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_backend SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_MAX_AFFINITY);
	__type(key, struct affinity_key);
	__type(value, struct affinity_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_MAX_NAT_RECORDS);
	__type(key, struct nat_record_key);
	__type(value, struct nat_record_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_nat_record SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DEFAULT_MAX_TCP_NAT_RECORDS);
	__type(key, __u32);
	__type(value, struct nat_record_tcp);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_nat_record_tcp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DEFAULT_MAX_NODE_IPS);
	__type(key, struct node_ip_key);
	__type(value, struct node_ip_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_node_ip SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DEFAULT_MAX_NODE_PROXY_IPS);
	__type(key, struct node_proxy_ip_key);
	__type(value, struct node_proxy_ip_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_node_proxy_ip SEC(".maps");

/* An array's BTF key must be a plain 4-byte integer (the kernel refuses a
 * struct); struct configure_key has the same layout. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct configure_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_configure SEC(".maps");

/* An LRU: a counter per LocalRedirect frontend that has redirected lately.
 * A plain hash that filled up would leave every later frontend without a
 * counter, and so without a limit; here the idlest counter makes room. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, DEFAULT_MAX_REDIRECT_QOS);
	__type(key, struct service_key);
	__type(value, struct redirect_qos_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_redirect_qos SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DEFAULT_MAX_REDIRECT_LOOP);
	__type(key, struct redirect_loop_key);
	__type(value, struct redirect_loop_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_redirect_loop SEC(".maps");

/* Per-CPU, so counting touches only this CPU's copy (no cache line shared
 * between CPUs); an LRU, so owners that come and go never fill it: a
 * counter evicted while idle starts again from 0, which Prometheus reads as
 * a counter reset. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, DEFAULT_MAX_TRANSLATION_COUNTERS);
	__type(key, struct translation_key);
	__type(value, struct translation_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_translations SEC(".maps");

/* An array's BTF key must be a plain 4-byte integer, as map_configure's. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event_drops_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_event_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DEFAULT_EVENT_RING_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} map_event SEC(".maps");

#endif /* BALANCING_MAPS_BPF_H */
