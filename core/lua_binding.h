/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the classes of the Lua module balancing.core (lua_core.c, lua_map.c,
 * lua_events.c) share: results the way docs/core-api.md promises them (the
 * value, or nil, message, -errno), class metatables, table fields, and the
 * bytes of a key or value given as a Lua string or as FFI cdata.
 */
#ifndef BALANCING_LUA_BINDING_H
#define BALANCING_LUA_BINDING_H

#include <stdbool.h>
#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>

#include "errmsg.h"

/* nil, e->text, err: 3 results. */
int lua_binding_push_error(lua_State *L, int err, const struct errmsg *e);

/* nil, text, err, for messages that need no formatting: 3 results. */
int lua_binding_push_plain_error(lua_State *L, int err, const char *text);

/* true (1 result) when err is 0, else as lua_binding_push_error. */
int lua_binding_push_true_or_error(lua_State *L, int err, const struct errmsg *e);

/* For the __index of a class with fields: pushes the method of that name
 * from the "methods" table of argument 1's metatable and returns 1, or
 * returns 0 with nothing pushed when there is none. */
int lua_binding_push_method(lua_State *L, const char *name);

/* t[field] = value for the table t on top of the stack. */
void lua_binding_set_number(lua_State *L, const char *field, lua_Number n);
void lua_binding_set_bool(lua_State *L, const char *field, bool b);
void lua_binding_set_string(lua_State *L, const char *field, const char *s);

/* Registers the metatable name: meta's functions, and the table "methods"
 * holding methods (also __index when index_is_methods; otherwise meta's own
 * __index serves fields and finds methods with lua_binding_push_method). */
void lua_binding_new_class(lua_State *L, const char *name, const luaL_Reg *meta,
			   const luaL_Reg *methods, bool index_is_methods);

/* Compiles the FFI helper that tells C a cdata's size and keeps it in the
 * registry; once per lua_State, before lua_binding_arg_bytes. */
void lua_binding_load_cdata_helper(lua_State *L);

struct lua_binding_bytes {
	const void *ptr;
	size_t len;
};

/* The bytes of argument idx: a Lua string, or FFI cdata (a struct, an
 * array, or a pointer/reference to one). The pointer is valid while the
 * argument stays on the stack. Returns 0 or -EINVAL, what naming the
 * argument in the message. */
int lua_binding_arg_bytes(lua_State *L, int idx, const char *what, struct lua_binding_bytes *b,
			  struct errmsg *e);

#endif /* BALANCING_LUA_BINDING_H */
