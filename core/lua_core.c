// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The Lua module balancing.core (docs/core-api.md): the loader, the map
 * handles and the event reader as userdata. Every kernel or input failure
 * returns nil, message, -errno; only a wrong argument type raises (the
 * luaL_check* way). No state lives outside the userdata and the registry of
 * the lua_State that loaded the module.
 */
#include <errno.h>
#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include <bpf/bpf.h>

#include "balancing.h"
#include "bpffs.h"
#include "cgroup.h"
#include "errmsg.h"
#include "events.h"
#include "loader.h"
#include "maps.h"
#include "netns.h"

int luaopen_balancing_core(lua_State *L);

#define DATAPATH_MT "balancing.datapath"
#define MAP_MT "balancing.map"
#define EVENTS_MT "balancing.events"

/* LuaJIT's lua_type() for FFI cdata (LUA_TCDATA in lj_obj.h, not in the
 * public headers). */
enum { LUA_TCDATA_LUAJIT = 10 };

/* Registry key of the FFI helper below: the address of a constant is
 * unique and needs no mutable global. */
static const char cdata_helper_key = 'c';

/* C cannot see a cdata's type or size, so the FFI tells it: the size of
 * the object a cdata designates and, for a pointer or reference, its
 * address (for values, lua_topointer() gives the payload directly). */
static const char cdata_helper_source[] =
    "local ffi = require('ffi')\n"
    "local voidp = ffi.typeof('void *')\n"
    "return function(v)\n"
    "  local ctype = tostring(ffi.typeof(v))\n"
    "  local last = ctype:sub(-2, -2)\n"
    "  if last == '*' then\n"
    "    local ok, size = pcall(function() return ffi.sizeof(v[0]) end)\n"
    "    if not ok or not size then\n"
    "      return nil, 'a pointer to an object of unknown size (' .. ctype .. ')'\n"
    "    end\n"
    "    return size, ffi.cast(voidp, v)\n"
    "  end\n"
    "  local size = ffi.sizeof(v)\n"
    "  if not size then return nil, 'an object of unknown size (' .. ctype .. ')' end\n"
    "  if last == '&' then return size, ffi.cast(voidp, v) end\n"
    "  return size\n"
    "end\n";

struct lua_datapath {
	struct datapath *dp;
};

struct lua_map {
	struct map_handle h; /* h.fd < 0 once closed */
};

struct lua_events {
	struct events_reader *r;
};

/* --- results ------------------------------------------------------------------- */

static int push_error(lua_State *L, int err, const struct errmsg *e)
{
	lua_pushnil(L);
	lua_pushstring(L, e->text);
	lua_pushinteger(L, err);
	return 3;
}

static int push_plain_error(lua_State *L, int err, const char *text)
{
	lua_pushnil(L);
	lua_pushstring(L, text);
	lua_pushinteger(L, err);
	return 3;
}

static int push_true_or_error(lua_State *L, int err, const struct errmsg *e)
{
	if (err)
		return push_error(L, err, e);
	lua_pushboolean(L, 1);
	return 1;
}

/* __index of a class with fields: the method of that name from the
 * metatable's "methods" table of argument 1, pushed; 0 (nothing pushed to
 * keep) when there is none. */
static int push_method(lua_State *L, const char *name)
{
	lua_getmetatable(L, 1);
	lua_getfield(L, -1, "methods");
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
	lua_remove(L, -2);
	if (!lua_isnil(L, -1))
		return 1;
	lua_pop(L, 1);
	return 0;
}

/* --- bytes from strings and cdata ------------------------------------------------ */

struct bytes {
	const void *ptr;
	size_t len;
};

