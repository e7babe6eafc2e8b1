/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Session affinity (Service sessionAffinity ClientIP): one client network
 * namespace keeps the backend it got for a frontend while the record lives.
 * Like kube-proxy's "recent" match, every use restarts the timeout. A record
 * is trusted only while its slot is still usable and still holds that same
 * backend, so a removed or moved backend is never used from a live record.
 */
#ifndef BALANCING_AFFINITY_BPF_H
#define BALANCING_AFFINITY_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "balancing.h"
#include "maps.bpf.h"
#include "log.bpf.h"
#include "xlate.bpf.h"
#include "backend.bpf.h"

static __always_inline __u64 affinity_timeout_ns(const struct sock4_xlate *x)
{
	return (__u64)x->service.affinity_seconds * NS_PER_SEC;
}

static __always_inline bool affinity_same_backend(const struct affinity_value *rec,
						  const struct backend_value *be)
{
	return be && be->address == rec->address && be->port == rec->port;
}

/* Takes the backend from a live, still valid record: true on a hit. */
static __always_inline bool affinity_lookup(struct sock4_xlate *x)
{
	struct affinity_key key = {
		.netns_cookie = x->netns_cookie,
		.frontend = x->frontend,
	};
	struct affinity_value *rec;
	struct backend_value *be;
	__u64 now;

	rec = bpf_map_lookup_elem(&map_affinity, &key);
	if (!rec)
		return false;
	now = bpf_ktime_get_ns();
	if (now >= rec->expires_ns) {
		BALANCING_LOG(BPF_LOG_VERBOSE, "affinity expired for %pI4:%u",
			      &x->dialed_address, bpf_ntohs(x->dialed_port));
		return false;
	}
	if (rec->slot >= x->count) {
		BALANCING_LOG(BPF_LOG_VERBOSE, "affinity slot %u beyond %u usable",
			      rec->slot, x->count);
		return false;
	}
	be = lb4_lookup_backend(&x->frontend, rec->slot);
	if (!affinity_same_backend(rec, be)) {
		BALANCING_LOG(BPF_LOG_VERBOSE, "affinity backend %pI4 left slot %u",
			      &rec->address, rec->slot);
		return false;
	}
	x->backend = *be;
	rec->expires_ns = now + affinity_timeout_ns(x);
	x->flags |= EVENT_FLAG_AFFINITY_HIT;
	return true;
}

/* Remembers the backend just picked; a failed write only costs affinity. */
static __always_inline void affinity_store(const struct sock4_xlate *x, __u32 slot)
{
	struct affinity_key key = {
		.netns_cookie = x->netns_cookie,
		.frontend = x->frontend,
	};
	struct affinity_value rec = {
		.expires_ns = bpf_ktime_get_ns() + affinity_timeout_ns(x),
		.address = x->backend.address,
		.port = x->backend.port,
		.slot = (__u16)slot,
	};

	if (bpf_map_update_elem(&map_affinity, &key, &rec, BPF_ANY))
		BALANCING_LOG(BPF_LOG_ERROR, "affinity record not stored for %pI4:%u",
			      &x->dialed_address, bpf_ntohs(x->dialed_port));
}

#endif /* BALANCING_AFFINITY_BPF_H */
