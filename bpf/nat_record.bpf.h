/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Reverse translation. A forward translation records (socket cookie,
 * backend address:port) -> (frontend, dialed address, owner ID):
 *  - a TCP connect in map_nat_record_tcp, the slot its socket cookie picks
 *    (balancing.h says why an array and not the LRU);
 *  - a UDP send or connect in the LRU map_nat_record, which the stale
 *    socket iterator (stale_sockets.bpf.h) also reads.
 * recvmsg4 (the source of a received datagram) and getpeername4 give the
 * client back the address it dialed, after checking that the frontend still
 * exists for the same owner. A record whose frontend is gone or changed
 * owner is deleted and the address left alone.
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

/* map_nat_record_tcp's slot count, a power of two: set by the loader to
 * the map's size before load (read-only data, so the mask is a constant). */
const volatile __u32 nat_record_tcp_slots = DEFAULT_MAX_TCP_NAT_RECORDS;

static __always_inline struct nat_record_tcp *nat_record_tcp_slot(__u64 socket_cookie)
{
	__u32 index = (__u32)socket_cookie & (nat_record_tcp_slots - 1);

	return bpf_map_lookup_elem(&map_nat_record_tcp, &index);
}

static __always_inline bool nat_record_key_equal(const struct nat_record_key *a,
						 const struct nat_record_key *b)
{
	return a->socket_cookie == b->socket_cookie && a->address == b->address &&
	       a->port == b->port;
}

static __always_inline int nat_record_tcp_store(const struct nat_record_key *key,
						const struct nat_record_value *value)
{
	struct nat_record_tcp *slot = nat_record_tcp_slot(key->socket_cookie);

	if (!slot)
		return -ENOENT;
	bpf_spin_lock(&slot->lock);
	slot->key = *key;
	slot->value = *value;
	bpf_spin_unlock(&slot->lock);
	return 0;
}

/* 0 with *value set when key's socket holds the slot, else -ENXIO. */
static __always_inline int nat_record_tcp_find(const struct nat_record_key *key,
					       struct nat_record_value *value)
{
	struct nat_record_tcp *slot = nat_record_tcp_slot(key->socket_cookie);
	struct nat_record_key holder;

	if (!slot)
		return -ENXIO;
	bpf_spin_lock(&slot->lock);
	holder = slot->key;
	*value = slot->value;
	bpf_spin_unlock(&slot->lock);
	return nat_record_key_equal(&holder, key) ? 0 : -ENXIO;
}

/* Empties key's slot, unless a newer socket has taken it meanwhile. */
static __always_inline void nat_record_tcp_delete(const struct nat_record_key *key)
{
	struct nat_record_tcp *slot = nat_record_tcp_slot(key->socket_cookie);

	if (!slot)
		return;
	bpf_spin_lock(&slot->lock);
	if (nat_record_key_equal(&slot->key, key))
		slot->key.socket_cookie = 0;
	bpf_spin_unlock(&slot->lock);
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

	if (x->protocol == BALANCING_PROTO_TCP)
		return nat_record_tcp_store(&key, &value);
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

/* A TCP socket's record is in its slot, or (written by a datapath from
 * before map_nat_record_tcp, which an upgrade keeps) in map_nat_record. */
static __always_inline int nat_record_find(const struct nat_record_key *key, bool tcp,
					   struct nat_record_value *value, bool *in_slot)
{
	struct nat_record_value *found;

	*in_slot = tcp && nat_record_tcp_find(key, value) == 0;
	if (*in_slot)
		return 0;
	found = bpf_map_lookup_elem(&map_nat_record, key);
	if (!found)
		return -ENXIO;
	*value = *found;
	return 0;
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
	struct nat_record_value rec;
	bool in_slot;

	if (nat_record_find(&key, ctx->protocol == BALANCING_PROTO_TCP, &rec, &in_slot))
		return -ENXIO;
	if (!nat_record_frontend_alive(&rec)) {
		BALANCING_LOG(BPF_LOG_VERBOSE, "stale reverse record for %pI4:%u deleted",
			      &key.address, bpf_ntohs(key.port));
		if (in_slot)
			nat_record_tcp_delete(&key);
		else
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
