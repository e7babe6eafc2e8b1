/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The LuaJIT state of the binaries (see lua_host.h). */
#include "lua_host.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "log.h"

#ifndef BALANCING_LUA_BUILTIN_DIR
#error "BALANCING_LUA_BUILTIN_DIR must be defined by the build"
#endif
#ifndef BALANCING_HEADER_PATH
#error "BALANCING_HEADER_PATH must be defined by the build"
#endif
#ifndef BALANCING_INSTALL_DATA_REL
#error "BALANCING_INSTALL_DATA_REL must be defined by the build"
#endif

int luaopen_balancing_core(lua_State *L);

/* A directory goes into package.path as "<dir>/?.lua": the path syntax has no
 * escapes, so ';' or '?' in the name would silently split or template it. */
static int check_dir(const char *what, const char *dir)
{
	if (!dir[0] || strpbrk(dir, ";?")) {
		log_line(LOG_LEVEL_ERROR, "unusable Lua directory", "what", what, "path", dir,
			 "reason", dir[0] ? "contains ';' or '?'" : "empty", NULL);
		return -EINVAL;
	}
	return 0;
}

static int copy_dir(char *out, size_t size, const char *what, const char *dir)
{
	size_t len = strlen(dir);
	int err;

	/* a trailing slash would give "dir//?.lua": harmless but ugly in errors */
	while (len > 1 && dir[len - 1] == '/')
		len--;
	if (len >= size) {
		log_line(LOG_LEVEL_ERROR, "unusable Lua directory", "what", what, "path", dir,
			 "reason", "too long", NULL);
		return -ENAMETOOLONG;
	}
	memcpy(out, dir, len);
	out[len] = '\0';
	err = check_dir(what, out);
	return err;
}

/*
 * package.<field> = the given directories' templates, then the current value
 * without its "./" entries: an agent running as root must not load modules
 * from whatever directory it was started in.
 */
static void set_search_path(lua_State *L, const char *field, const char *dirs[2],
			    const char *templates)
{
	luaL_Buffer b;
	const char *current, *entry, *end;
	int d;

	lua_getglobal(L, "package");
	lua_getfield(L, -1, field);
	current = lua_tostring(L, -1);

	luaL_buffinit(L, &b);
	for (d = 0; d < 2 && templates; d++) {
		const char *t = templates;
		while (*t) {
			const char *stop = strchr(t, ';');
			size_t n = stop ? (size_t)(stop - t) : strlen(t);
			luaL_addstring(&b, dirs[d]);
			luaL_addlstring(&b, t, n);
			luaL_addchar(&b, ';');
			t += n;
			if (*t == ';')
				t++;
		}
	}
	for (entry = current ? current : ""; *entry; entry = *end ? end + 1 : end) {
		end = strchr(entry, ';');
		if (!end)
			end = entry + strlen(entry);
		if (end == entry || strncmp(entry, "./", 2) == 0)
			continue;
		luaL_addlstring(&b, entry, (size_t)(end - entry));
		luaL_addchar(&b, ';');
	}
	luaL_pushresult(&b);
	lua_setfield(L, -3, field);
	lua_pop(L, 2);
}

/*
 * The data directory of an installed binary: <its bin dir>/BALANCING_INSTALL_DATA_REL
 * (share/balancing of the same prefix), when it holds the built-in modules and
 * the header. Found from /proc/self/exe rather than compiled in, because
 * `cmake --install --prefix DIR` chooses the prefix after the build. A binary
 * in the build tree has no such directory and keeps the source tree's paths,
 * so the specs run the modules they edit. Returns 0 or -ENOENT.
 */
static int installed_data_dir(char *out, size_t size)
{
	char exe[PATH_MAX];
	char probe[PATH_MAX + 64];
	struct stat st;
	ssize_t n;

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -ENOENT;
	exe[n] = '\0';
	if ((size_t)snprintf(out, size, "%s/%s", dirname(exe), BALANCING_INSTALL_DATA_REL) >= size)
		return -ENOENT;
	snprintf(probe, sizeof(probe), "%s/lua/balancing", out);
	if (stat(probe, &st) != 0 || !S_ISDIR(st.st_mode))
		return -ENOENT;
	snprintf(probe, sizeof(probe), "%s/balancing.h", out);
	if (access(probe, R_OK) != 0)
		return -ENOENT;
	return 0;
}

