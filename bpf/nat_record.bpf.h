/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reverse translation. A forward translation records (socket cookie,
 * backend address:port) -> (frontend, dialed address, owner ID) in the LRU
 * map_nat_record; recvmsg4 (the source of a received datagram) and
 * getpeername4 give the client back the address it dialed, after checking
 * that the frontend still exists for the same owner. A record whose
 * frontend is gone or changed owner is deleted and the address left alone.
 */
#ifndef BALANCING_NAT_RECORD_BPF_H
#define BALANCING_NAT_RECORD_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <asm-generic/errno.h>
#include "balancing.h"
#include "maps.bpf.h"
#include "log.bpf.h"
#include "xlate.bpf.h"

static __always_inline bool nat_record_same(const struct nat_record_value *a,
					    const struct nat_record_value *b)
{
	return a->frontend.address == b->frontend.address &&
	       a->frontend.port == b->frontend.port &&
	       a->frontend.protocol == b->frontend.protocol &&
	       a->frontend.nat_type == b->frontend.nat_type &&
	       a->dialed_address == b->dialed_address && a->service_id == b->service_id;
}

/* 0, or the map's negative errno. An unconnected UDP socket sends many
 * datagrams to the same backend: an unchanged record is not rewritten. A
 * connect() comes once per socket, so its record is new and the lookup would
 * only cost a cold hash-bucket walk (measured by scripts/bench/connect). */
static __always_inline int nat_record_store(const struct sock4_xlate *x)
{
	struct nat_record_key key = {
		.socket_cookie = x->socket_cookie,
		.address = x->backend.address,
		.port = x->backend.port,
	};
	struct nat_record_value value = {
		.frontend = x->frontend,
		.dialed_address = x->dialed_address,
		.service_id = x->service.service_id,
	};
	struct nat_record_value *old;

	if (x->hook == HOOK_SENDMSG4) {
		old = bpf_map_lookup_elem(&map_nat_record, &key);
		if (old && nat_record_same(old, &value))
			return 0;
	}
	return bpf_map_update_elem(&map_nat_record, &key, &value, BPF_ANY);
}

static __always_inline bool nat_record_frontend_alive(const struct nat_record_value *rec)
{
	struct service_value *svc = bpf_map_lookup_elem(&map_service, &rec->frontend);

	return svc && svc->service_id == rec->service_id;
}

/* 0 with ctx's address restored; -ENXIO: not ours; -ESTALE: the record's
 * frontend is gone (record deleted, address untouched). */
static __always_inline int nat_record_restore(struct bpf_sock_addr *ctx)
{
	struct nat_record_key key = {
		.socket_cookie = bpf_get_socket_cookie(ctx),
		.address = ctx->user_ip4,
		.port = (__u16)ctx->user_port,
	};
	struct nat_record_value *found;
	struct nat_record_value rec;

	found = bpf_map_lookup_elem(&map_nat_record, &key);
	if (!found)
		return -ENXIO;
	rec = *found;
	if (!nat_record_frontend_alive(&rec)) {
		BALANCING_LOG(BPF_LOG_VERBOSE, "stale reverse record for %pI4:%u deleted",
			      &key.address, bpf_ntohs(key.port));
		bpf_map_delete_elem(&map_nat_record, &key);
		return -ESTALE;
	}
	ctx->user_ip4 = rec.dialed_address;
	ctx->user_port = rec.frontend.port;
	BALANCING_LOG(BPF_LOG_VERBOSE, "reverse %pI4:%u -> %pI4:%u", &key.address,
		      bpf_ntohs(key.port), &rec.dialed_address, bpf_ntohs(rec.frontend.port));
	return 0;
}

#endif /* BALANCING_NAT_RECORD_BPF_H */
