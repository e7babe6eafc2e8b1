// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The map handle class of balancing.core (see lua_map.h). */
#include "lua_map.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>

#include "balancing.h"
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

/* The bytes of a value that must not all be zero for a dump to return it:
 * an array's unused elements exist and read as zeros, and turning each into
 * two Lua strings is most of what dumping a large array costs. */
struct nonzero_field {
	size_t offset;
	size_t size; /* 0: every entry */
};

static bool all_zero(const unsigned char *bytes, size_t size)
{
	for (size_t i = 0; i < size; i++)
		if (bytes[i])
			return false;
	return true;
}

/* dump's optional { nonzero = { offset = O, size = S } }. */
static int arg_nonzero(lua_State *L, int idx, const struct lua_map *m, struct nonzero_field *f,
		       struct errmsg *e)
{
	lua_Integer offset, size;

	*f = (struct nonzero_field){0};
	if (lua_isnoneornil(L, idx))
		return 0;
	luaL_checktype(L, idx, LUA_TTABLE);
	lua_getfield(L, idx, "nonzero");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1))
		return errmsg_plain(e, -EINVAL, "dump %s: nonzero must be a table", m->h.name);
	lua_getfield(L, -1, "offset");
	lua_getfield(L, -2, "size");
	offset = lua_isnumber(L, -2) ? lua_tointeger(L, -2) : -1;
	size = lua_isnumber(L, -1) ? lua_tointeger(L, -1) : -1;
	lua_pop(L, 3);
	if (offset < 0 || size < 1 || (size_t)offset + (size_t)size > maps_value_bytes(&m->h))
		return errmsg_plain(
		    e, -EINVAL,
		    "dump %s: nonzero needs an offset and a size within the %zu-byte value",
		    m->h.name, maps_value_bytes(&m->h));
	f->offset = (size_t)offset;
	f->size = (size_t)size;
	return 0;
}

static int map_dump(lua_State *L)
{
	struct lua_map *m = check_map(L);
	struct nonzero_field nonzero;
	struct map_dump d;
	struct errmsg e;
	int err, n = 0;

	if (m->h.fd < 0)
		return map_closed(L, m);
	err = arg_nonzero(L, 2, m, &nonzero, &e);
	if (!err)
		err = maps_dump(&m->h, &d, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_createtable(L, nonzero.size ? 0 : (int)d.count, 0);
	for (__u32 i = 0; i < d.count; i++) {
		const unsigned char *value = d.values + i * d.value_bytes;

		if (nonzero.size && all_zero(value + nonzero.offset, nonzero.size))
			continue;
		lua_createtable(L, 0, 2);
		lua_pushlstring(L, (const char *)d.keys + i * d.key_size, d.key_size);
		lua_setfield(L, -2, "key");
		lua_pushlstring(L, (const char *)value, d.value_bytes);
		lua_setfield(L, -2, "value");
		lua_rawseti(L, -2, ++n);
	}
	maps_dump_free(&d);
	return 1;
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

/* --- core.configure ---------------------------------------------------------------- */

/* The value on top of the stack: one of names (its index), or a whole
 * number from 0 (maps_configure checks the top of the range). */
static int setting_value(lua_State *L, const char *field, const char *const *names,
			 const char *expected, long long *out, struct errmsg *e)
{
	lua_Number n;

	if (names && lua_type(L, -1) == LUA_TSTRING) {
		for (int i = 0; names[i]; i++) {
			if (strcmp(lua_tostring(L, -1), names[i]) == 0) {
				*out = i;
				return 0;
			}
		}
		return errmsg_plain(e, -EINVAL, "configure %s %s: expected %s", field,
				    lua_tostring(L, -1), expected);
	}
	n = lua_tonumber(L, -1);
	/* range first: converting an out-of-range double is undefined */
	if (lua_type(L, -1) == LUA_TNUMBER && n >= 0 && n <= (lua_Number)UINT32_MAX &&
	    n == (lua_Number)(long long)n) {
		*out = (long long)n;
		return 0;
	}
	if (lua_type(L, -1) == LUA_TNUMBER || lua_type(L, -1) == LUA_TSTRING)
		return errmsg_plain(e, -EINVAL, "configure %s %s: expected %s", field,
				    lua_tostring(L, -1), expected);
	return errmsg_plain(e, -EINVAL, "configure %s: expected %s, got %s", field, expected,
			    luaL_typename(L, -1));
}

/* Every field of the table at idx: bpf_log_level, redirect_qos_limit,
 * events, nothing else. */
static int read_settings(lua_State *L, int idx, struct maps_configure *c, struct errmsg *e)
{
	int err = 0;

	c->bpf_log_level = c->redirect_qos_limit = c->events = -1;
	lua_pushnil(L);
	while (!err && lua_next(L, idx)) {
		const char *field = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";

		if (strcmp(field, "bpf_log_level") == 0)
			err = setting_value(L, field, maps_log_level_names,
					    "verbose, info, error or off (3 to 0)",
					    &c->bpf_log_level, e);
		else if (strcmp(field, "redirect_qos_limit") == 0)
			err = setting_value(L, field, NULL, "0 (none) to 4294967295",
					    &c->redirect_qos_limit, e);
		else if (strcmp(field, "events") == 0)
			err = setting_value(L, field, maps_event_filter_names,
					    "all, failures or off (0 to 2)", &c->events, e);
		else
			err = errmsg_plain(e, -EINVAL,
					   "configure: unknown setting %s (bpf_log_level, "
					   "redirect_qos_limit or events)",
					   lua_type(L, -2) == LUA_TSTRING ? field
									  : luaL_typename(L, -2));
		lua_pop(L, err ? 2 : 1); /* the value; on error the key too */
	}
	return err;
}

int lua_map_configure(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	struct maps_configure c;
	struct map_handle h;
	struct errmsg e;
	int err;

	luaL_checktype(L, 2, LUA_TTABLE);
	err = read_settings(L, 2, &c, &e);
	if (!err)
		err = maps_open_pinned(&h, dir, "map_configure", &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	err = maps_configure(&h, &c, &e);
	maps_handle_close(&h);
	return lua_binding_push_true_or_error(L, err, &e);
}

static const luaL_Reg map_methods[] = {
    {"lookup", map_lookup}, {"dump", map_dump}, {"describe_key", map_describe_key},
    {"close", map_close},   {NULL, NULL},
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
