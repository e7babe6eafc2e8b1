/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A frontend's backends: the dense slots 0..n-1 of map_backend, local ones
 * first. Traffic policy Local (SERVICE_FLAG_LOCAL_ONLY) uses only the first
 * local_count slots.
 */
#ifndef BALANCING_BACKEND_BPF_H
#define BALANCING_BACKEND_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "balancing.h"
#include "maps.bpf.h"

/* How many slots this frontend may resolve to on this node. */
static __always_inline __u16 lb4_backend_count(const struct service_value *svc)
{
	if (svc->flags & SERVICE_FLAG_LOCAL_ONLY)
		return svc->local_count;
	return svc->total_count;
}

/* Why a frontend with no usable slot fails. */
static __always_inline __u8 lb4_no_backend_reason(const struct service_value *svc)
{
	if (svc->flags & SERVICE_FLAG_LOCAL_ONLY)
		return REASON_NO_LOCAL_BACKEND;
	return REASON_NO_BACKEND;
}

static __always_inline struct backend_value *
lb4_lookup_backend(const struct service_key *frontend, __u32 slot)
{
	struct backend_key key = {
		.frontend = *frontend,
		.slot = slot,
	};

	return bpf_map_lookup_elem(&map_backend, &key);
}

#endif /* BALANCING_BACKEND_BPF_H */
