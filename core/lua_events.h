/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The event reader class of balancing.core (docs/core-api.md, "Events"): a
 * userdata owning one reader of map_event, with poll (events decoded into
 * tables), fd and close.
 */
#ifndef BALANCING_LUA_EVENTS_H
#define BALANCING_LUA_EVENTS_H

#include <lua.h>

#include "events.h"

/* Registers the metatable balancing.events; once per lua_State, before
 * lua_events_push. */
void lua_events_register(lua_State *L);

/* Pushes a reader that takes over r (closed with reader:close() or at
 * garbage collection). */
void lua_events_push(lua_State *L, struct events_reader *r);

#endif /* BALANCING_LUA_EVENTS_H */
