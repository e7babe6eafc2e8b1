// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The apply step: per-owner shadows, stable slots, ordered batches (see
 * apply.h). */
#include "apply.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>

#include "balancing.h"

static const char *const map_names[APPLY_MAP_COUNT] = {
    [APPLY_MAP_SERVICE] = "map_service",
    [APPLY_MAP_BACKEND] = "map_backend",
    [APPLY_MAP_NODE_IP] = "map_node_ip",
    [APPLY_MAP_NODE_PROXY_IP] = "map_node_proxy_ip",
    [APPLY_MAP_REDIRECT_LOOP] = "map_redirect_loop",
};

static bool is_plain(enum apply_map m)
{
	return m == APPLY_MAP_NODE_IP || m == APPLY_MAP_NODE_PROXY_IP ||
	       m == APPLY_MAP_REDIRECT_LOOP;
}

/* --- a hash table of opaque byte keys -------------------------------------- */

/* Keys are not copied: each points into the object the table maps it to
 * (or, for the planning tables, into memory that outlives the call). */
struct htab_slot {
	const void *key;
	size_t len;
	__u64 hash;
	void *val;
};

struct htab {
	struct htab_slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t count;
};

/* FNV-1a with a final avalanche: keys are short byte strings (a service key
 * is 8 bytes, an IPv6 one 20), and linear probing wants the low bits
 * mixed. */
static __u64 hash_bytes(const void *key, size_t len)
{
	const unsigned char *p = key;
	__u64 h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static struct htab_slot *htab_find(const struct htab *t, const void *key, size_t len, __u64 hash)
{
	size_t mask = t->cap - 1;

	if (!t->cap)
		return NULL;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		struct htab_slot *s = &t->slots[i];

		if (!s->key)
			return NULL;
		if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0)
			return s;
	}
}

static void *htab_get(const struct htab *t, const void *key, size_t len)
{
	struct htab_slot *s = htab_find(t, key, len, hash_bytes(key, len));

	return s ? s->val : NULL;
}

static void htab_insert(struct htab *t, const void *key, size_t len, __u64 hash, void *val)
{
	size_t mask = t->cap - 1, i = hash & mask;

	while (t->slots[i].key)
		i = (i + 1) & mask;
	t->slots[i] = (struct htab_slot){.key = key, .len = len, .hash = hash, .val = val};
	t->count++;
}

/* A table starts at 4 slots (3 keys): an owner's table of frontends is
 * nearly always that small, and there is one per Service — 16 slots each
 * were 5 MiB of empty ones at 10,000 Services. */
static int htab_grow(struct htab *t)
{
	size_t cap = t->cap ? t->cap * 2 : 4;
	struct htab old = *t;

	t->slots = calloc(cap, sizeof(*t->slots));
	if (!t->slots) {
		*t = old;
		return -ENOMEM;
	}
	t->cap = cap;
	t->count = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].key)
			htab_insert(t, old.slots[i].key, old.slots[i].len, old.slots[i].hash,
				    old.slots[i].val);
	free(old.slots);
	return 0;
}

/* Maps key to val, replacing what it mapped to. */
static int htab_put(struct htab *t, const void *key, size_t len, void *val)
{
	__u64 hash = hash_bytes(key, len);
	struct htab_slot *s = htab_find(t, key, len, hash);

	if (s) {
		s->key = key;
		s->val = val;
		return 0;
	}
	/* at most 3/4 full, so a probe always ends */
	if ((t->count + 1) * 4 > t->cap * 3 && htab_grow(t))
		return -ENOMEM;
	htab_insert(t, key, len, hash, val);
	return 0;
}

/* Linear probing's deletion by backward shift: no tombstones to age. */
static void htab_del(struct htab *t, const void *key, size_t len)
{
	struct htab_slot *s = htab_find(t, key, len, hash_bytes(key, len));
	size_t mask = t->cap - 1, i, j, k;

	if (!s)
		return;
	i = j = (size_t)(s - t->slots);
	for (;;) {
		j = (j + 1) & mask;
		if (!t->slots[j].key)
			break;
		k = t->slots[j].hash & mask;
		/* slot j stays when its home k lies cyclically in (i, j] */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		t->slots[i] = t->slots[j];
		i = j;
	}
	t->slots[i].key = NULL;
	t->count--;
}

static void htab_clear(struct htab *t)
{
	if (t->cap)
		memset(t->slots, 0, t->cap * sizeof(*t->slots));
	t->count = 0;
}

