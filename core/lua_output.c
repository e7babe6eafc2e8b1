/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* balancing.core's view of output.h (see lua_output.h). */
#include "lua_output.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <lauxlib.h>

#include "lua_binding.h"
#include "output.h"

#define OUTPUT_MT "balancing.output"

struct lua_output {
	struct output out;
	bool open;
};

static struct output *check_output(lua_State *L)
{
	struct lua_output *lo = luaL_checkudata(L, 1, OUTPUT_MT);

	if (!lo->open)
		luaL_error(L, "output: closed");
	return &lo->out;
}

static int push_write(lua_State *L, struct output *o, int idx)
{
	size_t len, refused, taken;
	const char *text = luaL_checklstring(L, idx, &len);

	taken = output_write_lines(o, text, len, &refused);
	lua_pushnumber(L, (lua_Number)taken);
	lua_pushnumber(L, (lua_Number)refused);
	return 2;
}

static int push_log(lua_State *L, struct output *o, int idx)
{
	size_t len;
	const char *line = luaL_checklstring(L, idx, &len);

	lua_pushboolean(L, output_write_log_line(o, line, len));
	return 1;
}

static int push_stats(lua_State *L, struct output *o)
{
	lua_createtable(L, 0, 4);
	lua_binding_set_number(L, "log_lines_dropped", (lua_Number)o->log_lines_dropped);
	lua_binding_set_number(L, "buffered", (lua_Number)o->len);
	lua_binding_set_number(L, "capacity", (lua_Number)o->capacity);
	if (o->error)
		lua_binding_set_string(L, "error", strerror(-o->error));
	return 1;
}

/* The agent's output, or NULL with nil pushed: outside the running agent
 * (plan, the specs) there is none, and the caller writes as it likes. */
static struct output *agent_output_or_nil(lua_State *L)
{
	struct output *o = output_agent();

	if (!o)
		lua_pushnil(L);
	return o;
}

int lua_output_write(lua_State *L)
{
	struct output *o = agent_output_or_nil(L);

	return o ? push_write(L, o, 1) : 1;
}

int lua_output_log(lua_State *L)
{
	struct output *o = agent_output_or_nil(L);

	return o ? push_log(L, o, 1) : 1;
}

int lua_output_stats(lua_State *L)
{
	struct output *o = agent_output_or_nil(L);

	return o ? push_stats(L, o) : 1;
}

/* core.output_open(fd, capacity): the fd stays the caller's (not closed). */
int lua_output_open(lua_State *L)
{
	lua_Integer fd = luaL_checkinteger(L, 1);
	lua_Number capacity = luaL_checknumber(L, 2);
	struct lua_output *lo;
	int err;

	if (fd < 0 || fd > INT_MAX || !(capacity >= 1 && capacity <= (lua_Number)(1u << 30)))
		return lua_binding_push_plain_error(L, -EINVAL,
						    "output_open: fd >= 0, capacity 1 .. 2^30");
	lo = lua_newuserdata(L, sizeof(*lo));
	memset(lo, 0, sizeof(*lo));
	luaL_getmetatable(L, OUTPUT_MT);
	lua_setmetatable(L, -2);
	err = output_open(&lo->out, (int)fd, (size_t)capacity);
	if (err)
		return lua_binding_push_plain_error(L, err, strerror(-err));
	lo->open = true;
	return 1;
}

static int method_write(lua_State *L)
{
	return push_write(L, check_output(L), 2);
}

static int method_log(lua_State *L)
{
	return push_log(L, check_output(L), 2);
}

/* true, or nil, message, errno */
static int push_result(lua_State *L, int err)
{
	if (err)
		return lua_binding_push_plain_error(L, err, strerror(-err));
	lua_pushboolean(L, 1);
	return 1;
}

static int method_pump(lua_State *L)
{
	return push_result(L, output_pump(check_output(L)));
}

static int method_flush(lua_State *L)
{
	struct output *o = check_output(L);

	return push_result(L, output_flush(o, (int)luaL_optinteger(L, 2, 0)));
}

static int method_stats(lua_State *L)
{
	return push_stats(L, check_output(L));
}

static int method_close(lua_State *L)
{
	struct lua_output *lo = luaL_checkudata(L, 1, OUTPUT_MT);

	if (lo->open)
		output_close(&lo->out);
	lo->open = false;
	return 0;
}

static const luaL_Reg output_methods[] = {
    {"write", method_write},
    {"log", method_log},
    {"pump", method_pump},
    {"flush", method_flush},
    {"stats", method_stats},
    {"close", method_close},
    {NULL, NULL},
};

static const luaL_Reg output_meta[] = {
    {"__gc", method_close},
    {NULL, NULL},
};

void lua_output_register(lua_State *L)
{
	lua_binding_new_class(L, OUTPUT_MT, output_meta, output_methods, true);
}
