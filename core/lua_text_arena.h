/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The text arena class of balancing.core (docs/core-api.md, "Text arena"):
 * core.text_arena() → arena; arena:put(text) → ref; arena:get(ref) → text;
 * arena:drop(ref); arena:stats() → { texts, live_bytes, used_bytes,
 * capacity, compactions }. The store keeps its objects' texts in one.
 */
#ifndef BALANCING_LUA_TEXT_ARENA_H
#define BALANCING_LUA_TEXT_ARENA_H

#include <lua.h>

/* Registers the metatable balancing.text_arena; once per lua_State. */
void lua_text_arena_register(lua_State *L);

/* core.text_arena() → arena */
int lua_text_arena_new(lua_State *L);

#endif /* BALANCING_LUA_TEXT_ARENA_H */