static void htab_free(struct htab *t)
{
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

#define htab_each(t, s)                                                                            \
	for (struct htab_slot *s = (t)->slots; s && s < (t)->slots + (t)->cap; s++)                \
		if (s->key)

/* --- shadows ------------------------------------------------------------------ */

/* One map_service entry and its map_backend slots, as the kernel has them. */
struct frontend {
	unsigned char *key;
	unsigned char *value; /* meaningful when value_present */
	bool value_present;
	__u32 slot_count; /* slots 0..slot_count-1 are tracked */
	__u32 slot_cap;
	unsigned char *slots;
	bool *present;
	/* this apply's plan */
	const struct apply_frontend *want;
	bool failed;  /* a slot write failed: its count stays as it is */
	bool counted; /* the kernel has the wanted count, or no entry at all */
};

/* One entry of a plain map. */
struct entry {
	unsigned char *key;
	unsigned char *value;
	bool present;
	const void *want; /* this apply's value, NULL when unwanted */
};

struct owner {
	char *name;
	size_t name_len;
	struct htab frontends;		      /* service key -> struct frontend */
	struct htab entries[APPLY_MAP_COUNT]; /* plain maps: key -> struct entry */
};

/* Planning scratch, kept between calls so a steady state allocates
 * nothing. */
struct counter {
	__u32 want;
	__u32 kept;
};

struct batch {
	unsigned char *keys;
	unsigned char *values;
	void **refs;
	__u32 *slots;
	__u32 count;
	__u32 cap;
};

struct applier {
	struct map_handle maps[APPLY_MAP_COUNT];
	size_t value_bytes[APPLY_MAP_COUNT];
	struct htab owners; /* name -> struct owner */
	/* What the maps held at read-back that no owner has claimed yet: an
	 * owner that wants one of its keys takes the entry over as the kernel
	 * has it (so its slots stay where they are across a restart), and
	 * apply_sweep deletes the rest. Its claims are in claims[] too, but
	 * yield to any owner. */
	struct owner *pool;
	struct htab claims[APPLY_MAP_COUNT]; /* key -> struct owner (SERVICE, plain) */
	struct htab counts;		     /* backend bytes -> struct counter */
	struct counter *counters;
	bool *taken;
	__u32 scratch_cap;
	struct batch batch;
	size_t key_max, value_max; /* the largest key and value of the maps */
	void **drop;
	size_t drop_cap;
	unsigned char *lookup_value;
};

/* A frontend's and an entry's key and value live in the same allocation as
 * the struct, behind it: at 15,000 frontends, two small mallocs each were
 * a megabyte of chunk headers and minimum sizes. */
#define SHADOW_ALIGN(n) (((n) + 7) & ~(size_t)7)

static void *shadow_new(size_t struct_size, const void *key, size_t key_size, size_t value_size,
			unsigned char **key_out, unsigned char **value_out)
{
	size_t key_at = SHADOW_ALIGN(struct_size), value_at = key_at + SHADOW_ALIGN(key_size);
	unsigned char *bytes = calloc(1, value_at + value_size);

	if (!bytes)
		return NULL;
	*key_out = bytes + key_at;
	*value_out = bytes + value_at;
	memcpy(*key_out, key, key_size);
	return bytes;
}

static void frontend_free(struct frontend *f)
{
	if (!f)
		return;
	free(f->slots);
	free(f->present);
	free(f);
}

static void entry_free(struct entry *en)
{
	free(en);
}

static void owner_free(struct owner *o)
{
	if (!o)
		return;
	htab_each(&o->frontends, s)
	{
		frontend_free(s->val);
	}
	htab_free(&o->frontends);
	for (int m = 0; m < APPLY_MAP_COUNT; m++) {
		htab_each(&o->entries[m], s)
		{
			entry_free(s->val);
		}
		htab_free(&o->entries[m]);
	}
	free(o->name);
	free(o);
}

static bool owner_empty(const struct owner *o)
{
	size_t n = o->frontends.count;

	for (int m = 0; m < APPLY_MAP_COUNT; m++)
		n += o->entries[m].count;
	return n == 0;
}

/* A new frontend for key in o's shadow, claimed for o: 0, or an error with
 * nothing added. */
static int owner_add_frontend(struct applier *a, struct owner *o, const void *key, struct frontend **out)
{
	size_t ksize = a->maps[APPLY_MAP_SERVICE].key_size;
	unsigned char *key_copy, *value;
	struct frontend *f = shadow_new(sizeof(*f), key, ksize, a->maps[APPLY_MAP_SERVICE].value_size,
					&key_copy, &value);
	int err;

	if (!f)
		return -ENOMEM;
	f->key = key_copy;
	f->value = value;
	err = htab_put(&o->frontends, f->key, ksize, f);
	if (!err)
		err = htab_put(&a->claims[APPLY_MAP_SERVICE], f->key, ksize, o);
	if (err) {
		htab_del(&o->frontends, f->key, ksize);
		frontend_free(f);
		return err;
	}
	*out = f;
	return 0;
}

/* A new entry of plain map m for key in o's shadow, claimed for o: 0, or an
 * error with nothing added. */
static int owner_add_entry(struct applier *a, struct owner *o, enum apply_map m, const void *key,
			   struct entry **out)
{
	size_t ksize = a->maps[m].key_size;
	unsigned char *key_copy, *value;
	struct entry *en = shadow_new(sizeof(*en), key, ksize, a->value_bytes[m], &key_copy, &value);
	int err;

	if (!en)
		return -ENOMEM;
	en->key = key_copy;
	en->value = value;
	err = htab_put(&o->entries[m], en->key, ksize, en);
	if (!err)
		err = htab_put(&a->claims[m], en->key, ksize, o);
	if (err) {
		htab_del(&o->entries[m], en->key, ksize);
		entry_free(en);
		return err;
	}
	*out = en;
	return 0;
}

static int frontend_reserve(struct frontend *f, __u32 slots, size_t vsize)
{
	unsigned char *bytes;
	bool *present;
	__u32 cap;

	if (slots <= f->slot_cap)
		return 0;
	cap = f->slot_cap ? f->slot_cap : 4;
	while (cap < slots)
		cap *= 2;
	bytes = realloc(f->slots, (size_t)cap * vsize);
	if (!bytes)
		return -ENOMEM;
	f->slots = bytes;
	present = realloc(f->present, cap * sizeof(*present));
	if (!present)
		return -ENOMEM;
	memset(present + f->slot_cap, 0, (cap - f->slot_cap) * sizeof(*present));
	f->present = present;
	f->slot_cap = cap;
	return 0;
}

static unsigned char *slot_bytes(const struct frontend *f, __u32 slot, size_t vsize)
{
	return f->slots + (size_t)slot * vsize;
}

/* --- opening ------------------------------------------------------------------ */

const char *apply_map_name(enum apply_map map)
{
	return map >= 0 && map < APPLY_MAP_COUNT ? map_names[map] : "?";
}

const struct map_handle *apply_map_handle(const struct applier *a, enum apply_map map)
{
	return &a->maps[map];
}

static int check_layout(const struct applier *a, const char *pin_dir, struct errmsg *e)
{
	const struct map_handle *svc = &a->maps[APPLY_MAP_SERVICE],
				*be = &a->maps[APPLY_MAP_BACKEND];

	/* A backend key is the frontend's key followed by its slot, whatever
	 * the address family; only the value's counts are read. */
	if (be->key_size != svc->key_size + sizeof(__u32))
		return errmsg_plain(e, -EINVAL,
				    "%s: map_backend key (%u bytes) is not a map_service key (%u) "
				    "and a slot",
				    pin_dir, be->key_size, svc->key_size);
	if (svc->value_size != sizeof(struct service_value))
		return errmsg_plain(e, -EINVAL, "%s: map_service value is %u bytes, expected %zu",
				    pin_dir, svc->value_size, sizeof(struct service_value));
	return 0;
}

int apply_open(struct applier **out, const char *pin_dir, struct errmsg *e)
{
	struct applier *a;
	int err = 0, m;

	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return errmsg_set(e, -ENOMEM, "applier for %s", pin_dir);
	for (m = 0; m < APPLY_MAP_COUNT; m++)
		a->maps[m].fd = -1;
	for (m = 0; m < APPLY_MAP_COUNT; m++) {
		err = maps_open_pinned(&a->maps[m], pin_dir, map_names[m], e);
		if (err)
			goto out;
		a->value_bytes[m] = maps_value_bytes(&a->maps[m]);
		if (a->value_bytes[m] > a->value_max)
			a->value_max = a->value_bytes[m];
		if (a->maps[m].key_size > a->key_max)
			a->key_max = a->maps[m].key_size;
	}
	err = check_layout(a, pin_dir, e);
	if (err)
		goto out;
	a->lookup_value = malloc(a->value_max + 1);
	if (!a->lookup_value)
		err = errmsg_set(e, -ENOMEM, "applier for %s", pin_dir);
out:
	if (err)
		apply_close(a);
	else
		*out = a;
	return err;
}

void apply_close(struct applier *a)
{
	if (!a)
		return;
	htab_each(&a->owners, s)
	{
		owner_free(s->val);
	}
	htab_free(&a->owners);
	owner_free(a->pool);
	for (int m = 0; m < APPLY_MAP_COUNT; m++) {
		htab_free(&a->claims[m]);
		maps_handle_close(&a->maps[m]);
	}
	htab_free(&a->counts);
	free(a->counters);
	free(a->taken);
	free(a->batch.keys);
	free(a->batch.values);
	free(a->batch.refs);
	free(a->batch.slots);
	free(a->drop);
	free(a->lookup_value);
	free(a);
}

/* --- checking what is asked ----------------------------------------------------- */

static int key_problem(const struct applier *a, enum apply_map m, const char *owner,
		       const void *key, int err, const char *why, struct errmsg *e)
{
	char text[MAPS_KEY_TEXT_LEN];

	maps_describe_key(&a->maps[m], key, text, sizeof(text));
	return errmsg_plain(e, err, "owner %s: %s key %s: %s", owner, map_names[m], text, why);
}

/* Counts that match the backends, and no key twice (the shadow maps one
 * key to one entry). Uses a->counts as scratch. */
static int check_desired(struct applier *a, const char *owner, const struct apply_desired *d,
			 struct errmsg *e)
{
	size_t ksize = a->maps[APPLY_MAP_SERVICE].key_size;
	char why[96];
	int err = 0;

	htab_clear(&a->counts);
	for (__u32 i = 0; i < d->frontend_count && !err; i++) {
		const struct apply_frontend *f = &d->frontends[i];
		struct service_value v;

		/* copied: a value given as a Lua string need not be aligned */
		memcpy(&v, f->value, sizeof(v));
		if (f->backend_count > MAX_BACKENDS_PER_FRONTEND ||
		    v.total_count != f->backend_count || v.local_count > v.total_count) {
			snprintf(why, sizeof(why), "total_count %u, local_count %u for %u backends",
				 v.total_count, v.local_count, f->backend_count);
			return key_problem(a, APPLY_MAP_SERVICE, owner, f->key, -EINVAL, why, e);
		}
		if (htab_get(&a->counts, f->key, ksize))
			return key_problem(a, APPLY_MAP_SERVICE, owner, f->key, -EINVAL,
					   "given twice", e);
		err = htab_put(&a->counts, f->key, ksize, (void *)f);
	}
	for (int m = 0; m < APPLY_MAP_COUNT && !err; m++) {
		if (!is_plain(m))
			continue;
		htab_clear(&a->counts);
		for (__u32 i = 0; i < d->table_count[m] && !err; i++) {
			const void *key = d->tables[m][i].key;

			if (htab_get(&a->counts, key, a->maps[m].key_size))
				return key_problem(a, m, owner, key, -EINVAL, "given twice", e);
			err = htab_put(&a->counts, key, a->maps[m].key_size, (void *)key);
		}
	}
	htab_clear(&a->counts);
	return err ? errmsg_set(e, err, "owner %s", owner) : 0;
}

/* Two owners never write one key: reconcile resolves conflicts, so a
 * second claimant is a bug upstream, refused before anything is written
 * rather than letting one owner's delete remove the other's entry. */
static int check_claims(const struct applier *a, const struct owner *o, const char *owner,
			const struct apply_desired *d, struct errmsg *e)
{
	const struct owner *holder;
	char why[ERRMSG_LEN / 2];

	for (__u32 i = 0; i < d->frontend_count; i++) {
		const void *key = d->frontends[i].key;

		holder = htab_get(&a->claims[APPLY_MAP_SERVICE], key,
				  a->maps[APPLY_MAP_SERVICE].key_size);
		if (holder && holder != o && holder != a->pool) {
			snprintf(why, sizeof(why), "already written by owner %s", holder->name);
			return key_problem(a, APPLY_MAP_SERVICE, owner, key, -EBUSY, why, e);
		}
	}
	for (int m = 0; m < APPLY_MAP_COUNT; m++) {
		if (!is_plain(m))
			continue;
		for (__u32 i = 0; i < d->table_count[m]; i++) {
			const void *key = d->tables[m][i].key;

			holder = htab_get(&a->claims[m], key, a->maps[m].key_size);
			if (holder && holder != o && holder != a->pool) {
				snprintf(why, sizeof(why), "already written by owner %s",
					 holder->name);
				return key_problem(a, m, owner, key, -EBUSY, why, e);
			}
		}
	}
	return 0;
}

/* --- the owner's shadow for this apply ------------------------------------------------ */

static struct owner *owner_get(struct applier *a, const char *name)
{
	return htab_get(&a->owners, name, strlen(name));
}

static int owner_new(struct applier *a, const char *name, struct owner **out)
{
	struct owner *o = calloc(1, sizeof(*o));
	int err;

	if (!o)
		return -ENOMEM;
	o->name = strdup(name);
	if (!o->name) {
		free(o);
		return -ENOMEM;
	}
	o->name_len = strlen(name);
	err = htab_put(&a->owners, o->name, o->name_len, o);
	if (err) {
		owner_free(o);
		return err;
	}
	*out = o;
	return 0;
}

/* Marks what the owner wants, adding (and claiming) shadow entries for
 * keys it has not written yet. */
static int mark_wanted(struct applier *a, struct owner *o, const struct apply_desired *d)
{
	size_t ksize = a->maps[APPLY_MAP_SERVICE].key_size;
	int err;

	htab_each(&o->frontends, s)
	{
		struct frontend *f = s->val;

		f->want = NULL;
		f->failed = false;
		f->counted = false;
	}
	for (__u32 i = 0; i < d->frontend_count; i++) {
		const void *key = d->frontends[i].key;
		struct frontend *f = htab_get(&o->frontends, key, ksize);

		if (!f && a->pool && (f = htab_get(&a->pool->frontends, key, ksize))) {
			/* taken over from the read-back as the kernel has it */
			htab_del(&a->pool->frontends, key, ksize);
			err = htab_put(&o->frontends, f->key, ksize, f);
			if (err) {
				htab_del(&a->claims[APPLY_MAP_SERVICE], f->key, ksize);
				frontend_free(f);
				return err;
			}
			htab_put(&a->claims[APPLY_MAP_SERVICE], f->key, ksize, o); /* replaces */
			f->want = NULL;
			f->failed = false;
			f->counted = false;
		}
		if (!f) {
			err = owner_add_frontend(a, o, key, &f);
			if (err)
				return err;
		}
		f->want = &d->frontends[i];
	}
	for (int m = 0; m < APPLY_MAP_COUNT; m++) {
		if (!is_plain(m))
			continue;
		htab_each(&o->entries[m], s)
		{
			struct entry *en = s->val;

			en->want = NULL;
		}
		for (__u32 i = 0; i < d->table_count[m]; i++) {
			const struct apply_entry *want = &d->tables[m][i];
			size_t size = a->maps[m].key_size;
			struct entry *en = htab_get(&o->entries[m], want->key, size);

			if (!en && a->pool &&
			    (en = htab_get(&a->pool->entries[m], want->key, size))) {
				htab_del(&a->pool->entries[m], want->key, size);
				err = htab_put(&o->entries[m], en->key, size, en);
				if (err) {
					htab_del(&a->claims[m], en->key, size);
					entry_free(en);
					return err;
				}
				htab_put(&a->claims[m], en->key, size, o); /* replaces */
			}
			if (!en) {
				err = owner_add_entry(a, o, m, want->key, &en);
				if (err)
					return err;
			}
			en->want = want->value;
		}
	}
	return 0;
}

/* Drops what the kernel no longer has, and the owner once it is empty. */
static int settle(struct applier *a, struct owner *o)
{
	size_t ksize = a->maps[APPLY_MAP_SERVICE].key_size, n = 0;
	size_t need = o->frontends.count;

	for (int m = 0; m < APPLY_MAP_COUNT; m++)
		if (o->entries[m].count > need)
			need = o->entries[m].count;
	if (need > a->drop_cap) {
		void **drop = realloc(a->drop, need * sizeof(*drop));

		if (!drop)
			return -ENOMEM;
		a->drop = drop;
		a->drop_cap = need;
	}
	htab_each(&o->frontends, s)
	{
		struct frontend *f = s->val;

		while (f->slot_count && !f->present[f->slot_count - 1])
			f->slot_count--;
		if (!f->value_present && !f->slot_count)
			a->drop[n++] = f;
	}
	for (size_t i = 0; i < n; i++) {
		struct frontend *f = a->drop[i];

		htab_del(&a->claims[APPLY_MAP_SERVICE], f->key, ksize);
		htab_del(&o->frontends, f->key, ksize);
		frontend_free(f);
	}
	for (int m = 0; m < APPLY_MAP_COUNT; m++) {
		if (!is_plain(m))
			continue;
		n = 0;
		htab_each(&o->entries[m], s)
		{
			struct entry *en = s->val;

			if (!en->present)
				a->drop[n++] = en;
		}
		for (size_t i = 0; i < n; i++) {
			struct entry *en = a->drop[i];

			htab_del(&a->claims[m], en->key, a->maps[m].key_size);
			htab_del(&o->entries[m], en->key, a->maps[m].key_size);
			entry_free(en);
		}
	}
	if (owner_empty(o) && o != a->pool) {
		htab_del(&a->owners, o->name, o->name_len);
		owner_free(o);
	}
	return 0;
}

/* --- batches ---------------------------------------------------------------------- */

static int batch_add(struct applier *a, enum apply_map m, const void *key, const void *value,
		     void *ref, __u32 slot)
{
	struct batch *b = &a->batch;
	size_t ksize = a->maps[m].key_size, vsize = a->value_bytes[m];

	if (b->count == b->cap) {
		__u32 cap = b->cap ? b->cap * 2 : 64;
		void *p;

		/* one buffer serves every map: sized for the largest */
		p = realloc(b->keys, (size_t)cap * a->key_max);
		if (!p)
			return -ENOMEM;
		b->keys = p;
		p = realloc(b->values, (size_t)cap * a->value_max);
		if (!p)
			return -ENOMEM;
		b->values = p;
		p = realloc(b->refs, cap * sizeof(*b->refs));
		if (!p)
			return -ENOMEM;
		b->refs = p;
		p = realloc(b->slots, cap * sizeof(*b->slots));
		if (!p)
			return -ENOMEM;
		b->slots = p;
		b->cap = cap;
	}
	if (m == APPLY_MAP_BACKEND) {
		/* key = the frontend's key, then the slot */
		size_t fsize = ksize - sizeof(__u32);

		memcpy(b->keys + b->count * ksize, key, fsize);
		memcpy(b->keys + b->count * ksize + fsize, &slot, sizeof(slot));
	} else {
		memcpy(b->keys + b->count * ksize, key, ksize);
	}
	if (value)
		memcpy(b->values + b->count * vsize, value, vsize);
	b->refs[b->count] = ref;
	b->slots[b->count] = slot;
	b->count++;
	return 0;
}

/* Keeps the first failure of an apply, naming the owner. */
static void note_error(int *first, struct errmsg *e, const char *owner, int err,
		       const struct errmsg *why)
{
	if (!err || *first)
		return;
	*first = err;
	errmsg_plain(e, err, "owner %s: %s", owner, why->text);
}

/* Writes the batch; *done: how many went in (in order). */
static int batch_update(struct applier *a, enum apply_map m, __u32 *done, struct errmsg *why)
{
	*done = 0;
	if (!a->batch.count)
		return 0;
	return maps_update_batch(&a->maps[m], a->batch.keys, a->batch.values, a->batch.count,
				 BPF_ANY, done, why);
}

/* Deletes the batch; gone[i] says whether key i is no longer in the map.
 * After a failed batch each key is looked up: the shadow must know
 * exactly what stayed. */
static int batch_delete(struct applier *a, enum apply_map m, __u32 *deleted, bool *gone_all,
			struct errmsg *why)
{
	int err;

	*deleted = 0;
	*gone_all = true;
	if (!a->batch.count)
		return 0;
	err = maps_delete_batch(&a->maps[m], a->batch.keys, a->batch.count, deleted, why);
	if (err)
		*gone_all = false;
	return err;
}

static bool key_gone(struct applier *a, enum apply_map m, __u32 i)
{
	const void *key = a->batch.keys + (size_t)i * a->maps[m].key_size;

	return bpf_map_lookup_elem(a->maps[m].fd, key, a->lookup_value) == -ENOENT;
}

/* --- stable slots ---------------------------------------------------------------------- */

static int reserve_scratch(struct applier *a, __u32 n)
{
	struct counter *counters;
	bool *taken;

	if (n <= a->scratch_cap)
		return 0;
	counters = realloc(a->counters, n * sizeof(*counters));
	if (!counters)
		return -ENOMEM;
	a->counters = counters;
	taken = realloc(a->taken, n * sizeof(*taken));
	if (!taken)
		return -ENOMEM;
	a->taken = taken;
	a->scratch_cap = n;
	return 0;
}

/* The slots [lo, hi) of one group (local, or the rest) for the wanted
 * backends lo..hi-1: a backend whose slot already lies in the range keeps
 * it, the others fill the holes in order — so a leaving backend's slot is
 * taken by the group's last, and one change writes O(1) slots. Backends
 * are told apart by their bytes; the same bytes twice are two backends. */
static int plan_group(struct applier *a, struct frontend *f, __u32 lo, __u32 hi)
{
	const struct apply_frontend *w = f->want;
	size_t vsize = a->value_bytes[APPLY_MAP_BACKEND];
	__u32 used = 0, hole = lo, old_end = f->slot_count < hi ? f->slot_count : hi;
	struct counter *c;
	int err;

	htab_clear(&a->counts);
	for (__u32 i = lo; i < hi; i++) {
		c = htab_get(&a->counts, w->backends[i], vsize);
		if (!c) {
			c = &a->counters[used++];
			*c = (struct counter){0};
			err = htab_put(&a->counts, w->backends[i], vsize, c);
			if (err)
				return err;
		}
		c->want++;
	}
	for (__u32 s = lo; s < hi; s++)
		a->taken[s] = false;
	for (__u32 s = lo; s < old_end; s++) {
		if (!f->present[s])
			continue;
		c = htab_get(&a->counts, slot_bytes(f, s, vsize), vsize);
		if (c && c->kept < c->want) {
			c->kept++;
			a->taken[s] = true;
		}
	}
	for (__u32 i = lo; i < hi; i++) {
		const void *b = w->backends[i];

		c = htab_get(&a->counts, b, vsize);
		if (c->kept) {
			c->kept--;
			continue;
		}
		while (a->taken[hole])
			hole++;
		a->taken[hole] = true;
		if (hole < f->slot_count && f->present[hole] &&
		    memcmp(slot_bytes(f, hole, vsize), b, vsize) == 0)
			continue;
		err = batch_add(a, APPLY_MAP_BACKEND, f->key, b, f, hole);
		if (err)
			return err;
	}
	return 0;
}

/* --- the four steps ----------------------------------------------------------------------- */

struct run {
	struct applier *a;
	struct owner *o;
	const struct apply_desired *d;
	struct apply_stats *stats;
	struct errmsg *e;
	int first; /* the first failure */
};

/* 1. new and changed slots */
static int step_slots(struct run *r)
{
	struct applier *a = r->a;
	size_t vsize = a->value_bytes[APPLY_MAP_BACKEND];
	struct errmsg why;
	__u32 done;
	int err;

	a->batch.count = 0;
	for (__u32 i = 0; i < r->d->frontend_count; i++) {
		struct frontend *f = htab_get(&r->o->frontends, r->d->frontends[i].key,
					      a->maps[APPLY_MAP_SERVICE].key_size);
		__u32 total = f->want->backend_count;
		struct service_value v;

		memcpy(&v, f->want->value, sizeof(v));
		err = reserve_scratch(a, total);
		if (!err)
			err = frontend_reserve(f, total, vsize);
		if (!err)
			err = plan_group(a, f, 0, v.local_count);
		if (!err)
			err = plan_group(a, f, v.local_count, total);
		if (err)
			return err;
	}
	err = batch_update(a, APPLY_MAP_BACKEND, &done, &why);
	for (__u32 i = 0; i < a->batch.count; i++) {
		struct frontend *f = a->batch.refs[i];
		__u32 slot = a->batch.slots[i];

		if (i >= done) {
			f->failed = true;
			continue;
		}
		memcpy(slot_bytes(f, slot, vsize), a->batch.values + (size_t)i * vsize, vsize);
		f->present[slot] = true;
		if (slot >= f->slot_count)
			f->slot_count = slot + 1;
	}
	r->stats->written[APPLY_MAP_BACKEND] += done;
	note_error(&r->first, r->e, r->o->name, err, &why);
	return 0;
}

/* 2. frontends with their new counts, where every slot went in */
static int step_frontends(struct run *r)
{
	struct applier *a = r->a;
	size_t vsize = a->value_bytes[APPLY_MAP_SERVICE];
	struct errmsg why;
	__u32 done;
	int err;

	a->batch.count = 0;
	htab_each(&r->o->frontends, s)
	{
		struct frontend *f = s->val;

		if (!f->want || f->failed)
			continue;
		if (f->value_present && memcmp(f->value, f->want->value, vsize) == 0) {
			f->counted = true;
			continue;
		}
		err = batch_add(a, APPLY_MAP_SERVICE, f->key, f->want->value, f, 0);
		if (err)
			return err;
	}
	err = batch_update(a, APPLY_MAP_SERVICE, &done, &why);
	for (__u32 i = 0; i < done; i++) {
		struct frontend *f = a->batch.refs[i];

		memcpy(f->value, a->batch.values + (size_t)i * vsize, vsize);
		f->value_present = true;
		f->counted = true;
	}
	r->stats->written[APPLY_MAP_SERVICE] += done;
	note_error(&r->first, r->e, r->o->name, err, &why);
	return 0;
}

/* Plain maps: upserts, then (after the frontends are gone) deletes. */
static int step_plain(struct run *r, bool deletes)
{
	struct applier *a = r->a;
	struct errmsg why;
	__u32 done;
	bool all;
	int err;

	for (int m = 0; m < APPLY_MAP_COUNT; m++) {
		size_t vsize = a->value_bytes[m];

		if (!is_plain(m))
			continue;
		a->batch.count = 0;
		htab_each(&r->o->entries[m], s)
		{
			struct entry *en = s->val;

			if (deletes ? (en->want || !en->present)
				    : (!en->want ||
				       (en->present && memcmp(en->value, en->want, vsize) == 0)))
				continue;
			err = batch_add(a, m, en->key, en->want, en, 0);
			if (err)
				return err;
		}
		if (deletes) {
			err = batch_delete(a, m, &done, &all, &why);
			for (__u32 i = 0; i < a->batch.count; i++)
				if (all || key_gone(a, m, i))
					((struct entry *)a->batch.refs[i])->present = false;
			r->stats->deleted[m] += done;
		} else {
			err = batch_update(a, m, &done, &why);
			for (__u32 i = 0; i < done; i++) {
				struct entry *en = a->batch.refs[i];

				memcpy(en->value, a->batch.values + (size_t)i * vsize, vsize);
				en->present = true;
			}
			r->stats->written[m] += done;
		}
		note_error(&r->first, r->e, r->o->name, err, &why);
	}
	return 0;
}

/* 3. frontends that are gone */
static int step_gone(struct run *r)
{
	struct applier *a = r->a;
	struct errmsg why;
	__u32 deleted;
	bool all;
	int err;

	a->batch.count = 0;
	htab_each(&r->o->frontends, s)
	{
		struct frontend *f = s->val;

		if (f->want)
			continue;
		if (!f->value_present) {
			f->counted = true;
			continue;
		}
		err = batch_add(a, APPLY_MAP_SERVICE, f->key, NULL, f, 0);
		if (err)
			return err;
	}
	err = batch_delete(a, APPLY_MAP_SERVICE, &deleted, &all, &why);
	for (__u32 i = 0; i < a->batch.count; i++) {
		struct frontend *f = a->batch.refs[i];

		if (all || key_gone(a, APPLY_MAP_SERVICE, i)) {
			f->value_present = false;
			f->counted = true;
		}
	}
	r->stats->deleted[APPLY_MAP_SERVICE] += deleted;
	note_error(&r->first, r->e, r->o->name, err, &why);
	return 0;
}

/* 4. slots beyond the new counts and of the gone frontends — only where
 * the kernel's count no longer covers them */
static int step_trim(struct run *r)
{
	struct applier *a = r->a;
	struct errmsg why;
	__u32 deleted;
	bool all;
	int err;

	a->batch.count = 0;
	htab_each(&r->o->frontends, s)
	{
		struct frontend *f = s->val;
		__u32 from = f->want ? f->want->backend_count : 0;

		if (!f->counted)
			continue;
		for (__u32 slot = from; slot < f->slot_count; slot++) {
			if (!f->present[slot])
				continue;
			err = batch_add(a, APPLY_MAP_BACKEND, f->key, NULL, f, slot);
			if (err)
				return err;
		}
	}
	err = batch_delete(a, APPLY_MAP_BACKEND, &deleted, &all, &why);
	for (__u32 i = 0; i < a->batch.count; i++) {
		struct frontend *f = a->batch.refs[i];

		if (all || key_gone(a, APPLY_MAP_BACKEND, i))
			f->present[a->batch.slots[i]] = false;
	}
	r->stats->deleted[APPLY_MAP_BACKEND] += deleted;
	note_error(&r->first, r->e, r->o->name, err, &why);
	return 0;
}

/* Marks, writes in order, settles. Returns 0 or -ENOMEM; the first failed
 * write is in r->first. */
static int run_steps(struct run *r)
{
	int err = mark_wanted(r->a, r->o, r->d);

	/* plain upserts first: a redirect frontend never exists without the
	 * loop-avoidance pairs of its own backend pods */
	if (!err)
		err = step_plain(r, false);
	if (!err)
		err = step_slots(r);
	if (!err)
		err = step_frontends(r);
	if (!err)
		err = step_gone(r);
	if (!err)
		err = step_plain(r, true);
	if (!err)
		err = step_trim(r);
	/* whatever happened, the shadow drops what the kernel does not have */
	if (!err)
		err = settle(r->a, r->o);
	else
		settle(r->a, r->o);
	return err;
}

static bool desired_empty(const struct apply_desired *d)
{
	__u32 n = d->frontend_count;

	for (int m = 0; m < APPLY_MAP_COUNT; m++)
		if (is_plain(m))
			n += d->table_count[m];
	return n == 0;
}

int apply_owner(struct applier *a, const char *owner, const struct apply_desired *d,
		struct apply_stats *stats, struct errmsg *e)
{
	struct run r = {.a = a, .d = d, .stats = stats, .e = e};
	int err;

	memset(stats, 0, sizeof(*stats));
	err = check_desired(a, owner, d, e);
	if (err)
		return err;
	r.o = owner_get(a, owner);
	if (!r.o && desired_empty(d))
		return 0;
	err = check_claims(a, r.o, owner, d, e);
	if (err)
		return err;
	if (!r.o) {
		err = owner_new(a, owner, &r.o);
		if (err)
			return errmsg_set(e, err, "owner %s", owner);
	}
	err = run_steps(&r);
	if (err)
		return errmsg_set(e, err, "owner %s", owner);
	return r.first;
}

int apply_forget(struct applier *a, const char *owner, struct apply_stats *stats, struct errmsg *e)
{
	const struct apply_desired none = {0};

	return apply_owner(a, owner, &none, stats, e);
}

int apply_walk(const struct applier *a, const char *owner, const struct apply_visitor *v, void *ctx)
{
	const struct owner *o = owner ? htab_get(&a->owners, owner, strlen(owner)) : a->pool;

	if (!o)
		return -ENOENT;
	htab_each(&o->frontends, s)
	{
		const struct frontend *f = s->val;
		struct apply_frontend_view view = {
		    .key = f->key,
		    .value = f->value_present ? f->value : NULL,
		    .slot_count = f->slot_count,
		    .slots = f->slots,
		    .present = f->present,
		};

		if (v->frontend)
			v->frontend(ctx, &view);
	}
	for (int m = 0; m < APPLY_MAP_COUNT; m++) {
		if (!is_plain(m) || !v->entry)
			continue;
		htab_each(&o->entries[m], s)
		{
			const struct entry *en = s->val;

			v->entry(ctx, m, en->key, en->value);
		}
	}
	return 0;
}

/* --- restart: read-back and sweep ------------------------------------------------- */

static const char pool_name[] = "(read back, unclaimed)";

/* The read-back's frontend for key, made when it has none yet. */
static int pool_frontend(struct applier *a, const void *key, struct frontend **out)
{
	size_t ksize = a->maps[APPLY_MAP_SERVICE].key_size;
	struct frontend *f = htab_get(&a->pool->frontends, key, ksize);

	if (!f)
		return owner_add_frontend(a, a->pool, key, out);
	*out = f;
	return 0;
}

static int read_frontends(struct applier *a, const struct map_dump *svc, const struct map_dump *be,
			  __u32 counts[APPLY_MAP_COUNT])
{
	size_t ksize = a->maps[APPLY_MAP_SERVICE].key_size,
	       vsize = a->value_bytes[APPLY_MAP_BACKEND];
	struct frontend *f;
	const struct owner *holder;
	int err;

	for (__u32 i = 0; i < svc->count; i++) {
		const unsigned char *key = svc->keys + (size_t)i * svc->key_size;

		holder = htab_get(&a->claims[APPLY_MAP_SERVICE], key, ksize);
		if (holder && holder != a->pool)
			continue; /* an owner's shadow already says what it wrote */
		err = pool_frontend(a, key, &f);
		if (err)
			return err;
		memcpy(f->value, svc->values + (size_t)i * svc->value_bytes, svc->value_bytes);
		f->value_present = true;
		counts[APPLY_MAP_SERVICE]++;
	}
	for (__u32 i = 0; i < be->count; i++) {
		const unsigned char *key = be->keys + (size_t)i * be->key_size;
		__u32 slot;

		memcpy(&slot, key + ksize, sizeof(slot));
		/* The datapath reads no slot beyond its verifier bound, and
		 * frontend_reserve must not grow to a stray 4-billion slot. */
		if (slot >= MAX_BACKENDS_PER_FRONTEND)
			continue;
		holder = htab_get(&a->claims[APPLY_MAP_SERVICE], key, ksize);
		if (holder && holder != a->pool)
			continue;
		err = pool_frontend(a, key, &f);
		if (!err)
			err = frontend_reserve(f, slot + 1, vsize);
		if (err)
			return err;
		memcpy(slot_bytes(f, slot, vsize), be->values + (size_t)i * be->value_bytes, vsize);
		f->present[slot] = true;
		if (slot >= f->slot_count)
			f->slot_count = slot + 1;
		counts[APPLY_MAP_BACKEND]++;
	}
	return 0;
}

static int read_plain(struct applier *a, enum apply_map m, const struct map_dump *d,
		      __u32 counts[APPLY_MAP_COUNT])
{
	size_t ksize = a->maps[m].key_size;
	int err;

	for (__u32 i = 0; i < d->count; i++) {
		const unsigned char *key = d->keys + (size_t)i * ksize;
		const struct owner *holder = htab_get(&a->claims[m], key, ksize);
		struct entry *en;

		if (holder && holder != a->pool)
			continue;
		en = htab_get(&a->pool->entries[m], key, ksize);
		if (!en) {
			err = owner_add_entry(a, a->pool, m, key, &en);
			if (err)
				return err;
		}
		memcpy(en->value, d->values + (size_t)i * d->value_bytes, a->value_bytes[m]);
		en->present = true;
		counts[m]++;
	}
	return 0;
}

int apply_read_back(struct applier *a, __u32 counts[APPLY_MAP_COUNT], struct errmsg *e)
{
	struct map_dump d[APPLY_MAP_COUNT] = {0};
	int err = 0, m;

	memset(counts, 0, APPLY_MAP_COUNT * sizeof(*counts));
	if (!a->pool) {
		a->pool = calloc(1, sizeof(*a->pool));
		if (a->pool)
			a->pool->name = strdup(pool_name);
		if (!a->pool || !a->pool->name) {
			owner_free(a->pool);
			a->pool = NULL;
			return errmsg_set(e, -ENOMEM, "read back");
		}
		a->pool->name_len = strlen(pool_name);
	}
	for (m = 0; m < APPLY_MAP_COUNT; m++) {
		err = maps_dump(&a->maps[m], &d[m], e);
		if (err)
			goto out;
	}
	err = read_frontends(a, &d[APPLY_MAP_SERVICE], &d[APPLY_MAP_BACKEND], counts);
	for (m = 0; m < APPLY_MAP_COUNT && !err; m++)
		if (is_plain(m))
			err = read_plain(a, m, &d[m], counts);
	if (err)
		errmsg_set(e, err, "read back");
out:
	for (m = 0; m < APPLY_MAP_COUNT; m++)
		maps_dump_free(&d[m]);
	return err;
}

int apply_sweep(struct applier *a, struct apply_stats *stats, struct errmsg *e)
{
	const struct apply_desired none = {0};
	struct run r = {.a = a, .o = a->pool, .d = &none, .stats = stats, .e = e};
	int err;

	memset(stats, 0, sizeof(*stats));
	if (!a->pool)
		return 0;
	err = run_steps(&r);
	if (owner_empty(a->pool)) {
		owner_free(a->pool);
		a->pool = NULL;
	}
	if (err)
		return errmsg_set(e, err, "sweep");
	return r.first;
}
