// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The map handle class of balancing.core (see lua_map.h). */
#include "lua_map.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

#include <bpf/bpf.h>

#include "errmsg.h"
#include "lua_binding.h"

#define MAP_MT "balancing.map"

struct lua_map {
	struct map_handle h; /* h.fd < 0 once closed */
};

static struct lua_map *check_map(lua_State *L)
{
	return luaL_checkudata(L, 1, MAP_MT);
}

static int map_closed(lua_State *L, const struct lua_map *m)
{
	struct errmsg e;

	errmsg_plain(&e, -EBADF, "map %s: handle is closed", m->h.name);
	return lua_binding_push_error(L, -EBADF, &e);
}

void lua_map_push(lua_State *L, const struct map_handle *h)
{
	struct lua_map *m = lua_newuserdata(L, sizeof(*m));

	m->h = *h;
	luaL_getmetatable(L, MAP_MT);
	lua_setmetatable(L, -2);
}

/* One key (or value) of exactly the map's size. */
static int arg_one(lua_State *L, int idx, const struct lua_map *m, const char *what, size_t size,
		   struct lua_binding_bytes *b, struct errmsg *e)
{
	int err = lua_binding_arg_bytes(L, idx, what, b, e);

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
		    lua_Integer *count, struct lua_binding_bytes *b, struct errmsg *e)
{
	int err = lua_binding_arg_bytes(L, idx, what, b, e);

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
	struct lua_binding_bytes key, value;
	struct errmsg e;
	int err;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = arg_one(L, 2, m, "key", m->h.key_size, &key, &e);
	if (!err)
		err = arg_one(L, 3, m, "value", maps_value_bytes(&m->h), &value, &e);
	if (!err)
		err = maps_update(&m->h, key.ptr, value.ptr, flags, &e);
	return lua_binding_push_true_or_error(L, err, &e);
}

static int map_lookup(lua_State *L)
{
	struct lua_map *m = check_map(L);
	size_t size = maps_value_bytes(&m->h);
	struct lua_binding_bytes key;
	struct errmsg e;
	char *value;
	int err;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = arg_one(L, 2, m, "key", m->h.key_size, &key, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	value = lua_newuserdata(L, size + 1); /* scratch, freed by the GC */
	err = maps_lookup(&m->h, key.ptr, value, &e);
	if (err == -ENOENT) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_pushlstring(L, value, size);
	return 1;
}

static int map_delete(lua_State *L)
{
	struct lua_map *m = check_map(L);
	struct lua_binding_bytes key;
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
	return lua_binding_push_true_or_error(L, err, &e);
}

/* Batches also return how many entries went in before a failure, as a
 * fourth result. */
static int push_count_or_error(lua_State *L, int err, __u32 count, const struct errmsg *e)
{
	if (!err) {
		lua_pushinteger(L, count);
		return 1;
	}
	lua_binding_push_error(L, err, e);
	lua_pushinteger(L, count);
	return 4;
}

static int map_update_batch(lua_State *L)
{
	struct lua_map *m = check_map(L);
	lua_Integer count = luaL_optinteger(L, 4, -1);
	__u64 flags = update_flags(L, 5);
	struct lua_binding_bytes keys, values;
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
	struct lua_binding_bytes keys;
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
		return lua_binding_push_error(L, err, &e);
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
	struct lua_binding_bytes key;
	struct errmsg e;
	int err;

	err = arg_one(L, 2, m, "key", m->h.key_size, &key, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
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

	if (lua_binding_push_method(L, field))
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

void lua_map_register(lua_State *L)
{
	lua_binding_new_class(L, MAP_MT, map_meta, map_methods, false);
}
