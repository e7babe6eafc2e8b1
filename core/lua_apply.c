// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The applier class of balancing.core (see lua_apply.h): the reconcile
 * driver's entries of one owner, read from their FFI cdata (or strings)
 * with every size checked, handed to core/apply.c. */
#include "lua_apply.h"

#include <errno.h>
#include <string.h>

#include <lauxlib.h>

#include "apply.h"
#include "departures.h"
#include "errmsg.h"
#include "lua_binding.h"

#define APPLIER_MT "balancing.applier"

struct lua_applier {
	struct applier *a;	      /* NULL once closed */
	struct departures departures; /* scratch of every apply */
};

static struct lua_applier *check_applier(lua_State *L)
{
	return luaL_checkudata(L, 1, APPLIER_MT);
}

static int applier_closed(lua_State *L)
{
	return lua_binding_push_plain_error(L, -EBADF, "applier is closed");
}

int lua_apply_new(lua_State *L)
{
	struct lua_applier *la;
	const char *dir = NULL;
	struct errmsg e;
	int err;

	if (lua_type(L, 1) == LUA_TSTRING) {
		dir = lua_tostring(L, 1);
	} else if (lua_istable(L, 1) || lua_isuserdata(L, 1)) {
		lua_getfield(L, 1, "bpffs"); /* a datapath, or {bpffs = dir} */
		dir = lua_tostring(L, -1);
	}
	if (!dir)
		return lua_binding_push_plain_error(
		    L, -EINVAL, "applier: expected a pin directory or a datapath (its bpffs)");
	la = lua_newuserdata(L, sizeof(*la));
	la->a = NULL;
	la->departures = (struct departures){0};
	luaL_getmetatable(L, APPLIER_MT);
	lua_setmetatable(L, -2);
	err = apply_open(&la->a, dir, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	return 1;
}

/* --- entries from Lua ------------------------------------------------------------ */

/* The bytes of t[field] (t at idx), exactly size bytes. The pointer stays
 * valid while t holds the value and t stays on the stack. */
static int field_bytes(lua_State *L, int idx, const char *field, size_t size, const char *what,
		       const void **out, struct errmsg *e)
{
	struct lua_binding_bytes b;
	int err;

	lua_getfield(L, idx, field);
	/* an absolute index: the binding pushes its helper above it */
	err = lua_binding_arg_bytes(L, lua_gettop(L), what, &b, e);
	lua_pop(L, 1);
	if (err)
		return err;
	if (b.len != size)
		return errmsg_plain(e, -EINVAL, "%s: %zu bytes given, the map's size is %zu", what,
				    b.len, size);
	*out = b.ptr;
	return 0;
}

/* #t[field] when it is a table, 0 when absent; -EINVAL otherwise. */
static int list_length(lua_State *L, int idx, const char *field, const char *what, __u32 *n,
		       struct errmsg *e)
{
	int err = 0;

	*n = 0;
	lua_getfield(L, idx, field);
	if (lua_istable(L, -1))
		*n = (__u32)lua_objlen(L, -1);
	else if (!lua_isnil(L, -1))
		err = errmsg_plain(e, -EINVAL, "%s: expected a table, got %s", what,
				   luaL_typename(L, -1));
	lua_pop(L, 1);
	return err;
}

static const char *const plain_fields[APPLY_MAP_COUNT] = {
    [APPLY_MAP_NODE_IP] = "node_ips",
    [APPLY_MAP_NODE_PROXY_IP] = "node_proxy_ips",
    [APPLY_MAP_REDIRECT_LOOP] = "redirect_loops",
};

/* Reads entries (a table at idx) into d; its arrays live in a userdata
 * left on the stack, so that they are freed with it whatever happens. */
static int read_entries(lua_State *L, int idx, const struct applier *a, const char *owner,
			struct apply_desired *d, struct errmsg *e)
{
	const struct map_handle *svc = apply_map_handle(a, APPLY_MAP_SERVICE);
	const struct map_handle *be = apply_map_handle(a, APPLY_MAP_BACKEND);
	size_t backends = 0, plain = 0, bytes;
	const void **ptrs;
	char what[128];
	int err, top;

	memset(d, 0, sizeof(*d));
	lua_getfield(L, idx, "owner");
	if (!lua_isnil(L, -1) && (!lua_isstring(L, -1) || strcmp(lua_tostring(L, -1), owner))) {
		err =
		    errmsg_plain(e, -EINVAL, "apply %s: entries.owner is %s", owner,
				 lua_isstring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
		lua_pop(L, 1);
		return err;
	}
	lua_pop(L, 1);
	err = list_length(L, idx, "frontends", "entries.frontends", &d->frontend_count, e);
	for (int m = 0; m < APPLY_MAP_COUNT && !err; m++) {
		if (plain_fields[m]) {
			snprintf(what, sizeof(what), "entries.%s", plain_fields[m]);
			err = list_length(L, idx, plain_fields[m], what, &d->table_count[m], e);
			plain += d->table_count[m];
		}
	}
	if (err)
		return err;

	/* first pass: how many backends, to allocate once */
	lua_getfield(L, idx, "frontends");
	top = lua_gettop(L);
	for (__u32 i = 0; i < d->frontend_count && !err; i++) {
		__u32 n;

		lua_rawgeti(L, top, (int)i + 1);
		snprintf(what, sizeof(what), "entries.frontends[%u]", i + 1);
		if (!lua_istable(L, -1))
			err = errmsg_plain(e, -EINVAL, "%s: expected a table", what);
		else
			err = list_length(L, -1, "backends", what, &n, e);
		backends += err ? 0 : n;
		lua_pop(L, 1);
	}
	if (err)
		return err;
	bytes = d->frontend_count * sizeof(struct apply_frontend) +
		plain * sizeof(struct apply_entry) + backends * sizeof(void *);
	{
		unsigned char *mem = lua_newuserdata(L, bytes + 1);
		struct apply_frontend *fronts = (struct apply_frontend *)mem;
		struct apply_entry *entries =
		    (struct apply_entry *)(mem + d->frontend_count * sizeof(*fronts));

		ptrs = (const void **)(entries + plain);
		d->frontends = fronts;
		for (__u32 i = 0; i < d->frontend_count && !err; i++) {
			struct apply_frontend *f = &fronts[i];

			lua_rawgeti(L, top, (int)i + 1);
			snprintf(what, sizeof(what), "entries.frontends[%u].key", i + 1);
			err = field_bytes(L, -1, "key", svc->key_size, what, &f->key, e);
			snprintf(what, sizeof(what), "entries.frontends[%u].value", i + 1);
			if (!err)
				err = field_bytes(L, -1, "value", svc->value_size, what, &f->value,
						  e);
			lua_getfield(L, -1, "backends");
			f->backends = ptrs;
			f->backend_count = lua_istable(L, -1) ? (__u32)lua_objlen(L, -1) : 0;
			for (__u32 j = 0; j < f->backend_count && !err; j++) {
				struct lua_binding_bytes b;

				snprintf(what, sizeof(what), "entries.frontends[%u].backends[%u]",
					 i + 1, j + 1);
				lua_rawgeti(L, -1, (int)j + 1);
				err = lua_binding_arg_bytes(L, lua_gettop(L), what, &b, e);
				if (!err && b.len != be->value_size)
					err = errmsg_plain(
					    e, -EINVAL, "%s: %zu bytes given, the map's size is %u",
					    what, b.len, be->value_size);
				*ptrs++ = b.ptr;
				lua_pop(L, 1);
			}
			lua_pop(L, 2);
		}
		for (int m = 0; m < APPLY_MAP_COUNT && !err; m++) {
			const struct map_handle *h = apply_map_handle(a, m);

			if (!plain_fields[m])
				continue;
			d->tables[m] = entries;
			lua_getfield(L, idx, plain_fields[m]);
			for (__u32 i = 0; i < d->table_count[m] && !err; i++) {
				lua_rawgeti(L, -1, (int)i + 1);
				snprintf(what, sizeof(what), "entries.%s[%u].key", plain_fields[m],
					 i + 1);
				if (!lua_istable(L, -1))
					err =
					    errmsg_plain(e, -EINVAL, "%s: expected a table", what);
				if (!err)
					err = field_bytes(L, -1, "key", h->key_size, what,
							  &entries->key, e);
				snprintf(what, sizeof(what), "entries.%s[%u].value",
					 plain_fields[m], i + 1);
				if (!err)
					err = field_bytes(L, -1, "value", maps_value_bytes(h), what,
							  &entries->value, e);
				entries++;
				lua_pop(L, 1);
			}
			lua_pop(L, 1);
		}
	}
	/* the scratch userdata stays; the frontends list goes under it */
	lua_remove(L, top);
	if (err) {
		struct errmsg why = *e;

		return errmsg_plain(e, err, "apply %s: %.400s", owner, why.text);
	}
	return 0;
}

/* --- results ------------------------------------------------------------------------ */

/* { map_service = { written =, deleted = }, ..., written = all, deleted = all } */
static void push_stats(lua_State *L, const struct apply_stats *s)
{
	__u32 written = 0, deleted = 0;

	lua_createtable(L, 0, APPLY_MAP_COUNT + 2);
	for (int m = 0; m < APPLY_MAP_COUNT; m++) {
		lua_createtable(L, 0, 2);
		lua_binding_set_number(L, "written", s->written[m]);
		lua_binding_set_number(L, "deleted", s->deleted[m]);
		lua_setfield(L, -2, apply_map_name(m));
		written += s->written[m];
		deleted += s->deleted[m];
	}
	lua_binding_set_number(L, "written", written);
	lua_binding_set_number(L, "deleted", deleted);
}

/* stats, or nil, message, -errno, stats */
static int push_stats_or_error(lua_State *L, int err, const struct apply_stats *s,
			       const struct errmsg *e)
{
	if (!err) {
		push_stats(L, s);
		return 1;
	}
	lua_binding_push_error(L, err, e);
	push_stats(L, s);
	return 4;
}

/* stats.departed = { struct stale_backend_key bytes, ... }: the pairs the
 * apply took out of UDP frontends, for datapath:destroy_stale_sockets. Only
 * set when there are some. */
static void set_departed(lua_State *L, const struct departures *d)
{
	if (d->count == 0)
		return;
	lua_createtable(L, (int)d->count, 0);
	for (size_t i = 0; i < d->count; i++) {
		lua_pushlstring(L, (const char *)&d->pairs[i], sizeof(d->pairs[i]));
		lua_rawseti(L, -2, (int)i + 1);
	}
	lua_setfield(L, -2, "departed");
}

/* apply_owner (d given) or apply_forget (d NULL), with the departures
 * noted around it. A departure list that cannot be built (no memory) is
 * left empty: the apply itself matters more than the sockets. */
static int apply_noting_departures(lua_State *L, struct lua_applier *la, const char *owner,
				   const struct apply_desired *d)
{
	struct apply_stats stats = {0};
	struct errmsg e;
	int err, results;

	if (departures_before(&la->departures, la->a, owner))
		la->departures.count = 0;
	err = d ? apply_owner(la->a, owner, d, &stats, &e) : apply_forget(la->a, owner, &stats, &e);
	if (departures_after(&la->departures, la->a, owner))
		la->departures.count = 0;
	results = push_stats_or_error(L, err, &stats, &e);
	set_departed(L, &la->departures); /* the stats are on top either way */
	return results;
}

static int applier_apply(lua_State *L)
{
	struct lua_applier *la = check_applier(L);
	const char *owner = luaL_checkstring(L, 2);
	struct apply_stats stats = {0};
	struct apply_desired d;
	struct errmsg e;
	int err;

	luaL_checktype(L, 3, LUA_TTABLE);
	if (!la->a)
		return applier_closed(L);
	err = read_entries(L, 3, la->a, owner, &d, &e);
	if (err)
		return push_stats_or_error(L, err, &stats, &e);
	return apply_noting_departures(L, la, owner, &d);
}

static int applier_forget(lua_State *L)
{
	struct lua_applier *la = check_applier(L);
	const char *owner = luaL_checkstring(L, 2);

	if (!la->a)
		return applier_closed(L);
	return apply_noting_departures(L, la, owner, NULL);
}

/* { map_service = N, map_backend = N, ... }: entries read into the pool */
static int applier_read_back(lua_State *L)
{
	struct lua_applier *la = check_applier(L);
	__u32 counts[APPLY_MAP_COUNT];
	struct errmsg e;
	int err;

	if (!la->a)
		return applier_closed(L);
	err = apply_read_back(la->a, counts, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_createtable(L, 0, APPLY_MAP_COUNT);
	for (int m = 0; m < APPLY_MAP_COUNT; m++)
		lua_binding_set_number(L, apply_map_name(m), counts[m]);
	return 1;
}

static int applier_sweep(lua_State *L)
{
	struct lua_applier *la = check_applier(L);
	struct apply_stats stats = {0};
	struct errmsg e;
	int err;

	if (!la->a)
		return applier_closed(L);
	err = apply_sweep(la->a, &stats, &e);
	return push_stats_or_error(L, err, &stats, &e);
}

struct shadow_ctx {
	lua_State *L;
	const struct applier *a;
	int frontends; /* stack index of the frontends array */
	int tables[APPLY_MAP_COUNT];
};

static void shadow_frontend(void *ctx, const struct apply_frontend_view *f)
{
	struct shadow_ctx *c = ctx;
	lua_State *L = c->L;
	const struct map_handle *svc = apply_map_handle(c->a, APPLY_MAP_SERVICE);
	size_t vsize = maps_value_bytes(apply_map_handle(c->a, APPLY_MAP_BACKEND));

	lua_createtable(L, 0, 3);
	lua_pushlstring(L, f->key, svc->key_size);
	lua_setfield(L, -2, "key");
	if (f->value) {
		lua_pushlstring(L, f->value, svc->value_size);
		lua_setfield(L, -2, "value");
	}
	lua_createtable(L, (int)f->slot_count, 0);
	for (__u32 s = 0; s < f->slot_count; s++) {
		if (f->present[s])
			lua_pushlstring(L, (const char *)f->slots + s * vsize, vsize);
		else
			lua_pushboolean(L, 0);
		lua_rawseti(L, -2, (int)s + 1);
	}
	lua_setfield(L, -2, "backends");
	lua_rawseti(L, c->frontends, (int)lua_objlen(L, c->frontends) + 1);
}

static void shadow_entry(void *ctx, enum apply_map m, const void *key, const void *value)
{
	struct shadow_ctx *c = ctx;
	lua_State *L = c->L;
	const struct map_handle *h = apply_map_handle(c->a, m);

	lua_createtable(L, 0, 2);
	lua_pushlstring(L, key, h->key_size);
	lua_setfield(L, -2, "key");
	lua_pushlstring(L, value, maps_value_bytes(h));
	lua_setfield(L, -2, "value");
	lua_rawseti(L, c->tables[m], (int)lua_objlen(L, c->tables[m]) + 1);
}

/* { frontends = { { key, value (absent when not in the kernel), backends =
 * { slot bytes or false, ... } }, ... }, node_ips = { { key, value } },
 * node_proxy_ips = ... } of what the kernel has from the owner (no owner:
 * what was read back and is unclaimed yet), or nil. */
static int applier_shadow(lua_State *L)
{
	struct lua_applier *la = check_applier(L);
	const char *owner = luaL_optstring(L, 2, NULL); /* none: the read-back pool */
	const struct apply_visitor v = {.frontend = shadow_frontend, .entry = shadow_entry};
	struct shadow_ctx c = {.L = L, .a = la->a};

	if (!la->a)
		return applier_closed(L);
	lua_createtable(L, 0, 3);
	lua_newtable(L);
	c.frontends = lua_gettop(L);
	for (int m = 0; m < APPLY_MAP_COUNT; m++) {
		if (!plain_fields[m])
			continue;
		lua_newtable(L);
		c.tables[m] = lua_gettop(L);
	}
	if (apply_walk(la->a, owner, &v, &c) == -ENOENT) {
		lua_pushnil(L);
		return 1;
	}
	for (int m = APPLY_MAP_COUNT - 1; m >= 0; m--) {
		if (!plain_fields[m])
			continue;
		lua_setfield(L, c.frontends - 1, plain_fields[m]);
	}
	lua_setfield(L, -2, "frontends");
	return 1;
}

static int applier_close(lua_State *L)
{
	struct lua_applier *la = check_applier(L);

	apply_close(la->a);
	la->a = NULL;
	departures_free(&la->departures);
	lua_pushboolean(L, 1);
	return 1;
}

static const luaL_Reg applier_methods[] = {
    {"apply", applier_apply},
    {"forget", applier_forget},
    {"shadow", applier_shadow},
    {"read_back", applier_read_back},
    {"sweep", applier_sweep},
    {"close", applier_close},
    {NULL, NULL},
};

static const luaL_Reg applier_meta[] = {
    {"__gc", applier_close},
    {NULL, NULL},
};

void lua_apply_register(lua_State *L)
{
	lua_binding_new_class(L, APPLIER_MT, applier_meta, applier_methods, true);
}
