/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The output of output.h in balancing.core (docs/core-api.md, "Output"):
 * the running agent's stdout for its Lua side, and an output of its own on
 * any fd for the specs.
 *
 *   core.output_write(text) → lines taken, lines refused   (nil: no agent output)
 *   core.output_log(line)   → true | false (refused, counted) (nil: no agent output)
 *   core.output_stats()     → { log_lines_dropped, buffered, capacity } | nil
 *   core.output_open(fd, capacity) → out; out:write(text), out:log(line),
 *     out:pump(), out:flush(ms), out:stats(), out:close()
 */
#ifndef BALANCING_LUA_OUTPUT_H
#define BALANCING_LUA_OUTPUT_H

#include <lua.h>

/* Registers the metatable balancing.output; once per lua_State. */
void lua_output_register(lua_State *L);

int lua_output_write(lua_State *L);
int lua_output_log(lua_State *L);
int lua_output_stats(lua_State *L);
int lua_output_open(lua_State *L);

#endif /* BALANCING_LUA_OUTPUT_H */