static int cdata_bytes(lua_State *L, int idx, const char *what, struct bytes *b, struct errmsg *e)
{
	int err = 0;

	lua_pushlightuserdata(L, (void *)&cdata_helper_key);
	lua_rawget(L, LUA_REGISTRYINDEX);
	lua_pushvalue(L, idx);
	if (lua_pcall(L, 1, 2, 0)) {
		err = errmsg_plain(e, -EINVAL, "%s: %s", what, lua_tostring(L, -1));
		lua_pop(L, 1);
		return err;
	}
	if (lua_isnil(L, -2)) {
		err = errmsg_plain(e, -EINVAL, "%s: %s", what, lua_tostring(L, -1));
	} else {
		b->len = (size_t)lua_tointeger(L, -2);
		b->ptr =
		    lua_isnil(L, -1) ? lua_topointer(L, idx) : *(void *const *)lua_topointer(L, -1);
		if (!b->ptr)
			err = errmsg_plain(e, -EINVAL, "%s: a NULL pointer", what);
	}
	lua_pop(L, 2);
	return err;
}

/* A key or value: a Lua string, or FFI cdata (a struct, an array, or a
 * pointer/reference to one). The cdata stays referenced by the caller's
 * stack slot, so the pointer is valid for the call. */
static int arg_bytes(lua_State *L, int idx, const char *what, struct bytes *b, struct errmsg *e)
{
	switch (lua_type(L, idx)) {
	case LUA_TSTRING:
		b->ptr = lua_tolstring(L, idx, &b->len);
		return 0;
	case LUA_TCDATA_LUAJIT:
		return cdata_bytes(L, idx, what, b, e);
	}
	return errmsg_plain(e, -EINVAL, "%s: expected FFI cdata or a string, got %s", what,
			    luaL_typename(L, idx));
}

/* --- map handles ------------------------------------------------------------------ */

static struct lua_map *check_map(lua_State *L)
{
	return luaL_checkudata(L, 1, MAP_MT);
}

static int map_closed(lua_State *L, const struct lua_map *m)
{
	struct errmsg e;

	errmsg_plain(&e, -EBADF, "map %s: handle is closed", m->h.name);
	return push_error(L, -EBADF, &e);
}

static void push_map(lua_State *L, const struct map_handle *h)
{
	struct lua_map *m = lua_newuserdata(L, sizeof(*m));

	m->h = *h;
	luaL_getmetatable(L, MAP_MT);
	lua_setmetatable(L, -2);
}

/* One key (or value) of exactly the map's size. */
static int arg_one(lua_State *L, int idx, const struct lua_map *m, const char *what, size_t size,
		   struct bytes *b, struct errmsg *e)
{
	int err = arg_bytes(L, idx, what, b, e);

	if (err)
		return err;
	if (b->len != size)
		return errmsg_plain(e, -EINVAL, "%s %s: %zu bytes given, %s size is %zu", m->h.name,
				    what, b->len, what, size);
	return 0;
}

/* count entries of size bytes each; count defaults to all the argument
 * holds. */
static int arg_many(lua_State *L, int idx, const struct lua_map *m, const char *what, size_t size,
		    lua_Integer *count, struct bytes *b, struct errmsg *e)
{
	int err = arg_bytes(L, idx, what, b, e);

	if (err)
		return err;
	if (*count < 0 && size && b->len % size == 0)
		*count = (lua_Integer)(b->len / size);
	if (*count < 0 || *count > UINT32_MAX)
		return errmsg_plain(
		    e, -EINVAL,
		    "%s %s: give a count (%zu bytes is not a whole number of %zu-byte entries)",
		    m->h.name, what, b->len, size);
	if (b->len < (size_t)*count * size)
		return errmsg_plain(e, -EINVAL,
				    "%s %s: %zu bytes given for %lld entries of %zu bytes",
				    m->h.name, what, b->len, (long long)*count, size);
	return 0;
}

static __u64 update_flags(lua_State *L, int idx)
{
	static const char *const names[] = {"any", "noexist", "exist", NULL};
	static const __u64 values[] = {BPF_ANY, BPF_NOEXIST, BPF_EXIST};

	return values[luaL_checkoption(L, idx, "any", names)];
}

