/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include "lua_text_arena.h"

#include <lauxlib.h>

#include "lua_binding.h"
#include "text_arena.h"

#define TEXT_ARENA_MT "balancing.text_arena"

struct lua_text_arena {
	struct text_arena *arena; /* NULL once collected */
};

static struct text_arena *check_arena(lua_State *L)
{
	struct lua_text_arena *la = luaL_checkudata(L, 1, TEXT_ARENA_MT);

	if (!la->arena)
		luaL_error(L, "text arena is freed");
	return la->arena;
}

/* A ref argument: a positive integer below 2^32, else 0 (no text). */
static uint32_t check_ref(lua_State *L, int idx)
{
	lua_Number n = luaL_checknumber(L, idx);

	if (n < 1 || n > UINT32_MAX || n != (lua_Number)(uint32_t)n)
		return 0;
	return (uint32_t)n;
}

/* core.text_arena([dictionary]) → an arena; with a dictionary, one that
 * holds its texts deflated against it (text_codec.h) */
int lua_text_arena_new(lua_State *L)
{
	size_t dictionary_len = 0;
	const char *dictionary = luaL_optlstring(L, 1, NULL, &dictionary_len);
	struct lua_text_arena *la = lua_newuserdata(L, sizeof(*la));

	la->arena = NULL;
	luaL_getmetatable(L, TEXT_ARENA_MT);
	lua_setmetatable(L, -2);
	la->arena = text_arena_new(dictionary, dictionary_len);
	if (!la->arena)
		return luaL_error(L, "text_arena: out of memory");
	return 1;
}

/* arena:put(text) → ref (an error when out of memory: the caller cannot
 * keep its object otherwise) */
static int arena_put(lua_State *L)
{
	struct text_arena *arena = check_arena(L);
	size_t len;
	const char *text = luaL_checklstring(L, 2, &len);
	uint32_t ref = text_arena_put(arena, text, len);

	if (!ref)
		return luaL_error(L, "text_arena: out of memory for a text of %d bytes", (int)len);
	lua_pushnumber(L, ref);
	return 1;
}

/* arena:get(ref) → text | nil (no such text) | error (a held text that does
 * not inflate: the arena is broken, which the caller must not take for a
 * missing object) */
static int arena_get(lua_State *L)
{
	struct text_arena *arena = check_arena(L);
	size_t len;
	uint32_t ref = check_ref(L, 2);
	const char *text = text_arena_get(arena, ref, &len);

	if (!text) {
		if (text_arena_holds(arena, ref))
			return luaL_error(L, "text_arena: text %d does not inflate", (int)ref);
		return 0;
	}
	lua_pushlstring(L, text, len);
	return 1;
}

/* arena:drop(ref) → true | false (no such text) */
static int arena_drop(lua_State *L)
{
	struct text_arena *arena = check_arena(L);

	lua_pushboolean(L, text_arena_drop(arena, check_ref(L, 2)) == 0);
	return 1;
}

static void set_number(lua_State *L, const char *name, size_t value)
{
	lua_pushnumber(L, (lua_Number)value);
	lua_setfield(L, -2, name);
}

static int arena_stats(lua_State *L)
{
	struct text_arena_stats stats;

	text_arena_stats(check_arena(L), &stats);
	lua_createtable(L, 0, 6);
	set_number(L, "texts", stats.texts);
	set_number(L, "live_bytes", stats.live_bytes);
	set_number(L, "text_bytes", stats.text_bytes);
	set_number(L, "used_bytes", stats.used_bytes);
	set_number(L, "capacity", stats.capacity);
	set_number(L, "compactions", stats.compactions);
	return 1;
}

static int arena_gc(lua_State *L)
{
	struct lua_text_arena *la = luaL_checkudata(L, 1, TEXT_ARENA_MT);

	text_arena_free(la->arena);
	la->arena = NULL;
	return 0;
}

static const luaL_Reg arena_methods[] = {
    {"put", arena_put},
    {"get", arena_get},
    {"drop", arena_drop},
    {"stats", arena_stats},
    {NULL, NULL},
};

static const luaL_Reg arena_meta[] = {
    {"__gc", arena_gc},
    {NULL, NULL},
};

void lua_text_arena_register(lua_State *L)
{
	lua_binding_new_class(L, TEXT_ARENA_MT, arena_meta, arena_methods, true);
}
