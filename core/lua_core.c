// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The Lua module balancing.core (docs/core-api.md): core.load and its
 * options, the datapath userdata, and the module table. Map handles live in
 * lua_map.c, the event reader in lua_events.c, what they share in
 * lua_binding.c. Every kernel or input failure returns nil, message, -errno;
 * only a wrong argument type raises (the luaL_check* way). No state lives
 * outside the userdata and the registry of the lua_State that loaded the
 * module.
 */
#include <errno.h>
#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "balancing.h"
#include "bpffs.h"
#include "cgroup.h"
#include "errmsg.h"
#include "events.h"
#include "kernel_features.h"
#include "loader.h"
#include "stale_sockets.h"
#include "lua_apply.h"
#include "json_strip.h"
#include "lua_kube.h"
#include "lua_text_arena.h"
#include "lua_binding.h"
#include "lua_events.h"
#include "lua_map.h"
#include "lua_output.h"
#include "maps.h"
#include "netns.h"

int luaopen_balancing_core(lua_State *L);

#define DATAPATH_MT "balancing.datapath"

struct lua_datapath {
	struct datapath *dp;
};

/* --- options ------------------------------------------------------------------------ */

/* opts[field], when present, as an integer in [min, max]. */
static int opt_integer(lua_State *L, int idx, const char *field, long long min, long long max,
		       long long *out, struct errmsg *e)
{
	lua_Number n;
	int err = 0;

	lua_getfield(L, idx, field);
	if (lua_isnil(L, -1))
		goto out;
	n = lua_tonumber(L, -1);
	/* range first: converting an out-of-range double is undefined */
	if (lua_type(L, -1) != LUA_TNUMBER || !(n >= (lua_Number)min && n <= (lua_Number)max) ||
	    n != (lua_Number)(long long)n)
		err = errmsg_plain(e, -EINVAL, "%s: expected an integer from %lld to %lld", field,
				   min, max);
	else
		*out = (long long)n;
out:
	lua_pop(L, 1);
	return err;
}

static int opt_u32(lua_State *L, int idx, const char *field, __u32 *out, struct errmsg *e)
{
	long long v = *out;
	int err = opt_integer(L, idx, field, 0, UINT32_MAX, &v, e);

	*out = (__u32)v;
	return err;
}

/* opts[field], when present, as a boolean. */
static int opt_boolean(lua_State *L, int idx, const char *field, bool *out, struct errmsg *e)
{
	int err = 0;

	lua_getfield(L, idx, field);
	if (lua_isboolean(L, -1))
		*out = lua_toboolean(L, -1);
	else if (!lua_isnil(L, -1))
		err = errmsg_plain(e, -EINVAL, "%s: expected true or false", field);
	lua_pop(L, 1);
	return err;
}

/* An enum field: one of its names (names[value], count of them), or its
 * number; expected lists the names for the message. */
static int opt_enum(lua_State *L, int idx, const char *field, const char *const *names, int count,
		    const char *expected, long long *out, struct errmsg *e)
{
	const char *text;

	lua_getfield(L, idx, field);
	if (lua_type(L, -1) != LUA_TSTRING) {
		lua_pop(L, 1);
		return opt_integer(L, idx, field, 0, count - 1, out, e);
	}
	text = lua_tostring(L, -1);
	for (int i = 0; i < count; i++) {
		if (strcmp(text, names[i]) == 0) {
			*out = i;
			lua_pop(L, 1);
			return 0;
		}
	}
	errmsg_plain(e, -EINVAL, "%s %s: expected %s", field, text, expected);
	lua_pop(L, 1);
	return -EINVAL;
}

static const char *const log_level_names[] = {
    [BPF_LOG_OFF] = "off",
    [BPF_LOG_ERROR] = "error",
    [BPF_LOG_INFO] = "info",
    [BPF_LOG_VERBOSE] = "verbose",
};

static const char *const event_filter_names[] = {
    [EVENTS_ALL] = "all",
    [EVENTS_FAILURES] = "failures",
    [EVENTS_OFF] = "off",
};

static int read_config(lua_State *L, int idx, struct loader_config *c, struct errmsg *e)
{
	int err;

	loader_config_init(c);
	err = opt_enum(L, idx, "bpf_log_level", log_level_names, BPF_LOG_VERBOSE + 1,
		       "verbose, info, error or off", &c->bpf_log_level, e);
	if (!err)
		err = opt_enum(L, idx, "events", event_filter_names, EVENTS_OFF + 1,
			       "all, failures or off", &c->events, e);
	if (!err)
		err = opt_integer(L, idx, "redirect_qos_limit", 0, UINT32_MAX,
				  &c->redirect_qos_limit, e);
	if (!err)
		err = opt_integer(L, idx, "node_id", 0, UINT32_MAX, &c->node_id, e);
	return err;
}