static int map_update(lua_State *L)
{
	struct lua_map *m = check_map(L);
	__u64 flags = update_flags(L, 4);
	struct bytes key, value;
	struct errmsg e;
	int err;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = arg_one(L, 2, m, "key", m->h.key_size, &key, &e);
	if (!err)
		err = arg_one(L, 3, m, "value", maps_value_bytes(&m->h), &value, &e);
	if (!err)
		err = maps_update(&m->h, key.ptr, value.ptr, flags, &e);
	return push_true_or_error(L, err, &e);
}

static int map_lookup(lua_State *L)
{
	struct lua_map *m = check_map(L);
	size_t size = maps_value_bytes(&m->h);
	struct bytes key;
	struct errmsg e;
	luaL_Buffer buf;
	char *value;
	int err;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = arg_one(L, 2, m, "key", m->h.key_size, &key, &e);
	if (err)
		return push_error(L, err, &e);
	value = lua_newuserdata(L, size + 1); /* scratch, freed by the GC */
	err = maps_lookup(&m->h, key.ptr, value, &e);
	if (err == -ENOENT) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (err)
		return push_error(L, err, &e);
	luaL_buffinit(L, &buf);
	luaL_addlstring(&buf, value, size);
	luaL_pushresult(&buf);
	return 1;
}

static int map_delete(lua_State *L)
{
	struct lua_map *m = check_map(L);
	struct bytes key;
	struct errmsg e;
	int err;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = arg_one(L, 2, m, "key", m->h.key_size, &key, &e);
	if (!err)
		err = maps_delete(&m->h, key.ptr, &e);
	if (err == -ENOENT) {
		lua_pushboolean(L, 0);
		return 1;
	}
	return push_true_or_error(L, err, &e);
}

/* Batches also return how many entries went in before a failure, as a
 * fourth result. */
static int push_count_or_error(lua_State *L, int err, __u32 count, const struct errmsg *e)
{
	if (!err) {
		lua_pushinteger(L, count);
		return 1;
	}
	push_error(L, err, e);
	lua_pushinteger(L, count);
	return 4;
}

static int map_update_batch(lua_State *L)
{
	struct lua_map *m = check_map(L);
	lua_Integer count = luaL_optinteger(L, 4, -1);
	__u64 flags = update_flags(L, 5);
	struct bytes keys, values;
	struct errmsg e;
	__u32 done = 0;
	int err;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = arg_many(L, 2, m, "keys", m->h.key_size, &count, &keys, &e);
	if (!err)
		err = arg_many(L, 3, m, "values", maps_value_bytes(&m->h), &count, &values, &e);
	if (!err)
		err =
		    maps_update_batch(&m->h, keys.ptr, values.ptr, (__u32)count, flags, &done, &e);
	return push_count_or_error(L, err, done, &e);
}

static int map_delete_batch(lua_State *L)
{
	struct lua_map *m = check_map(L);
	lua_Integer count = luaL_optinteger(L, 3, -1);
	struct bytes keys;
	struct errmsg e;
	__u32 deleted = 0;
	int err;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = arg_many(L, 2, m, "keys", m->h.key_size, &count, &keys, &e);
	if (!err)
		err = maps_delete_batch(&m->h, keys.ptr, (__u32)count, &deleted, &e);
	return push_count_or_error(L, err, deleted, &e);
}

static int map_dump(lua_State *L)
{
	struct lua_map *m = check_map(L);
	struct map_dump d;
	struct errmsg e;
	int err;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = maps_dump(&m->h, &d, &e);
	if (err)
		return push_error(L, err, &e);
	lua_createtable(L, (int)d.count, 0);
	for (__u32 i = 0; i < d.count; i++) {
		lua_createtable(L, 0, 2);
		lua_pushlstring(L, (const char *)d.keys + i * d.key_size, d.key_size);
		lua_setfield(L, -2, "key");
		lua_pushlstring(L, (const char *)d.values + i * d.value_bytes, d.value_bytes);
		lua_setfield(L, -2, "value");
		lua_rawseti(L, -2, (int)i + 1);
	}
	maps_dump_free(&d);
	return 1;
}

