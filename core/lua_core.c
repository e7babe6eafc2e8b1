/* The Lua module balancing.core (placeholder: issue 2 fills it in). */
#include <lua.h>
#include <lauxlib.h>

int luaopen_balancing_core(lua_State *L);

int luaopen_balancing_core(lua_State *L)
{
	lua_newtable(L);
	return 1;
}
