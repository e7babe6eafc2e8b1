// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The event reader class of balancing.core (see lua_events.h). */
#include "lua_events.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>

#include <lauxlib.h>

#include "balancing.h"
#include "errmsg.h"
#include "lua_binding.h"

#define EVENTS_MT "balancing.events"

struct lua_events {
	struct events_reader *r;
};

static struct lua_events *check_events(lua_State *L)
{
	return luaL_checkudata(L, 1, EVENTS_MT);
}

void lua_events_push(lua_State *L, struct events_reader *r)
{
	struct lua_events *ev = lua_newuserdata(L, sizeof(*ev));

	ev->r = r;
	luaL_getmetatable(L, EVENTS_MT);
	lua_setmetatable(L, -2);
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
	lua_binding_set_number(L, "timestamp_ns", (lua_Number)ev->timestamp_ns);
	lua_binding_set_number(L, "time", ev->time);
	lua_binding_set_number(L, "netns_cookie", (lua_Number)ev->netns_cookie);
	lua_binding_set_number(L, "cgroup_id", (lua_Number)ev->cgroup_id);
	lua_binding_set_number(L, "pid", ev->pid);
	lua_binding_set_number(L, "service_id", ev->service_id);
	lua_binding_set_number(L, "protocol", ev->protocol);
	lua_binding_set_string(L, "protocol_name", protocol_name(ev->protocol));
	lua_binding_set_number(L, "nat_type", ev->nat_type);
	lua_binding_set_number(L, "nat_mode", ev->nat_mode);
	lua_binding_set_number(L, "reason", ev->reason);
	lua_binding_set_number(L, "hook", ev->hook);
	lua_binding_set_number(L, "flags", ev->flags);
	lua_binding_set_bool(L, "is_ipv4", ev->is_ipv4);
	lua_binding_set_bool(L, "success", ev->success);
	lua_binding_set_bool(L, "redirect_hit_limit", ev->redirect_hit_limit);
	lua_binding_set_string(L, "original_address", ev->original_address);
	lua_binding_set_number(L, "original_port", ev->original_port);
	lua_binding_set_string(L, "nat_address", ev->nat_address);
	lua_binding_set_number(L, "nat_port", ev->nat_port);
}

static int events_closed(lua_State *L)
{
	return lua_binding_push_plain_error(L, -EBADF, "map_event reader is closed");
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
		return lua_binding_push_plain_error(
		    L, -EINVAL, "poll map_event: timeout_ms from -1, max from 0");
	n = events_poll(ev->r, (int)timeout, (__u32)max, &e);
	if (n < 0)
		return lua_binding_push_error(L, n, &e);
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		events_get(ev->r, (__u32)i, &rec);
		push_event(L, &rec);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* reader:discard(max) → how many events were taken and thrown away */
static int events_discard_lua(lua_State *L)
{
	struct lua_events *ev = check_events(L);
	lua_Integer max = luaL_optinteger(L, 2, 0);
	struct errmsg e;
	int n;

	if (!ev->r)
		return events_closed(L);
	if (max < 0 || max > UINT32_MAX)
		return lua_binding_push_plain_error(L, -EINVAL, "discard map_event: max from 0");
	n = events_discard(ev->r, (__u32)max, &e);
	if (n < 0)
		return lua_binding_push_error(L, n, &e);
	lua_pushinteger(L, n);
	return 1;
}

/* reader:backlog() → bytes waiting in the ring, the ring's size */
static int events_backlog_lua(lua_State *L)
{
	struct lua_events *ev = check_events(L);
	__u64 pending, size;

	if (!ev->r)
		return events_closed(L);
	events_backlog(ev->r, &pending, &size);
	lua_pushnumber(L, (lua_Number)pending);
	lua_pushnumber(L, (lua_Number)size);
	return 2;
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
    {"discard", events_discard_lua},
    {"backlog", events_backlog_lua},
    {"fd", events_fd_lua},
    {"close", events_close_lua},
    {NULL, NULL},
};

static const luaL_Reg events_meta[] = {
    {"__gc", events_close_lua},
    {NULL, NULL},
};

void lua_events_register(lua_State *L)
{
	lua_binding_new_class(L, EVENTS_MT, events_meta, events_methods, true);
}