static int read_sizes(lua_State *L, int idx, struct loader_options *o, struct errmsg *e)
{
	struct {
		const char *field;
		__u32 *value;
	} sizes[] = {
	    {"max_services", &o->max_services},
	    {"max_backends", &o->max_backends},
	    {"max_affinity", &o->max_affinity},
	    {"max_nat_records", &o->max_nat_records},
	    {"max_tcp_nat_records", &o->max_tcp_nat_records},
	    {"max_node_ips", &o->max_node_ips},
	    {"max_node_proxy_ips", &o->max_node_proxy_ips},
	    {"max_redirect_qos", &o->max_redirect_qos},
	    {"max_redirect_loop", &o->max_redirect_loop},
	    {"max_translation_counters", &o->max_translation_counters},
	    {"event_ring_bytes", &o->event_ring_bytes},
	};
	int err;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		err = opt_u32(L, idx, sizes[i].field, sizes[i].value, e);
		if (err)
			return err;
	}
	return 0;
}

/* --- the datapath ---------------------------------------------------------------------- */

static struct lua_datapath *check_datapath(lua_State *L)
{
	return luaL_checkudata(L, 1, DATAPATH_MT);
}

static int datapath_closed(lua_State *L)
{
	return lua_binding_push_plain_error(L, -EBADF, "datapath is closed");
}

static int core_load(lua_State *L)
{
	struct loader_options o;
	struct loader_config c;
	struct lua_datapath *ldp;
	struct errmsg e;
	int err;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "bpffs");
	loader_options_init(&o, lua_tostring(L, -1));
	if (!o.bpffs)
		return lua_binding_push_plain_error(L, -EINVAL,
						    "load: bpffs (the pin directory) is required");
	err = read_sizes(L, 1, &o, &e);
	if (!err)
		err = opt_boolean(L, 1, "count_translations", &o.count_translations, &e);
	if (!err)
		err = read_config(L, 1, &c, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	ldp = lua_newuserdata(L, sizeof(*ldp));
	ldp->dp = NULL;
	luaL_getmetatable(L, DATAPATH_MT);
	lua_setmetatable(L, -2);
	err = loader_load(&ldp->dp, &o, &c, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	return 1;
}

static int dp_attach(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	const char *cgroup = luaL_checkstring(L, 2);
	struct errmsg e;

	if (!ldp->dp)
		return datapath_closed(L);
	return lua_binding_push_true_or_error(L, loader_attach(ldp->dp, cgroup, &e), &e);
}

static int dp_detach(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct errmsg e;

	if (!ldp->dp)
		return datapath_closed(L);
	return lua_binding_push_true_or_error(L, loader_detach(ldp->dp, &e), &e);
}

static int dp_unpin(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct errmsg e;

	if (!ldp->dp)
		return datapath_closed(L);
	return lua_binding_push_true_or_error(L, loader_unpin(ldp->dp, &e), &e);
}

static int dp_close(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);

	loader_close(ldp->dp);
	ldp->dp = NULL;
	lua_pushboolean(L, 1);
	return 1;
}

