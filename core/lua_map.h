/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The map handle class of balancing.core (docs/core-api.md, "Map handles"):
 * a userdata owning one map fd, read-only — lookup, dump, describe_key and
 * the fields name, type, key_size, value_size, max_entries, id (entries are
 * written by the applier, lua_apply.c) — and core.configure, the one write
 * outside the applier: map_configure's settings.
 */
#ifndef BALANCING_LUA_MAP_H
#define BALANCING_LUA_MAP_H

#include <lua.h>

#include "maps.h"

/* Registers the metatable balancing.map; once per lua_State, before
 * lua_map_push. */
void lua_map_register(lua_State *L);

/* Pushes a handle that takes over h (its fd closes with map:close() or at
 * garbage collection). */
void lua_map_push(lua_State *L, const struct map_handle *h);

/* core.configure(bpffs, { bpf_log_level =, redirect_qos_limit =, events = })
 * → true: the settings given, written to the pinned map_configure
 * (maps_configure); nil, message, -errno when refused. */
int lua_map_configure(lua_State *L);

#endif /* BALANCING_LUA_MAP_H */