static int map_clear(lua_State *L)
{
	struct lua_map *m = check_map(L);
	__u32 deleted = 0;
	struct errmsg e;
	int err;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = maps_clear(&m->h, &deleted, &e);
	return push_count_or_error(L, err, deleted, &e);
}

static int map_describe_key(lua_State *L)
{
	struct lua_map *m = check_map(L);
	char text[MAPS_KEY_TEXT_LEN];
	struct bytes key;
	struct errmsg e;
	int err;

	err = arg_one(L, 2, m, "key", m->h.key_size, &key, &e);
	if (err)
		return push_error(L, err, &e);
	maps_describe_key(&m->h, key.ptr, text, sizeof(text));
	lua_pushstring(L, text);
	return 1;
}

static int map_close(lua_State *L)
{
	maps_handle_close(&check_map(L)->h);
	lua_pushboolean(L, 1);
	return 1;
}

static int map_tostring(lua_State *L)
{
	struct lua_map *m = check_map(L);

	lua_pushfstring(L, "balancing.map %s (%s, %d entries max)", m->h.name,
			maps_type_name(&m->h), (int)m->h.max_entries);
	return 1;
}

/* Methods first, then the fields name, type, key_size, value_size,
 * max_entries, id. */
static int map_index(lua_State *L)
{
	struct lua_map *m = check_map(L);
	const char *field = luaL_checkstring(L, 2);

	if (push_method(L, field))
		return 1;
	if (strcmp(field, "name") == 0)
		lua_pushstring(L, m->h.name);
	else if (strcmp(field, "type") == 0)
		lua_pushstring(L, maps_type_name(&m->h));
	else if (strcmp(field, "key_size") == 0)
		lua_pushinteger(L, m->h.key_size);
	else if (strcmp(field, "value_size") == 0)
		lua_pushinteger(L, m->h.value_size);
	else if (strcmp(field, "max_entries") == 0)
		lua_pushinteger(L, m->h.max_entries);
	else if (strcmp(field, "id") == 0)
		lua_pushinteger(L, m->h.id);
	else
		lua_pushnil(L);
	return 1;
}

static const luaL_Reg map_methods[] = {
    {"update", map_update},
    {"lookup", map_lookup},
    {"delete", map_delete},
    {"update_batch", map_update_batch},
    {"delete_batch", map_delete_batch},
    {"dump", map_dump},
    {"clear", map_clear},
    {"describe_key", map_describe_key},
    {"close", map_close},
    {NULL, NULL},
};

static const luaL_Reg map_meta[] = {
    {"__index", map_index},
    {"__gc", map_close},
    {"__tostring", map_tostring},
    {NULL, NULL},
};

/* --- events ----------------------------------------------------------------------- */

static struct lua_events *check_events(lua_State *L)
{
	return luaL_checkudata(L, 1, EVENTS_MT);
}

static void push_events(lua_State *L, struct events_reader *r)
{
	struct lua_events *ev = lua_newuserdata(L, sizeof(*ev));

	ev->r = r;
	luaL_getmetatable(L, EVENTS_MT);
	lua_setmetatable(L, -2);
}

static void set_number(lua_State *L, const char *field, lua_Number n)
{
	lua_pushnumber(L, n);
	lua_setfield(L, -2, field);
}

static void set_bool(lua_State *L, const char *field, bool b)
{
	lua_pushboolean(L, b);
	lua_setfield(L, -2, field);
}

static void set_string(lua_State *L, const char *field, const char *s)
{
	lua_pushstring(L, s);
	lua_setfield(L, -2, field);
}