int lua_host_open(struct lua_host *host, const char *program, const char *override_dir)
{
	char data_dir[PATH_MAX];
	char installed_lua[PATH_MAX + 8];
	char installed_header[PATH_MAX + 16];
	const char *header = BALANCING_HEADER_PATH;
	const char *default_builtin = BALANCING_LUA_BUILTIN_DIR;
	const char *builtin_dir = getenv("BALANCING_LUA_BUILTIN_DIR");
	const char *dirs[2];
	int err;

	memset(host, 0, sizeof(*host));
	if (!override_dir)
		override_dir = getenv("BALANCING_LUA_DIR");
	if (!override_dir || !override_dir[0])
		override_dir = LUA_HOST_DEFAULT_OVERRIDE_DIR;
	if (installed_data_dir(data_dir, sizeof(data_dir)) == 0) {
		snprintf(installed_lua, sizeof(installed_lua), "%s/lua", data_dir);
		snprintf(installed_header, sizeof(installed_header), "%s/balancing.h", data_dir);
		default_builtin = installed_lua;
		header = installed_header;
	}
	if (!builtin_dir || !builtin_dir[0])
		builtin_dir = default_builtin;

	err = copy_dir(host->override_dir, sizeof(host->override_dir), "override", override_dir);
	if (err)
		return err;
	err = copy_dir(host->builtin_dir, sizeof(host->builtin_dir), "built-in", builtin_dir);
	if (err)
		return err;

	/* lua/balancing/abi.lua finds the header through this variable first; the
	 * installed binary must not depend on the source tree layout. */
	if (setenv("BALANCING_HEADER", header, 0) != 0)
		return -errno;

	host->L = luaL_newstate();
	if (!host->L) {
		log_line(LOG_LEVEL_ERROR, "cannot create the Lua state", "reason", "out of memory",
			 NULL);
		return -ENOMEM;
	}
	luaL_openlibs(host->L);

	dirs[0] = host->override_dir;
	dirs[1] = host->builtin_dir;
	set_search_path(host->L, "path", dirs, "/?.lua;/?/init.lua");
	set_search_path(host->L, "cpath", dirs, NULL);

	/* the core is linked into the binary: require("balancing.core") finds it
	 * here, before any search path (an override cannot replace C) */
	lua_getglobal(host->L, "package");
	lua_getfield(host->L, -1, "preload");
	lua_pushcfunction(host->L, luaopen_balancing_core);
	lua_setfield(host->L, -2, "balancing.core");
	lua_pop(host->L, 1);

	/* what the Lua side may want to know about its host */
	lua_getfield(host->L, -1, "loaded");
	lua_newtable(host->L);
	lua_pushstring(host->L, program);
	lua_setfield(host->L, -2, "program");
	lua_pushstring(host->L, host->override_dir);
	lua_setfield(host->L, -2, "override_dir");
	lua_pushstring(host->L, host->builtin_dir);
	lua_setfield(host->L, -2, "builtin_dir");
	lua_setfield(host->L, -2, "balancing.host");
	lua_pop(host->L, 2);
	return 0;
}

/* Message handler: the error with a traceback, whatever its type. */
static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	if (!msg) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			msg = lua_tostring(L, -1);
		else
			msg =
			    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

/* Runs inside lua_pcall: [module name, argv table] -> exit status. */
static int call_main(lua_State *L)
{
	const char *module = lua_tostring(L, 1);
	lua_Number status;

	lua_getglobal(L, "require");
	lua_pushvalue(L, 1);
	lua_call(L, 1, 1);
	if (!lua_istable(L, -1))
		return luaL_error(L, "module %s did not return a table", module);
	lua_getfield(L, -1, "main");
	if (!lua_isfunction(L, -1))
		return luaL_error(L, "module %s has no function main", module);
	lua_pushvalue(L, 2);
	lua_call(L, 1, 1);

	status = lua_tonumber(L, -1);
	if (lua_type(L, -1) != LUA_TNUMBER || status != (int)status || status < 0 || status > 255)
		return luaL_error(L, "%s.main returned %s, not an exit status 0..255", module,
				  lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1)
								 : luaL_typename(L, -1));
	lua_pushinteger(L, (lua_Integer)status);
	return 1;
}

/* One line: the error itself and, apart, its traceback (the error alone is
 * what an operator reads first: the module, file and line at fault). */
static void log_lua_error(const char *module, const char *text)
{
	static const char marker[] = "\nstack traceback:";
	const char *trace;
	char *error;

	if (!text)
		text = "(no message)";
	trace = strstr(text, marker);
	error = trace ? strndup(text, (size_t)(trace - text)) : NULL;
	log_line(LOG_LEVEL_ERROR, "Lua module failed", "module", module, "error",
		 error ? error : text, "traceback", trace ? trace + 1 : NULL, NULL);
	free(error);
}

int lua_host_pcall(struct lua_host *host, int nargs, int nresults, const char *what)
{
	lua_State *L = host->L;
	int handler = lua_gettop(L) - nargs;

	lua_pushcfunction(L, traceback);
	lua_insert(L, handler);
	if (lua_pcall(L, nargs, nresults, handler) != 0) {
		log_lua_error(what, lua_tostring(L, -1));
		lua_settop(L, handler - 1);
		return -1;
	}
	lua_remove(L, handler);
	return 0;
}

int lua_host_call_main(struct lua_host *host, const char *module, int argc, char **argv)
{
	lua_State *L = host->L;
	int base = lua_gettop(L);
	int status = 1;
	int i;

	lua_pushcfunction(L, traceback);
	lua_pushcfunction(L, call_main);
	lua_pushstring(L, module);
	lua_createtable(L, argc, 0);
	for (i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i + 1);
	}
	if (lua_pcall(L, 2, 1, base + 1) != 0) {
		log_lua_error(module, lua_tostring(L, -1));
		goto out;
	}
	status = (int)lua_tointeger(L, -1);
out:
	lua_settop(L, base);
	return status;
}

void lua_host_close(struct lua_host *host)
{
	if (host->L)
		lua_close(host->L);
	host->L = NULL;
}

int lua_host_run(const char *program, const char *module, int argc, char **argv)
{
	struct lua_host host;
	int status, err;

	err = lua_host_open(&host, program, lua_host_override_from_argv(argc, argv));
	if (err)
		status = err == -EINVAL || err == -ENAMETOOLONG ? 2 : 1;
	else
		status = lua_host_call_main(&host, module, argc, argv);
	lua_host_close(&host);
	return status;
}

const char *lua_host_override_from_argv(int argc, char **argv)
{
	const char *dir = NULL;
	int i;

	for (i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--lua-dir") == 0 && i + 1 < argc)
			dir = argv[++i];
		else if (strncmp(argv[i], "--lua-dir=", 10) == 0)
			dir = argv[i] + 10;
	}
	return dir;
}
