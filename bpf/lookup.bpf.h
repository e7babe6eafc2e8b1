/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which frontend one destination address:port:protocol is. Priority:
 * LocalRedirect, then Balancing, then Service; then NodePort, when the
 * destination is one of the nodes' IPs (map_node_ip) and a Service entry
 * with the wildcard address exists for the port. A LocalRedirect entry is
 * passed over when the client is its own backend (loop), when it has no
 * backend on this node, or when it is over its QoS limit; the event of
 * whatever serves instead carries the flag that says why.
 */
#ifndef BALANCING_LOOKUP_BPF_H
#define BALANCING_LOOKUP_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <asm-generic/errno.h>
#include "balancing.h"
#include "maps.bpf.h"
#include "log.bpf.h"
#include "xlate.bpf.h"
#include "backend.bpf.h"
#include "redirect.bpf.h"

/* One exact lookup in map_service; a hit becomes x's frontend. */
static __always_inline bool lb4_lookup_service(struct sock4_xlate *x, __u32 address,
					       __u8 nat_type)
{
	struct service_key key = {
		.address = address,
		.port = x->dialed_port,
		.protocol = x->protocol,
		.nat_type = nat_type,
	};
	struct service_value *svc;

	svc = bpf_map_lookup_elem(&map_service, &key);
	if (!svc)
		return false;
	x->frontend = key;
	x->service = *svc;
	x->count = lb4_backend_count(svc);
	return true;
}

static __always_inline bool lb4_lookup_local_redirect(struct sock4_xlate *x)
{
	if (!lb4_lookup_service(x, x->dialed_address, NAT_TYPE_LOCAL_REDIRECT))
		return false;
	if (redirect_is_loop(x)) {
		BALANCING_LOG(BPF_LOG_INFO, "redirect %pI4:%u skipped: client is its backend",
			      &x->dialed_address, bpf_ntohs(x->dialed_port));
		x->flags |= EVENT_FLAG_LOOP_SKIPPED;
		return false;
	}
	if (x->count == 0) {
		BALANCING_LOG(BPF_LOG_VERBOSE, "redirect %pI4:%u skipped: no local backend",
			      &x->dialed_address, bpf_ntohs(x->dialed_port));
		return false;
	}
	if (redirect_over_limit(&x->frontend)) {
		BALANCING_LOG(BPF_LOG_INFO, "redirect %pI4:%u skipped: over its QoS limit",
			      &x->dialed_address, bpf_ntohs(x->dialed_port));
		x->flags |= EVENT_FLAG_REDIRECT_HIT_LIMIT;
		return false;
	}
	return true;
}

static __always_inline bool lb4_lookup_node_port(struct sock4_xlate *x)
{
	struct node_ip_key node = { .address = x->dialed_address };

	if (!bpf_map_lookup_elem(&map_node_ip, &node))
		return false;
	return lb4_lookup_service(x, NODE_PORT_ANY_ADDRESS, NAT_TYPE_SERVICE);
}

/* 0 with x's frontend set, or -ENXIO: not a frontend (or a LocalRedirect
 * passed over with nothing behind it: x->flags says so). */
static __always_inline int lb4_lookup_frontend(struct sock4_xlate *x)
{
	if (lb4_lookup_local_redirect(x) ||
	    lb4_lookup_service(x, x->dialed_address, NAT_TYPE_BALANCING) ||
	    lb4_lookup_service(x, x->dialed_address, NAT_TYPE_SERVICE) ||
	    lb4_lookup_node_port(x)) {
		BALANCING_LOG(BPF_LOG_VERBOSE, "frontend %pI4:%u type %u", &x->dialed_address,
			      bpf_ntohs(x->dialed_port), x->frontend.nat_type);
		return 0;
	}
	return -ENXIO;
}

#endif /* BALANCING_LOOKUP_BPF_H */
