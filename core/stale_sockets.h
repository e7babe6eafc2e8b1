/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Stale UDP sockets (docs/datapath.md, "Stale sockets"): after an apply
 * took backends out of UDP frontends, the connected UDP sockets that we
 * translated to one of them are destroyed by the iter/udp program
 * balancing_stale_udp (bpf/stale_sockets.bpf.h), so their clients get
 * ECONNABORTED and open a socket that the frontend translates again.
 */
#ifndef BALANCING_STALE_SOCKETS_H
#define BALANCING_STALE_SOCKETS_H

#include <stddef.h>
#include <linux/types.h>

#include "balancing.h"
#include "errmsg.h"

struct datapath;

/* Writes the pairs into map_stale_backend (in runs of MAX_STALE_BACKENDS),
 * runs the iterator over the UDP sockets of the caller's network namespace
 * and, with cgroup given, of every namespace of a process in that cgroup
 * subtree (pods have their own), and clears the request again, failure
 * included. *destroyed: how many sockets it destroyed. Call it after the
 * new slots are in the kernel, so that a client reconnecting at once finds
 * the new backends. */
int stale_sockets_destroy(struct datapath *dp, const struct stale_backend_key *pairs, size_t count,
			  const char *cgroup, __u64 *destroyed, struct errmsg *e);

#endif /* BALANCING_STALE_SOCKETS_H */
