/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * inspect: reads the pinned maps and prints them. A thin entry: the
 * subcommands are Lua (balancing.inspect.main), so operators can change how
 * things are printed without rebuilding.
 */
#include "lua_host.h"

int main(int argc, char **argv)
{
	return lua_host_run("inspect", "balancing.inspect.main", argc - 1, argv + 1);
}
