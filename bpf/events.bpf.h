/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One event per translation, success or failure, into the ring buffer
 * map_event — or only the failures, or none, as map_configure.events says
 * (the agent's --events): what is not wanted costs no ring space and no
 * reader's time. When the ring is full the event is dropped and counted in
 * map_event_drops: the datapath never waits for, nor fails because of, its
 * reader, and the agent still knows how much it missed. The reader is
 * woken per batch, not per event (event_wakeup).
 */
#ifndef BALANCING_EVENTS_BPF_H
#define BALANCING_EVENTS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "balancing.h"
#include "config.bpf.h"
#include "maps.bpf.h"
#include "xlate.bpf.h"

static __always_inline void event_count_drop(void)
{
	__u32 key = 0;
	struct event_drops_value *drops = bpf_map_lookup_elem(&map_event_drops, &key);

	/* this CPU's copy; atomic since a program preempted on this CPU may
	 * be counting too */
	if (drops)
		__sync_fetch_and_add(&drops->count, 1);
}

/* The ring's size in bytes: for a ring buffer, max_entries is its data size
 * (what bpf_ringbuf_query(BPF_RB_RING_SIZE) answers), read here from the
 * map itself with a plain load instead of a helper call. (Reading struct
 * bpf_map through a map pointer needs CAP_PERFMON, which the agent has for
 * bpf_printk.) */
static __always_inline __u64 event_ring_size(void)
{
	return ((struct bpf_map *)&map_event)->max_entries;
}

/* BPF_RB_FORCE_WAKEUP once the reader has a batch waiting, else
 * BPF_RB_NO_WAKEUP (balancing.h: EVENT_WAKEUP_FRACTION says why): one
 * bpf_ringbuf_query per event. */
static __always_inline __u64 event_wakeup(void)
{
	__u64 waiting = bpf_ringbuf_query(&map_event, BPF_RB_AVAIL_DATA);

	return waiting >= event_ring_size() / EVENT_WAKEUP_FRACTION ? BPF_RB_FORCE_WAKEUP
								      : BPF_RB_NO_WAKEUP;
}

static __always_inline void event_submit(const struct sock4_xlate *x)
{
	struct balancing_event *e;
	__u32 filter = config_events();

	if (filter == EVENTS_OFF || (filter == EVENTS_FAILURES && (x->flags & EVENT_FLAG_SUCCESS)))
		return;
	e = bpf_ringbuf_reserve(&map_event, sizeof(*e), 0);
	if (!e) {
		event_count_drop();
		return;
	}
	/* ring memory is not zeroed: clear padding and the unused IPv6 words */
	__builtin_memset(e, 0, sizeof(*e));
	e->timestamp_ns = bpf_ktime_get_ns();
	e->netns_cookie = x->netns_cookie;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->pid = (__u32)(bpf_get_current_pid_tgid() >> BITS_PER_U32);
	e->service_id = x->service.service_id;
	e->original_address[0] = x->dialed_address;
	e->original_port = x->dialed_port;
	if (x->flags & EVENT_FLAG_SUCCESS) {
		e->nat_address[0] = x->backend.address;
		e->nat_port = x->backend.port;
	}
	e->protocol = x->protocol;
	e->nat_type = x->frontend.nat_type;
	e->nat_mode = x->service.nat_mode;
	e->reason = x->reason;
	e->is_ipv4 = 1;
	e->hook = x->hook;
	e->flags = x->flags;
	bpf_ringbuf_submit(e, event_wakeup());
}

#endif /* BALANCING_EVENTS_BPF_H */