static const char *protocol_name(__u8 protocol)
{
	if (protocol == BALANCING_PROTO_TCP)
		return "TCP";
	if (protocol == BALANCING_PROTO_UDP)
		return "UDP";
	return "";
}

/* Cookies and IDs are counters far below 2^53: exact as Lua numbers. */
static void push_event(lua_State *L, const struct event_record *ev)
{
	lua_createtable(L, 0, 24);
	set_number(L, "timestamp_ns", (lua_Number)ev->timestamp_ns);
	set_number(L, "time", ev->time);
	set_number(L, "netns_cookie", (lua_Number)ev->netns_cookie);
	set_number(L, "cgroup_id", (lua_Number)ev->cgroup_id);
	set_number(L, "pid", ev->pid);
	set_number(L, "service_id", ev->service_id);
	set_number(L, "protocol", ev->protocol);
	set_string(L, "protocol_name", protocol_name(ev->protocol));
	set_number(L, "nat_type", ev->nat_type);
	set_number(L, "nat_mode", ev->nat_mode);
	set_number(L, "reason", ev->reason);
	set_number(L, "hook", ev->hook);
	set_number(L, "flags", ev->flags);
	set_bool(L, "is_ipv4", ev->is_ipv4);
	set_bool(L, "success", ev->success);
	set_bool(L, "redirect_hit_limit", ev->redirect_hit_limit);
	set_string(L, "original_address", ev->original_address);
	set_number(L, "original_port", ev->original_port);
	set_string(L, "nat_address", ev->nat_address);
	set_number(L, "nat_port", ev->nat_port);
}

static int events_closed(lua_State *L)
{
	return push_plain_error(L, -EBADF, "map_event reader is closed");
}

