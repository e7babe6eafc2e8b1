/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The LuaJIT state of the binaries: module search path (operator overrides
 * before the built-in modules), balancing.core preloaded, and protected calls
 * into Lua entry points that turn any Lua error into one JSON log line.
 */
#ifndef BALANCING_LUA_HOST_H
#define BALANCING_LUA_HOST_H

#include <lua.h>

/* The override directory when neither --lua-dir nor BALANCING_LUA_DIR is
 * given: the ConfigMap mount of the DaemonSet. */
#define LUA_HOST_DEFAULT_OVERRIDE_DIR "/etc/balancing/lua"

struct lua_host {
	lua_State *L;
	char override_dir[4096];
	char builtin_dir[4096];
};

/*
 * Creates the state: standard libraries, package.path = override dir, then
 * the built-in dir ($BALANCING_LUA_BUILTIN_DIR, else for an installed binary
 * its prefix's share/balancing/lua, else the compiled-in source tree's),
 * then the system paths (without "./"), package.preload["balancing.core"],
 * $BALANCING_HEADER defaulted to the installed or else the compiled-in header, and the table
 * package.loaded["balancing.host"] = {program, override_dir, builtin_dir}.
 * override_dir NULL means $BALANCING_LUA_DIR, else the default.
 * Returns 0 or -errno (a line is logged).
 */
int lua_host_open(struct lua_host *host, const char *program, const char *override_dir);

/*
 * require(module).main(argv) under lua_pcall with a traceback, argv being a
 * Lua array of argv[0..argc-1]. Returns the exit status main returned; on any
 * Lua error (or a result that is not an exit status), logs one error line
 * naming the module and returns 1.
 */
int lua_host_call_main(struct lua_host *host, const char *module, int argc, char **argv);

/*
 * lua_pcall of the function below its nargs arguments on the stack, with a
 * traceback; on an error, logs one line naming what (a module or method) and
 * leaves nothing on the stack. Returns 0, or -1 after an error.
 */
int lua_host_pcall(struct lua_host *host, int nargs, int nresults, const char *what);

void lua_host_close(struct lua_host *host);

/*
 * A binary whose work is one Lua entry point (inspect, balancing-agent plan):
 * opens a host for program, with the override directory of argv's --lua-dir,
 * runs require(module).main(argv) and closes. Returns the exit status: main's,
 * 1 on a Lua error, 2 for an unusable Lua directory.
 */
int lua_host_run(const char *program, const char *module, int argc, char **argv);

/*
 * The value of "--lua-dir DIR" or "--lua-dir=DIR" in argv (the last one
 * wins), else NULL. The host needs it before Lua runs, to set the search path;
 * the Lua entry validates the rest of argv itself.
 */
const char *lua_host_override_from_argv(int argc, char **argv);

#endif /* BALANCING_LUA_HOST_H */
