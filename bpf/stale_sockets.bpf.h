/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Stale sockets: a connected UDP socket keeps the backend address its
 * connect() was translated to, so once that backend has left the frontend
 * its client talks to a dead address for as long as it keeps the socket (a
 * resolver that connects once). The agent writes the (frontend, backend)
 * pairs that left into map_stale_backend and runs the iter/udp program
 * balancing_stale_udp, which destroys (bpf_sock_destroy: the next send or
 * receive fails with ECONNABORTED) exactly the sockets that
 *   - are connected to such a backend (skc_daddr:skc_dport), and
 *   - were translated by us to it through that frontend: their reverse
 *     record (map_nat_record, keyed by socket cookie and backend) names it.
 * Any other UDP socket of the namespace, ours or not, is left alone.
 */
#ifndef BALANCING_STALE_SOCKETS_BPF_H
#define BALANCING_STALE_SOCKETS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "balancing.h"
#include "maps.bpf.h"

/* (AF_INET of <sys/socket.h>: vmlinux.h has no preprocessor constants) */
enum { STALE_AF_INET = 2 };

/* Not pinned: a request lives for one run of the iterator by the process
 * that loaded this object, and a restart has nothing to take over. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_STALE_BACKENDS);
	__type(key, struct stale_backend_key);
	__type(value, struct stale_backend_value);
} map_stale_backend SEC(".maps");

/* A kfunc since 6.5; __weak so that an older kernel still loads the object
 * (the iterator then destroys nothing, core/stale_sockets.c says so). */
extern int bpf_sock_destroy(struct sock_common *sk) __ksym __weak;

/* True when sk is a connected IPv4 UDP socket that we translated to a
 * backend which has since left the frontend it was reached through. */
static __always_inline bool stale_socket_matches(struct sock *sk, __u64 cookie)
{
	struct nat_record_key record_key = {.socket_cookie = cookie};
	struct stale_backend_key stale = {};
	struct nat_record_value *rec;

	if (sk->__sk_common.skc_family != STALE_AF_INET || !sk->__sk_common.skc_dport)
		return false;
	record_key.address = sk->__sk_common.skc_daddr;
	record_key.port = sk->__sk_common.skc_dport;
	rec = bpf_map_lookup_elem(&map_nat_record, &record_key);
	if (!rec)
		return false; /* not translated by us (or the LRU forgot it) */
	stale.frontend = rec->frontend;
	stale.address = record_key.address;
	stale.port = record_key.port;
	return bpf_map_lookup_elem(&map_stale_backend, &stale) != NULL;
}

#endif /* BALANCING_STALE_SOCKETS_BPF_H */
