/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Which backends one apply took out of an owner's UDP frontends: the
 * (frontend, backend address:port) pairs in the kernel before the apply and
 * no longer after it — a backend that left, a frontend that went with its
 * slots, a backend whose slot another one took. A backend that only moved
 * to another slot, or changed its local flag, has not left. They are what
 * core/stale_sockets.c destroys the connected sockets of.
 *
 * Pairs, not backends: a socket's reverse record names the frontend it
 * dialed, so a backend that leaves one frontend and stays in another (a
 * Service's ClusterIP and its NodePort, two Services on one pod) has its
 * sockets of the other frontend left alone.
 */
#ifndef BALANCING_DEPARTURES_H
#define BALANCING_DEPARTURES_H

#include <stddef.h>

#include "apply.h"
#include "balancing.h"

/* Scratch kept between applies; zero-initialised, freed by departures_free. */
struct departures {
	struct stale_backend_key *pairs; /* after departures_after: the ones that left */
	size_t count, cap;
	struct stale_backend_key *now; /* the owner's pairs after the apply */
	size_t now_count, now_cap;
};

/* Notes the owner's UDP pairs as the kernel has them now (before apply). */
int departures_before(struct departures *d, const struct applier *a, const char *owner);

/* Keeps in d->pairs those of departures_before that the owner's shadow no
 * longer has (after apply_owner or apply_forget, failure included: the
 * shadow holds what the kernel took). */
int departures_after(struct departures *d, const struct applier *a, const char *owner);

void departures_free(struct departures *d);

#endif /* BALANCING_DEPARTURES_H */