static int events_poll_lua(lua_State *L)
{
	struct lua_events *ev = check_events(L);
	lua_Integer timeout = luaL_optinteger(L, 2, 0);
	lua_Integer max = luaL_optinteger(L, 3, 0);
	struct event_record rec;
	struct errmsg e;
	int n;

	if (!ev->r)
		return events_closed(L);
	if (timeout < -1 || timeout > INT_MAX || max < 0 || max > UINT32_MAX)
		return push_plain_error(L, -EINVAL,
					"poll map_event: timeout_ms from -1, max from 0");
	n = events_poll(ev->r, (int)timeout, (__u32)max, &e);
	if (n < 0)
		return push_error(L, n, &e);
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		events_get(ev->r, (__u32)i, &rec);
		push_event(L, &rec);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

static int events_fd_lua(lua_State *L)
{
	struct lua_events *ev = check_events(L);

	if (!ev->r)
		return events_closed(L);
	lua_pushinteger(L, events_fd(ev->r));
	return 1;
}

static int events_close_lua(lua_State *L)
{
	struct lua_events *ev = check_events(L);

	events_close(ev->r);
	ev->r = NULL;
	lua_pushboolean(L, 1);
	return 1;
}

static const luaL_Reg events_methods[] = {
    {"poll", events_poll_lua},
    {"fd", events_fd_lua},
    {"close", events_close_lua},
    {NULL, NULL},
};

static const luaL_Reg events_meta[] = {
    {"__gc", events_close_lua},
    {NULL, NULL},
};

/* --- options ------------------------------------------------------------------------ */

/* opts[field], when present, as an integer in [min, max]. */
static int opt_integer(lua_State *L, int idx, const char *field, long long min, long long max,
		       long long *out, struct errmsg *e)
{
	lua_Number n;
	int err = 0;

	lua_getfield(L, idx, field);
	if (lua_isnil(L, -1))
		goto out;
	n = lua_tonumber(L, -1);
	/* range first: converting an out-of-range double is undefined */
	if (lua_type(L, -1) != LUA_TNUMBER || !(n >= (lua_Number)min && n <= (lua_Number)max) ||
	    n != (lua_Number)(long long)n)
		err = errmsg_plain(e, -EINVAL, "%s: expected an integer from %lld to %lld", field,
				   min, max);
	else
		*out = (long long)n;
out:
	lua_pop(L, 1);
	return err;
}

static int opt_u32(lua_State *L, int idx, const char *field, __u32 *out, struct errmsg *e)
{
	long long v = *out;
	int err = opt_integer(L, idx, field, 0, UINT32_MAX, &v, e);

	*out = (__u32)v;
	return err;
}

/* "verbose" | "info" | "error" | "off", or the enum's number. */
static int opt_log_level(lua_State *L, int idx, long long *out, struct errmsg *e)
{
	static const char *const names[] = {"off", "error", "info", "verbose"};
	const char *text;

	lua_getfield(L, idx, "bpf_log_level");
	if (lua_type(L, -1) != LUA_TSTRING) {
		lua_pop(L, 1);
		return opt_integer(L, idx, "bpf_log_level", BPF_LOG_OFF, BPF_LOG_VERBOSE, out, e);
	}
	text = lua_tostring(L, -1);
	for (int i = 0; i < 4; i++) {
		if (strcmp(text, names[i]) == 0) {
			*out = i; /* the order of enum bpf_log_level */
			lua_pop(L, 1);
			return 0;
		}
	}
	errmsg_plain(e, -EINVAL, "bpf_log_level %s: expected verbose, info, error or off", text);
	lua_pop(L, 1);
	return -EINVAL;
}

static int read_config(lua_State *L, int idx, struct loader_config *c, struct errmsg *e)
{
	int err;

	loader_config_init(c);
	err = opt_log_level(L, idx, &c->bpf_log_level, e);
	if (!err)
		err = opt_integer(L, idx, "redirect_qos_limit", 0, UINT32_MAX,
				  &c->redirect_qos_limit, e);
	if (!err)
		err = opt_integer(L, idx, "node_id", 0, UINT32_MAX, &c->node_id, e);
	return err;
}

static int read_sizes(lua_State *L, int idx, struct loader_options *o, struct errmsg *e)
{
	struct {
		const char *field;
		__u32 *value;
	} sizes[] = {
	    {"max_services", &o->max_services},
	    {"max_backends", &o->max_backends},
	    {"max_affinity", &o->max_affinity},
	    {"max_nat_records", &o->max_nat_records},
	    {"max_node_ips", &o->max_node_ips},
	    {"max_node_proxy_ips", &o->max_node_proxy_ips},
	    {"max_redirect_qos", &o->max_redirect_qos},
	    {"max_redirect_loop", &o->max_redirect_loop},
	    {"event_ring_bytes", &o->event_ring_bytes},
	};
	int err;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		err = opt_u32(L, idx, sizes[i].field, sizes[i].value, e);
		if (err)
			return err;
	}
	return 0;
}

/* --- the datapath ---------------------------------------------------------------------- */

static struct lua_datapath *check_datapath(lua_State *L)
{
	return luaL_checkudata(L, 1, DATAPATH_MT);
}

static int datapath_closed(lua_State *L)
{
	return push_plain_error(L, -EBADF, "datapath is closed");
}

static int core_load(lua_State *L)
{
	struct loader_options o;
	struct loader_config c;
	struct lua_datapath *ldp;
	struct errmsg e;
	int err;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "bpffs");
	loader_options_init(&o, lua_tostring(L, -1));
	if (!o.bpffs)
		return push_plain_error(L, -EINVAL, "load: bpffs (the pin directory) is required");
	err = read_sizes(L, 1, &o, &e);
	if (!err)
		err = read_config(L, 1, &c, &e);
	if (err)
		return push_error(L, err, &e);
	ldp = lua_newuserdata(L, sizeof(*ldp));
	ldp->dp = NULL;
	luaL_getmetatable(L, DATAPATH_MT);
	lua_setmetatable(L, -2);
	err = loader_load(&ldp->dp, &o, &c, &e);
	if (err)
		return push_error(L, err, &e);
	return 1;
}