static int dp_map(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	const char *name = luaL_checkstring(L, 2);
	struct map_handle h;
	struct errmsg e;
	int err;

	if (!ldp->dp)
		return datapath_closed(L);
	err = loader_map(ldp->dp, name, &h, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_map_push(L, &h);
	return 1;
}

static int dp_events(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct events_reader *r;
	struct errmsg e;
	int fd, err;

	if (!ldp->dp)
		return datapath_closed(L);
	fd = loader_event_fd(ldp->dp, &e);
	if (fd < 0)
		return lua_binding_push_error(L, fd, &e);
	err = events_open(&r, fd, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_events_push(L, r);
	return 1;
}

static int dp_configure(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct loader_config c;
	struct errmsg e;
	int err;

	luaL_checktype(L, 2, LUA_TTABLE);
	if (!ldp->dp)
		return datapath_closed(L);
	err = read_config(L, 2, &c, &e);
	if (!err)
		err = loader_configure(ldp->dp, &c, &e);
	return lua_binding_push_true_or_error(L, err, &e);
}

/* { connect4 = { id =, prog_id =, cgroup_id = }, ... } for the pinned
 * links that exist. */
static int dp_links(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct loader_link_info info[LOADER_HOOK_COUNT];
	struct errmsg e;
	int err;

	if (!ldp->dp)
		return datapath_closed(L);
	err = loader_links(ldp->dp, info, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_createtable(L, 0, LOADER_HOOK_COUNT);
	for (int h = 0; h < LOADER_HOOK_COUNT; h++) {
		if (!info[h].present)
			continue;
		lua_createtable(L, 0, 3);
		lua_binding_set_number(L, "id", info[h].id);
		lua_binding_set_number(L, "prog_id", info[h].prog_id);
		lua_binding_set_number(L, "cgroup_id", (lua_Number)info[h].cgroup_id);
		lua_setfield(L, -2, loader_hook_name((enum loader_hook)h));
	}
	return 1;
}

/* { map_service = "reused" | "created", ... } as decided by the load. */
static int dp_map_states(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	int n;

	if (!ldp->dp)
		return datapath_closed(L);
	n = loader_map_count(ldp->dp);
	lua_createtable(L, 0, n);
	for (int i = 0; i < n; i++) {
		lua_pushstring(L, loader_map_reused(ldp->dp, i) ? "reused" : "created");
		lua_setfield(L, -2, loader_map_name(ldp->dp, i));
	}
	return 1;
}

/* datapath:destroy_stale_sockets({ pair, ... }[, cgroup]) → sockets
 * destroyed: the pairs are applier:apply's stats.departed (struct
 * stale_backend_key bytes); the iterator runs in the caller's network
 * namespace and in those of the processes of the cgroup subtree given. */
static int dp_destroy_stale_sockets(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	struct stale_backend_key *pairs;
	size_t count, len;
	__u64 destroyed = 0;
	struct errmsg e;
	int err;

	const char *cgroup = luaL_optstring(L, 3, NULL);

	luaL_checktype(L, 2, LUA_TTABLE);
	if (!ldp->dp)
		return datapath_closed(L);
	count = lua_objlen(L, 2);
	pairs = lua_newuserdata(L, (count ? count : 1) * sizeof(*pairs)); /* freed by the GC */
	for (size_t i = 0; i < count; i++) {
		const char *bytes;

		lua_rawgeti(L, 2, (int)i + 1);
		bytes = lua_tolstring(L, -1, &len);
		if (!bytes || len != sizeof(*pairs)) {
			errmsg_plain(&e, -EINVAL,
				     "destroy_stale_sockets: pair %zu is not %zu bytes", i + 1,
				     sizeof(*pairs));
			return lua_binding_push_error(L, -EINVAL, &e);
		}
		memcpy(&pairs[i], bytes, sizeof(*pairs));
		lua_pop(L, 1);
	}
	err = stale_sockets_destroy(ldp->dp, pairs, count, cgroup, &destroyed, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_pushnumber(L, (lua_Number)destroyed);
	return 1;
}

static int dp_index(lua_State *L)
{
	struct lua_datapath *ldp = check_datapath(L);
	const char *field = luaL_checkstring(L, 2);

	if (lua_binding_push_method(L, field))
		return 1;
	if (strcmp(field, "bpffs") == 0 && ldp->dp)
		lua_pushstring(L, loader_pin_dir(ldp->dp));
	else
		lua_pushnil(L);
	return 1;
}

static const luaL_Reg datapath_methods[] = {
    {"attach", dp_attach},
    {"detach", dp_detach},
    {"unpin", dp_unpin},
    {"close", dp_close},
    {"map", dp_map},
    {"events", dp_events},
    {"configure", dp_configure},
    {"links", dp_links},
    {"map_states", dp_map_states},
    {"destroy_stale_sockets", dp_destroy_stale_sockets},
    {NULL, NULL},
};

static const luaL_Reg datapath_meta[] = {
    {"__index", dp_index},
    {"__gc", dp_close},
    {NULL, NULL},
};

/* --- module functions --------------------------------------------------------------------- */

/* name -> handle for every pinned map in the directory (links and other
 * objects are skipped). */
static int core_open_maps(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	struct map_handle h;
	struct dirent *ent;
	struct errmsg e;
	int found = 0;
	DIR *d;

	d = opendir(dir);
	if (!d) {
		int err = errmsg_set(&e, -errno, "open pin directory %s", dir);

		return lua_binding_push_error(L, err, &e);
	}
	lua_newtable(L);
	while ((ent = readdir(d))) {
		if (ent->d_name[0] == '.' || maps_open_pinned(&h, dir, ent->d_name, &e))
			continue;
		lua_map_push(L, &h);
		lua_setfield(L, -2, ent->d_name);
		found++;
	}
	closedir(d);
	if (found)
		return 1;
	errmsg_plain(&e, -ENOENT, "%s: no pinned maps", dir);
	return lua_binding_push_error(L, -ENOENT, &e);
}

static int core_open_events(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	struct events_reader *r;
	struct errmsg e;
	int err;

	err = events_open_pinned(&r, dir, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_events_push(L, r);
	return 1;
}

static int core_netns_cookie(lua_State *L)
{
	struct errmsg e;
	__u64 cookie;
	int err;

	err = netns_cookie(&cookie, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_pushnumber(L, (lua_Number)cookie);
	return 1;
}

static int core_mount_bpffs(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct errmsg e;

	return lua_binding_push_true_or_error(L, bpffs_mount(path, &e), &e);
}

static int core_cgroup2_mount(lua_State *L)
{
	char path[PATH_MAX];
	struct errmsg e;
	int err;

	err = cgroup2_mount_point(path, sizeof(path), &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_pushstring(L, path);
	return 1;
}

/* {key = present} for each feature, and the missing ones' names (nil when
 * none): the agent's start-up check (kernel_features.h). */
static int core_features(lua_State *L)
{
	char missing[256];
	struct kernel_features f;

	kernel_features_probe(&f);
	lua_newtable(L);
	for (int i = 0; i < KERNEL_FEATURE_COUNT; i++)
		lua_binding_set_bool(L, kernel_feature_key(i), f.present[i]);
	if (kernel_features_missing_text(&f, missing, sizeof(missing)))
		lua_pushstring(L, missing);
	else
		lua_pushnil(L);
	return 2;
}

/* true, mounted (whether this call mounted cgroup2 there). */
static int core_ensure_cgroup2(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	bool mounted;
	struct errmsg e;
	int err;

	err = cgroup2_ensure_mounted(path, &mounted, &e);
	if (err)
		return lua_binding_push_error(L, err, &e);
	lua_pushboolean(L, 1);
	lua_pushboolean(L, mounted);
	return 2;
}

/* core.json_strip(text) → text without the members the agent never reads
 * (json_strip.h), as its API client hands pages and watch lines on. */
/* core.trim_heap(): the free memory of malloc's heap (the C side's: the
 * API client's page buffers, the applier's shadow) given back to the
 * system — after a phase that freed much, as the agent's first sync. A
 * no-op without glibc. */
static int core_trim_heap(lua_State *L)
{
	(void)L;
#ifdef __GLIBC__
	malloc_trim(0);
#endif
	return 0;
}

static int core_json_strip(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	char *copy = malloc(len ? len : 1);

	if (!copy)
		return luaL_error(L, "json_strip: out of memory");
	memcpy(copy, text, len);
	len = json_strip_members(copy, len, JSON_STRIP_UNREAD);
	lua_pushlstring(L, copy, len);
	free(copy);
	return 1;
}

static const luaL_Reg core_functions[] = {
    {"load", core_load},
    {"applier", lua_apply_new},
    {"kube_client", lua_kube_new},
    {"json_strip", core_json_strip},
    {"trim_heap", core_trim_heap},
    {"text_arena", lua_text_arena_new},
    {"open_maps", core_open_maps},
    {"configure", lua_map_configure},
    {"open_events", core_open_events},
    {"netns_cookie", core_netns_cookie},
    {"mount_bpffs", core_mount_bpffs},
    {"cgroup2_mount", core_cgroup2_mount},
    {"features", core_features},
    {"ensure_cgroup2", core_ensure_cgroup2},
    {"output_write", lua_output_write},
    {"output_log", lua_output_log},
    {"output_stats", lua_output_stats},
    {"output_open", lua_output_open},
    {NULL, NULL},
};

int luaopen_balancing_core(lua_State *L)
{
	lua_binding_load_cdata_helper(L);
	lua_binding_new_class(L, DATAPATH_MT, datapath_meta, datapath_methods, false);
	lua_map_register(L);
	lua_apply_register(L);
	lua_kube_register(L);
	lua_text_arena_register(L);
	lua_events_register(L);
	lua_output_register(L);
	lua_newtable(L);
	luaL_register(L, NULL, core_functions);
	lua_pushinteger(L, BALANCING_ABI_VERSION);
	lua_setfield(L, -2, "ABI_VERSION");
	lua_pushstring(L, BALANCING_VERSION);
	lua_setfield(L, -2, "VERSION");
	return 1;
}
