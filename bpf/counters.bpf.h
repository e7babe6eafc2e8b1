/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The per-owner translation counters of map_translations: one per-CPU add
 * per translation, success or failure, whatever --events says (the agent
 * sums the CPUs when /metrics is scraped). count_translations is read-only
 * data set before load: the connect benchmark loads a copy without counting
 * to measure what counting costs; the verifier drops the dead branch, so
 * the agent's programs, which always count, pay nothing for the switch.
 */
#ifndef BALANCING_COUNTERS_BPF_H
#define BALANCING_COUNTERS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "balancing.h"
#include "maps.bpf.h"
#include "xlate.bpf.h"

const volatile __u32 count_translations = 1;

static __always_inline void counter_add(const struct sock4_xlate *x)
{
	struct translation_key key = {
		.service_id = x->service.service_id,
		.nat_type = x->frontend.nat_type,
		.reason = x->reason,
	};
	struct translation_value first = { .count = 1 };
	struct translation_value *counter;

	if (!count_translations)
		return;
	counter = bpf_map_lookup_elem(&map_translations, &key);
	if (counter) {
		/* this CPU's copy, so uncontended; atomic all the same, since
		 * a program preempted on this CPU may be counting too */
		__sync_fetch_and_add(&counter->count, 1);
		return;
	}
	/* another CPU may create the key first: then count on its entry */
	if (bpf_map_update_elem(&map_translations, &key, &first, BPF_NOEXIST) == 0)
		return;
	counter = bpf_map_lookup_elem(&map_translations, &key);
	if (counter)
		__sync_fetch_and_add(&counter->count, 1);
}

#endif /* BALANCING_COUNTERS_BPF_H */
