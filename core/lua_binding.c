// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The pieces the classes of balancing.core share (see lua_binding.h). */
#include "lua_binding.h"

#include <errno.h>

/* --- results ------------------------------------------------------------------- */

int lua_binding_push_error(lua_State *L, int err, const struct errmsg *e)
{
	lua_pushnil(L);
	lua_pushstring(L, e->text);
	lua_pushinteger(L, err);
	return 3;
}

int lua_binding_push_plain_error(lua_State *L, int err, const char *text)
{
	lua_pushnil(L);
	lua_pushstring(L, text);
	lua_pushinteger(L, err);
	return 3;
}

int lua_binding_push_true_or_error(lua_State *L, int err, const struct errmsg *e)
{
	if (err)
		return lua_binding_push_error(L, err, e);
	lua_pushboolean(L, 1);
	return 1;
}

/* --- classes and fields --------------------------------------------------------- */

int lua_binding_push_method(lua_State *L, const char *name)
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

void lua_binding_set_number(lua_State *L, const char *field, lua_Number n)
{
	lua_pushnumber(L, n);
	lua_setfield(L, -2, field);
}

void lua_binding_set_bool(lua_State *L, const char *field, bool b)
{
	lua_pushboolean(L, b);
	lua_setfield(L, -2, field);
}

void lua_binding_set_string(lua_State *L, const char *field, const char *s)
{
	lua_pushstring(L, s);
	lua_setfield(L, -2, field);
}

void lua_binding_new_class(lua_State *L, const char *name, const luaL_Reg *meta,
			   const luaL_Reg *methods, bool index_is_methods)
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

/* --- bytes from strings and cdata -------------------------------------------- */

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

void lua_binding_load_cdata_helper(lua_State *L)
{
	lua_pushlightuserdata(L, (void *)&cdata_helper_key);
	if (luaL_loadstring(L, cdata_helper_source))
		lua_error(L);
	lua_call(L, 0, 1);
	lua_rawset(L, LUA_REGISTRYINDEX);
}

static int cdata_bytes(lua_State *L, int idx, const char *what, struct lua_binding_bytes *b,
		       struct errmsg *e)
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

int lua_binding_arg_bytes(lua_State *L, int idx, const char *what, struct lua_binding_bytes *b,
			  struct errmsg *e)
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
