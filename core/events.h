/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The reader of the ring buffer map_event: one struct balancing_event per
 * translation, decoded into fields (addresses as text, ports in host order,
 * the monotonic timestamp also as wall-clock time).
 */
#ifndef BALANCING_EVENTS_H
#define BALANCING_EVENTS_H

#include <stdbool.h>
#include <netinet/in.h>
#include <linux/types.h>

#include "balancing.h"
#include "errmsg.h"

enum { EVENTS_DEFAULT_MAX = 4096 };

struct events_reader;

struct event_record {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC, as bpf_ktime_get_ns() */
	double time;	    /* the same instant, Unix time in seconds */
	__u64 netns_cookie;
	__u64 cgroup_id;
	__u32 pid;
	__u32 service_id;
	__u8 protocol;
	__u8 nat_type;
	__u8 nat_mode;
	__u8 reason;
	__u8 hook;
	__u8 flags;
	bool is_ipv4;
	bool success;
	bool redirect_hit_limit;
	char original_address[INET6_ADDRSTRLEN];
	__u16 original_port; /* host order */
	char nat_address[INET6_ADDRSTRLEN];
	__u16 nat_port; /* host order */
};

/* Takes ownership of map_fd (a BPF_MAP_TYPE_RINGBUF), closed on failure. */
int events_open(struct events_reader **out, int map_fd, struct errmsg *e);

/* The ring of a pinned map set: <bpffs>/map_event. */
int events_open_pinned(struct events_reader **out, const char *bpffs, struct errmsg *e);

/* Takes what waits in the ring, at most max events (0: EVENTS_DEFAULT_MAX);
 * the rest stay for the next poll. When nothing waits, waits up to
 * timeout_ms (0: do not wait, -1: until something comes) and takes what
 * comes: the programs wake the reader per batch (EVENT_WAKEUP_FRACTION), so
 * the wait looks at the ring every few milliseconds too. Returns how many
 * were taken. */
int events_poll(struct events_reader *r, int timeout_ms, __u32 max, struct errmsg *e);

/* Takes up to max events (0: EVENTS_DEFAULT_MAX) without decoding or
 * keeping them — what the agent sheds when it cannot keep up. Returns how
 * many; events_get has none after it. */
int events_discard(struct events_reader *r, __u32 max, struct errmsg *e);

/* Bytes written to the ring that no poll has taken yet (record headers
 * included), and the ring's size: how far behind the reader is. */
void events_backlog(const struct events_reader *r, __u64 *pending, __u64 *size);

/* The i-th event of the last poll, decoded. */
int events_get(const struct events_reader *r, __u32 i, struct event_record *out);

/* Ready for reading when a batch of events waits (the programs wake it per
 * batch, not per event): for the agent's loop, which polls on a tick too. */
int events_fd(const struct events_reader *r);

void events_close(struct events_reader *r);

/* realtime_offset_ns: CLOCK_REALTIME minus CLOCK_MONOTONIC. */
void events_decode(const struct balancing_event *raw, __s64 realtime_offset_ns,
		   struct event_record *out);

#endif /* BALANCING_EVENTS_H */
