/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The applier class of balancing.core (docs/core-api.md, "Applying
 * entries"): core.applier(pin_dir or datapath), applier:apply(owner,
 * entries), applier:forget(owner), applier:shadow([owner]), applier:read_back(),
 * applier:sweep(), applier:close().
 */
#ifndef BALANCING_LUA_APPLY_H
#define BALANCING_LUA_APPLY_H

#include <lua.h>

/* Registers the metatable balancing.applier; once per lua_State. */
void lua_apply_register(lua_State *L);

/* core.applier(pin_dir | {bpffs = pin_dir}) → applier | nil, err, -errno */
int lua_apply_new(lua_State *L);

#endif /* BALANCING_LUA_APPLY_H */
