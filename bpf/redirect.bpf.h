/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The two guards of a LocalRedirect entry, both of which make the lookup
 * fall through to Balancing/Service:
 *  - loop avoidance: the client is one of the policy's own backend pods
 *    (node-local DNS forwarding to the cluster DNS Service must reach the
 *    Service, not itself), listed in map_redirect_loop by pod cgroup;
 *  - QoS: at most map_configure.redirect_qos_limit redirections per frontend
 *    per second (0 = no limit).
 */
#ifndef BALANCING_REDIRECT_BPF_H
#define BALANCING_REDIRECT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "balancing.h"
#include "maps.bpf.h"
#include "config.bpf.h"
#include "xlate.bpf.h"

/* Whether the calling process's cgroup, or one of its ancestors, is a pod
 * cgroup listed for this frontend. Level 0 (the root) is never a pod's; past
 * the process's own level the helper gives 0, which ends the walk. Only a
 * LocalRedirect hit pays for it: a lookup per level of the client's cgroup. */
static __always_inline bool redirect_is_loop(const struct sock4_xlate *x)
{
	struct redirect_loop_key key = { .frontend = x->frontend };

	for (int level = 1; level <= REDIRECT_LOOP_MAX_LEVEL; level++) {
		key.cgroup_id = bpf_get_current_ancestor_cgroup_id(level);
		if (key.cgroup_id == 0)
			return false;
		if (bpf_map_lookup_elem(&map_redirect_loop, &key))
			return true;
	}
	return false;
}

/* Counts one redirection of this frontend in the current second, unless the
 * limit is already reached: true when over the limit. Only granted
 * redirections count. The reset at a new second races with other CPUs; the
 * worst case is a few redirections more than the limit at the boundary. */
static __always_inline bool redirect_over_limit(const struct service_key *frontend)
{
	__u32 limit = config_redirect_qos_limit();
	struct redirect_qos_value *qos;
	__u64 second;

	if (limit == 0)
		return false;
	second = bpf_ktime_get_ns() / NS_PER_SEC;
	qos = bpf_map_lookup_elem(&map_redirect_qos, frontend);
	if (!qos) {
		struct redirect_qos_value first = { .second = second, .count = 1 };

		bpf_map_update_elem(&map_redirect_qos, frontend, &first, BPF_NOEXIST);
		return false;
	}
	if (qos->second != second) {
		qos->second = second;
		qos->count = 0;
	}
	if (qos->count >= limit)
		return true;
	__sync_fetch_and_add(&qos->count, 1);
	return false;
}

#endif /* BALANCING_REDIRECT_BPF_H */
