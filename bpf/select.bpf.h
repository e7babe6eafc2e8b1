/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Choosing the backend of a matched frontend: affinity first (when the
 * frontend has it), else a slot. TCP takes a random slot per connection. UDP
 * takes the slot from the socket cookie, so every datagram of one socket
 * goes to one backend while the set is unchanged (DNS clients match replies
 * to the server they asked). Cookies are sequential, so they are hashed.
 */
#ifndef BALANCING_SELECT_BPF_H
#define BALANCING_SELECT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <asm-generic/errno.h>
#include "balancing.h"
#include "log.bpf.h"
#include "xlate.bpf.h"
#include "backend.bpf.h"
#include "affinity.bpf.h"

static __always_inline __u32 hash_cookie(__u64 cookie)
{
	__u32 h = (__u32)cookie ^ (__u32)(cookie >> BITS_PER_U32);

	h ^= h >> HASH_FMIX32_SHIFT_1;
	h *= HASH_FMIX32_MUL_1;
	h ^= h >> HASH_FMIX32_SHIFT_2;
	h *= HASH_FMIX32_MUL_2;
	h ^= h >> HASH_FMIX32_SHIFT_1;
	return h;
}

/* x->count is non-zero here. */
static __always_inline __u32 lb4_pick_slot(const struct sock4_xlate *x)
{
	if (x->protocol == BALANCING_PROTO_UDP)
		return hash_cookie(x->socket_cookie) % x->count;
	return bpf_get_prandom_u32() % x->count;
}

/* 0 with x->backend set, or -EHOSTUNREACH with x->reason set. */
static __always_inline int lb4_select_backend(struct sock4_xlate *x)
{
	bool affinity = x->service.affinity_seconds > 0;
	struct backend_value *be;
	__u32 slot;

	if (x->count == 0) {
		x->reason = lb4_no_backend_reason(&x->service);
		return -EHOSTUNREACH;
	}
	if (affinity && affinity_lookup(x))
		return 0;
	slot = lb4_pick_slot(x);
	be = lb4_lookup_backend(&x->frontend, slot);
	if (!be) {
		BALANCING_LOG(BPF_LOG_ERROR, "slot %u of %u missing for %pI4:%u", slot,
			      x->count, &x->dialed_address, bpf_ntohs(x->dialed_port));
		x->reason = REASON_BACKEND_MISSING;
		return -EHOSTUNREACH;
	}
	x->backend = *be;
	if (affinity)
		affinity_store(x, slot);
	return 0;
}

#endif /* BALANCING_SELECT_BPF_H */
