/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Loading, pinning and attaching the datapath: the libbpf skeleton opened,
 * sized, loaded with its maps pinned by name under the pin directory
 * (reusing pinned maps of the same layout and ABI), and its four cgroup
 * programs attached as pinned bpf links that a restart updates in place.
 */
#ifndef BALANCING_LOADER_H
#define BALANCING_LOADER_H

#include <stdbool.h>
#include <linux/types.h>

#include "errmsg.h"
#include "maps.h"

struct datapath;

struct loader_options {
	const char *bpffs; /* pin directory */
	__u32 max_services;
	__u32 max_backends;
	__u32 max_affinity;
	__u32 max_nat_records;
	__u32 max_tcp_nat_records; /* a power of two */
	__u32 max_node_ips;
	__u32 max_node_proxy_ips;
	__u32 max_redirect_qos;
	__u32 max_redirect_loop;
	__u32 max_translation_counters;
	__u32 event_ring_bytes;
	/* false only to measure what counting costs (scripts/bench/connect):
	 * the programs then leave map_translations alone */
	bool count_translations;
};

/* What map_configure should hold; a negative field keeps the current
 * value (or 0 in a new map). */
struct loader_config {
	long long bpf_log_level; /* enum bpf_log_level */
	long long redirect_qos_limit;
	long long node_id;
	long long events; /* enum balancing_event_filter */
};

enum loader_hook {
	LOADER_HOOK_CONNECT4,
	LOADER_HOOK_SENDMSG4,
	LOADER_HOOK_RECVMSG4,
	LOADER_HOOK_GETPEERNAME4,
	LOADER_HOOK_COUNT,
};

/* One pinned link as the kernel describes it. */
struct loader_link_info {
	bool present;
	__u32 id;
	__u32 prog_id;
	__u64 cgroup_id;
};

/* "connect4", ... as in the link pin names link_connect4, ... */
const char *loader_hook_name(enum loader_hook hook);

/* Defaults of bpf/balancing.h (enum balancing_map_defaults). */
void loader_options_init(struct loader_options *o, const char *bpffs);
void loader_config_init(struct loader_config *c);

/* Open, size, load and pin; then write map_configure from config. */
int loader_load(struct datapath **out, const struct loader_options *o,
		const struct loader_config *config, struct errmsg *e);

int loader_configure(struct datapath *dp, const struct loader_config *config, struct errmsg *e);

/* Attach the four programs to the cgroup v2 directory as pinned links, or
 * swap the programs behind already pinned links (bpf_link_update). */
int loader_attach(struct datapath *dp, const char *cgroup, struct errmsg *e);

/* Detach and unpin the links. */
int loader_detach(struct datapath *dp, struct errmsg *e);

/* Detach, unpin every map, remove the pin directory. */
int loader_unpin(struct datapath *dp, struct errmsg *e);

/* Free everything; pins stay. NULL is fine. */
void loader_close(struct datapath *dp);

/* A handle of its own (a dup'ed fd) on the map called name. */
int loader_map(struct datapath *dp, const char *name, struct map_handle *h, struct errmsg *e);

/* A dup'ed fd of map_event, for an events reader. */
int loader_event_fd(struct datapath *dp, struct errmsg *e);

/* The pinned links of the pin directory, present or not. */
int loader_links(struct datapath *dp, struct loader_link_info info[LOADER_HOOK_COUNT],
		 struct errmsg *e);

/* Map names in object order, and whether load reused the pinned one. */
int loader_map_count(const struct datapath *dp);
const char *loader_map_name(const struct datapath *dp, int i);
bool loader_map_reused(const struct datapath *dp, int i);

const char *loader_pin_dir(const struct datapath *dp);

struct bpf_program;

/* The iter/udp program that destroys stale UDP sockets, and the fd of its
 * request map map_stale_backend (core/stale_sockets.c runs them). */
struct bpf_program *loader_stale_udp_program(const struct datapath *dp);
int loader_stale_backend_fd(const struct datapath *dp);

#endif /* BALANCING_LOADER_H */
