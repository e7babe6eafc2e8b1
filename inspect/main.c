/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * inspect: reads the pinned maps and prints them. A thin entry: the
 * subcommands are Lua (balancing.inspect.main), so operators can change how
 * things are printed without rebuilding.
 */
#include <errno.h>

#include "lua_host.h"

int main(int argc, char **argv)
{
	struct lua_host host;
	int status, err;

	err = lua_host_open(&host, "inspect", lua_host_override_from_argv(argc - 1, argv + 1));
	if (err) {
		status = err == -EINVAL || err == -ENAMETOOLONG ? 2 : 1;
		goto out;
	}
	status = lua_host_call_main(&host, "balancing.inspect.main", argc - 1, argv + 1);
out:
	lua_host_close(&host);
	return status;
}
