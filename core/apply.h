/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The apply step (ARCHITECTURE.md "Data flow", step 4): an owner's desired
 * entries are diffed against the shadow of what was written for that owner,
 * and only the difference reaches the kernel, in the write order that never
 * leaves a frontend resolving to nothing:
 *   0. upsert the plain entries that are new or changed (a LocalRedirect's
 *      loop-avoidance pairs exist before its frontend redirects anything);
 *   1. upsert the backend slots that are new or changed;
 *   2. upsert the frontends with their new counts;
 *   3. delete the frontends (and plain entries) that are gone;
 *   4. delete the slots beyond the new counts and of the gone frontends.
 * Slots are stable: a backend keeps its slot while it stays, a leaving one's
 * slot is taken by the last one of its group (local group, then the rest).
 *
 * The shadow records only what the kernel accepted: a failed write leaves
 * the entry as the kernel has it, so the next apply of the owner retries.
 * Keys and values are opaque bytes of the maps' sizes (IPv6 maps reuse all
 * of this); only struct service_value's counts are read.
 */
#ifndef BALANCING_APPLY_H
#define BALANCING_APPLY_H

#include <stdbool.h>
#include <linux/types.h>

#include "errmsg.h"
#include "maps.h"

/* The maps apply writes. SERVICE and BACKEND hold frontends and their
 * slots; the others are plain key -> value tables (the node owner's node
 * IPs; a LocalRedirect policy's loop-avoidance pairs). */
enum apply_map {
	APPLY_MAP_SERVICE,
	APPLY_MAP_BACKEND,
	APPLY_MAP_NODE_IP,
	APPLY_MAP_NODE_PROXY_IP,
	APPLY_MAP_REDIRECT_LOOP,
	APPLY_MAP_COUNT,
};

struct applier;

/* One frontend: key and value of map_service, and its backends' values of
 * map_backend in the caller's order (local ones first: value.local_count
 * of them). The pointers are only read during the call. */
struct apply_frontend {
	const void *key;
	const void *value;
	const void *const *backends;
	__u32 backend_count;
};

struct apply_entry {
	const void *key;
	const void *value;
};

/* Everything one owner wants; tables[] is used for the plain maps
 * (APPLY_MAP_NODE_IP, APPLY_MAP_NODE_PROXY_IP, APPLY_MAP_REDIRECT_LOOP)
 * only. */
struct apply_desired {
	const struct apply_frontend *frontends;
	__u32 frontend_count;
	const struct apply_entry *tables[APPLY_MAP_COUNT];
	__u32 table_count[APPLY_MAP_COUNT];
};

/* What one call wrote: entries updated and deleted per map. */
struct apply_stats {
	__u32 written[APPLY_MAP_COUNT];
	__u32 deleted[APPLY_MAP_COUNT];
};

/* The shadow of one frontend, as the kernel has it: value is NULL when
 * the map_service entry is absent; present[s] says whether slot s is in
 * map_backend, with the bytes at slots + s * backend value size. */
struct apply_frontend_view {
	const void *key;
	const void *value;
	__u32 slot_count;
	const unsigned char *slots;
	const bool *present;
};

struct apply_visitor {
	void (*frontend)(void *ctx, const struct apply_frontend_view *f);
	void (*entry)(void *ctx, enum apply_map map, const void *key, const void *value);
};

/* Opens the pinned maps of pin_dir that apply writes; checks that their
 * layouts fit together (a backend key is a service key and a slot). */
int apply_open(struct applier **out, const char *pin_dir, struct errmsg *e);
void apply_close(struct applier *a);

const struct map_handle *apply_map_handle(const struct applier *a, enum apply_map map);
const char *apply_map_name(enum apply_map map);

/* Writes the difference between d and the owner's shadow. On failure the
 * message names the owner, the map and the key; everything that did not
 * depend on the failed write is still written, stats counts all of it.
 * -EBUSY when another owner holds one of d's keys: nothing is written. */
int apply_owner(struct applier *a, const char *owner, const struct apply_desired *d,
		struct apply_stats *stats, struct errmsg *e);

/* Deletes everything the owner wrote and forgets it once nothing is left. */
int apply_forget(struct applier *a, const char *owner, struct apply_stats *stats, struct errmsg *e);

/* Restart (ARCHITECTURE.md "Restart and upgrade"): reads the maps into a
 * pool of entries no owner has claimed; an owner whose apply wants one of
 * their keys takes the entry over as the kernel has it (its slots stay,
 * nothing is rewritten that is already right). counts[m]: entries read
 * into the pool per map. Entries an owner already holds are left to it. */
int apply_read_back(struct applier *a, __u32 counts[APPLY_MAP_COUNT], struct errmsg *e);

/* After the first complete sync of every source: deletes what is left in
 * the pool, in the write order (frontends, then their slots). */
int apply_sweep(struct applier *a, struct apply_stats *stats, struct errmsg *e);

/* Calls v for every frontend and entry in the owner's shadow (owner NULL:
 * the read-back pool); -ENOENT when the owner has none. */
int apply_walk(const struct applier *a, const char *owner, const struct apply_visitor *v,
	       void *ctx);

#endif /* BALANCING_APPLY_H */
