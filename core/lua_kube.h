/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * balancing.core.kube_client(access): the agent's Kubernetes API client
 * (core/kube_http.c, core/kube_watch.c) on the default libev loop, for Lua
 * (balancing.kube_source wires it to the store). docs/core-api.md has the
 * methods.
 */
#ifndef BALANCING_LUA_KUBE_H
#define BALANCING_LUA_KUBE_H

#include <lua.h>

int lua_kube_new(lua_State *L);
void lua_kube_register(lua_State *L);

#endif /* BALANCING_LUA_KUBE_H */