static int dp_attach(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	const char *cgroup = luaL_checkstring(L, 2);
	struct errmsg e;

	if (!ldp->dp)
		return datapath_closed(L);
	return push_true_or_error(L, loader_attach(ldp->dp, cgroup, &e), &e);
}

static int dp_detach(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct errmsg e;

	if (!ldp->dp)
		return datapath_closed(L);
	return push_true_or_error(L, loader_detach(ldp->dp, &e), &e);
}

static int dp_unpin(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct errmsg e;

	if (!ldp->dp)
		return datapath_closed(L);
	return push_true_or_error(L, loader_unpin(ldp->dp, &e), &e);
}

static int dp_close(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);

	loader_close(ldp->dp);
	ldp->dp = NULL;
	lua_pushboolean(L, 1);
	return 1;
}

static int dp_map(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	const char *name = luaL_checkstring(L, 2);
	struct map_handle h;
	struct errmsg e;
	int err;

	if (!ldp->dp)
		return datapath_closed(L);
	err = loader_map(ldp->dp, name, &h, &e);
	if (err)
		return push_error(L, err, &e);
	push_map(L, &h);
	return 1;
}

static int dp_events(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct events_reader *r;
	struct errmsg e;
	int fd, err;

	if (!ldp->dp)
		return datapath_closed(L);
	fd = loader_event_fd(ldp->dp, &e);
	if (fd < 0)
		return push_error(L, fd, &e);
	err = events_open(&r, fd, &e);
	if (err)
		return push_error(L, err, &e);
	push_events(L, r);
	return 1;
}

static int dp_configure(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct loader_config c;
	struct errmsg e;
	int err;

	luaL_checktype(L, 2, LUA_TTABLE);
	if (!ldp->dp)
		return datapath_closed(L);
	err = read_config(L, 2, &c, &e);
	if (!err)
		err = loader_configure(ldp->dp, &c, &e);
	return push_true_or_error(L, err, &e);
}

/* { connect4 = { id =, prog_id =, cgroup_id = }, ... } for the pinned
 * links that exist. */
static int dp_links(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct loader_link_info info[LOADER_HOOK_COUNT];
	struct errmsg e;
	int err;

	if (!ldp->dp)
		return datapath_closed(L);
	err = loader_links(ldp->dp, info, &e);
	if (err)
		return push_error(L, err, &e);
	lua_createtable(L, 0, LOADER_HOOK_COUNT);
	for (int h = 0; h < LOADER_HOOK_COUNT; h++) {
		if (!info[h].present)
			continue;
		lua_createtable(L, 0, 3);
		set_number(L, "id", info[h].id);
		set_number(L, "prog_id", info[h].prog_id);
		set_number(L, "cgroup_id", (lua_Number)info[h].cgroup_id);
		lua_setfield(L, -2, loader_hook_name((enum loader_hook)h));
	}
	return 1;
}

/* { map_service = "reused" | "created", ... } as decided by the load. */
static int dp_map_states(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	int n;

	if (!ldp->dp)
		return datapath_closed(L);
	n = loader_map_count(ldp->dp);
	lua_createtable(L, 0, n);
	for (int i = 0; i < n; i++) {
		lua_pushstring(L, loader_map_reused(ldp->dp, i) ? "reused" : "created");
		lua_setfield(L, -2, loader_map_name(ldp->dp, i));
	}
	return 1;
}

static int dp_index(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	const char *field = luaL_checkstring(L, 2);

	if (push_method(L, field))
		return 1;
	if (strcmp(field, "bpffs") == 0 && ldp->dp)
		lua_pushstring(L, loader_pin_dir(ldp->dp));
	else
		lua_pushnil(L);
	return 1;
}

