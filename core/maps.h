/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where entries reach the kernel: one handle per map (its own fd, so it
 * outlives the loader that produced it), typed single and batch writes, and
 * dumps. Every failure names the map and, for a per-key failure, the key
 * decoded as text when the map is one of bpf/balancing.h's. Two callers
 * write: the applier (core/apply.c) every entry a reconcile computes, and
 * maps_configure the settings of map_configure; the Lua map handles only
 * read (lua_map.c).
 */
#ifndef BALANCING_MAPS_H
#define BALANCING_MAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

#include "errmsg.h"

enum { MAPS_NAME_LEN = 64, MAPS_KEY_TEXT_LEN = 160 };

struct map_handle {
	int fd;
	char name[MAPS_NAME_LEN];
	__u32 id;
	__u32 type; /* enum bpf_map_type */
	__u32 key_size;
	__u32 value_size; /* per CPU for per-CPU maps, as the kernel says */
	__u32 max_entries;
	__u32 map_flags;
};

/* Every entry of a map, keys and values packed back to back. */
struct map_dump {
	unsigned char *keys;
	unsigned char *values;
	__u32 count;
	__u32 capacity;
	size_t key_size;
	size_t value_bytes;
};

/* Fills h from the kernel's description of fd and takes ownership of fd
 * (closed on failure too). name is the map's full name: the kernel keeps
 * only 15 characters of it. */
int maps_handle_from_fd(struct map_handle *h, int fd, const char *name, struct errmsg *e);

/* Opens the pinned object dir/name as a map handle. -ENOTSUP when the
 * object there is not a map (a pinned link, say). */
int maps_open_pinned(struct map_handle *h, const char *dir, const char *name, struct errmsg *e);

void maps_handle_close(struct map_handle *h);

/* "hash", "lru_hash", "array", "ringbuf", ... */
const char *maps_type_name(const struct map_handle *h);

/* Bytes of one value as user space reads and writes it: value_size, or
 * value_size rounded to 8 times the possible CPUs for per-CPU maps. */
size_t maps_value_bytes(const struct map_handle *h);

/* The key as text: "127.10.0.1:80/TCP service" for map_service, hex for
 * maps this header does not describe. */
void maps_describe_key(const struct map_handle *h, const void *key, char *buf, size_t len);

/* flags: BPF_ANY, BPF_NOEXIST, BPF_EXIST. */
int maps_update(const struct map_handle *h, const void *key, const void *value, __u64 flags,
		struct errmsg *e);

/* -ENOENT, with a message, when the key is absent. */
int maps_lookup(const struct map_handle *h, const void *key, void *value, struct errmsg *e);

/* -ENOENT, with a message, when the key is absent. */
int maps_delete(const struct map_handle *h, const void *key, struct errmsg *e);

/* Writes count entries with BPF_MAP_UPDATE_BATCH, or one by one where the
 * kernel refuses batches for the map. *done: entries written, also on
 * failure (the failing entry is keys[*done], named in the message). */
int maps_update_batch(const struct map_handle *h, const void *keys, const void *values, __u32 count,
		      __u64 flags, __u32 *done, struct errmsg *e);

/* Deletes count keys; absent keys are skipped, not an error. *deleted:
 * entries that existed and were deleted. */
int maps_delete_batch(const struct map_handle *h, const void *keys, __u32 count, __u32 *deleted,
		      struct errmsg *e);

/* Reads every entry into d (BPF_MAP_LOOKUP_BATCH, else key by key). */
int maps_dump(const struct map_handle *h, struct map_dump *d, struct errmsg *e);
void maps_dump_free(struct map_dump *d);

/* The names of map_configure's settings, indexed by value, NULL after the
 * last: enum bpf_log_level ("off" "error" "info" "verbose") and enum
 * balancing_event_filter ("all" "failures" "off"). */
extern const char *const maps_log_level_names[];
extern const char *const maps_event_filter_names[];

/* A change of map_configure's settings (struct configure_value); a negative
 * field keeps the value the map holds. */
struct maps_configure {
	long long bpf_log_level;      /* enum bpf_log_level */
	long long redirect_qos_limit; /* per frontend per second, 0 = none */
	long long events;	      /* enum balancing_event_filter */
};

/* Reads map_configure's entry, changes the fields given, writes it back:
 * abi_version and node_id stay as they were. -EINVAL, nothing written, for a
 * value out of range, no field given, or h not a map_configure of
 * bpf/balancing.h's layout; -EPROTO when its abi_version is not
 * BALANCING_ABI_VERSION (maps of another agent version, whose fields this
 * build cannot vouch for). */
int maps_configure(const struct map_handle *h, const struct maps_configure *c, struct errmsg *e);

#endif /* BALANCING_MAPS_H */
