// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The pairs that left an owner's UDP frontends in one apply (see
 * departures.h): the owner's shadow read before and after, sorted, and the
 * difference taken — O(n log n) in the owner's slots, which a Service of a
 * thousand endpoints applies often enough to matter. */
#include "departures.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct collect {
	struct stale_backend_key **pairs;
	size_t *count, *cap;
	size_t backend_bytes;
	int err;
};

static int pair_compare(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(struct stale_backend_key));
}

static int push_pair(struct collect *c, const struct stale_backend_key *pair)
{
	if (*c->count == *c->cap) {
		size_t cap = *c->cap ? *c->cap * 2 : 64;
		struct stale_backend_key *grown = realloc(*c->pairs, cap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		*c->pairs = grown;
		*c->cap = cap;
	}
	(*c->pairs)[(*c->count)++] = *pair;
	return 0;
}

/* Every backend address:port in the frontend's slots, when it is UDP. */
static void collect_frontend(void *ctx, const struct apply_frontend_view *f)
{
	struct collect *c = ctx;
	struct stale_backend_key pair = {0};
	struct backend_value backend;

	memcpy(&pair.frontend, f->key, sizeof(pair.frontend));
	if (pair.frontend.protocol != BALANCING_PROTO_UDP)
		return;
	for (__u32 s = 0; !c->err && s < f->slot_count; s++) {
		if (!f->present[s])
			continue;
		memcpy(&backend, f->slots + (size_t)s * c->backend_bytes, sizeof(backend));
		pair.address = backend.address;
		pair.port = backend.port;
		c->err = push_pair(c, &pair);
	}
}

/* The owner's pairs into (pairs, count), sorted, each once. */
static int collect_owner(const struct applier *a, const char *owner,
			 struct stale_backend_key **pairs, size_t *count, size_t *cap)
{
	const struct apply_visitor v = {.frontend = collect_frontend};
	struct collect c = {
	    .pairs = pairs,
	    .count = count,
	    .cap = cap,
	    .backend_bytes = maps_value_bytes(apply_map_handle(a, APPLY_MAP_BACKEND)),
	};
	size_t unique = 0;

	*count = 0;
	if (apply_walk(a, owner, &v, &c) == -ENOENT)
		return 0; /* an owner with nothing in the kernel */
	if (c.err)
		return c.err;
	if (*count > 1)
		qsort(*pairs, *count, sizeof(**pairs), pair_compare);
	for (size_t i = 0; i < *count; i++)
		if (unique == 0 || pair_compare(&(*pairs)[unique - 1], &(*pairs)[i]))
			(*pairs)[unique++] = (*pairs)[i];
	*count = unique;
	return 0;
}

int departures_before(struct departures *d, const struct applier *a, const char *owner)
{
	return collect_owner(a, owner, &d->pairs, &d->count, &d->cap);
}

int departures_after(struct departures *d, const struct applier *a, const char *owner)
{
	size_t left = 0;
	int err;

	if (d->count == 0)
		return 0;
	err = collect_owner(a, owner, &d->now, &d->now_count, &d->now_cap);
	if (err) {
		d->count = 0;
		return err;
	}
	for (size_t i = 0; i < d->count; i++)
		if (!d->now_count ||
		    !bsearch(&d->pairs[i], d->now, d->now_count, sizeof(*d->now), pair_compare))
			d->pairs[left++] = d->pairs[i];
	d->count = left;
	return 0;
}

void departures_free(struct departures *d)
{
	free(d->pairs);
	free(d->now);
	*d = (struct departures){0};
}