static const luaL_Reg datapath_methods[] = {
    {"attach", dp_attach},
    {"detach", dp_detach},
    {"unpin", dp_unpin},
    {"close", dp_close},
    {"map", dp_map},
    {"events", dp_events},
    {"configure", dp_configure},
    {"links", dp_links},
    {"map_states", dp_map_states},
    {NULL, NULL},
};

static const luaL_Reg datapath_meta[] = {
    {"__index", dp_index},
    {"__gc", dp_close},
    {NULL, NULL},
};

/* --- module functions --------------------------------------------------------------------- */

/* name -> handle for every pinned map in the directory (links and other
 * objects are skipped). */
static int core_open_maps(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	struct map_handle h;
	struct dirent *ent;
	struct errmsg e;
	int found = 0;
	DIR *d;

	d = opendir(dir);
	if (!d) {
		int err = errmsg_set(&e, -errno, "open pin directory %s", dir);

		return push_error(L, err, &e);
	}
	lua_newtable(L);
	while ((ent = readdir(d))) {
		if (ent->d_name[0] == '.' || maps_open_pinned(&h, dir, ent->d_name, &e))
			continue;
		push_map(L, &h);
		lua_setfield(L, -2, ent->d_name);
		found++;
	}
	closedir(d);
	if (found)
		return 1;
	errmsg_plain(&e, -ENOENT, "%s: no pinned maps", dir);
	return push_error(L, -ENOENT, &e);
}

static int core_open_events(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	struct events_reader *r;
	struct errmsg e;
	int err;

	err = events_open_pinned(&r, dir, &e);
	if (err)
		return push_error(L, err, &e);
	push_events(L, r);
	return 1;
}

static int core_netns_cookie(lua_State *L)
{
	struct errmsg e;
	__u64 cookie;
	int err;

	err = netns_cookie(&cookie, &e);
	if (err)
		return push_error(L, err, &e);
	lua_pushnumber(L, (lua_Number)cookie);
	return 1;
}

static int core_mount_bpffs(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct errmsg e;

	return push_true_or_error(L, bpffs_mount(path, &e), &e);
}

static int core_cgroup2_mount(lua_State *L)
{
	char path[PATH_MAX];
	struct errmsg e;
	int err;

	err = cgroup2_mount_point(path, sizeof(path), &e);
	if (err)
		return push_error(L, err, &e);
	lua_pushstring(L, path);
	return 1;
}

static const luaL_Reg core_functions[] = {
    {"load", core_load},
    {"open_maps", core_open_maps},
    {"open_events", core_open_events},
    {"netns_cookie", core_netns_cookie},
    {"mount_bpffs", core_mount_bpffs},
    {"cgroup2_mount", core_cgroup2_mount},
    {NULL, NULL},
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods,
		      bool index_is_methods)
{
	luaL_newmetatable(L, name);
	luaL_register(L, NULL, meta);
	lua_newtable(L);
	luaL_register(L, NULL, methods);
	if (index_is_methods) {
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, "__index");
	}
	lua_setfield(L, -2, "methods");
	lua_pop(L, 1);
}

static void load_cdata_helper(lua_State *L)
{
	lua_pushlightuserdata(L, (void *)&cdata_helper_key);
	if (luaL_loadstring(L, cdata_helper_source))
		lua_error(L);
	lua_call(L, 0, 1);
	lua_rawset(L, LUA_REGISTRYINDEX);
}

int luaopen_balancing_core(lua_State *L)
{
	load_cdata_helper(L);
	new_class(L, DATAPATH_MT, datapath_meta, datapath_methods, false);
	new_class(L, MAP_MT, map_meta, map_methods, false);
	new_class(L, EVENTS_MT, events_meta, events_methods, true);
	lua_newtable(L);
	luaL_register(L, NULL, core_functions);
	lua_pushinteger(L, BALANCING_ABI_VERSION);
	lua_setfield(L, -2, "ABI_VERSION");
	return 1;
}
