/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * balancing-agent: the node agent, and "balancing-agent plan", which prints
 * what the agent would program. Option parsing of the run mode is C; plan is
 * Lua (balancing.plan) and parses its own options.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "errmsg.h"
#include "log.h"
#include "lua_host.h"
#include "options.h"
#include "uninstall.h"

#define PROGRAM "balancing-agent"

/* balancing-agent plan [options]: everything after "plan" goes to Lua. */
static int run_plan(int argc, char **argv)
{
	return lua_host_run(PROGRAM " plan", "balancing.plan", argc, argv);
}

static int run_agent(int argc, char **argv)
{
	struct agent_options opts;
	char err[512];
	int ret;

	ret = options_parse(&opts, argc, argv, err, sizeof(err));
	if (ret == OPTIONS_HELP) {
		options_usage(stdout, PROGRAM);
		return 0;
	}
	if (ret) {
		fprintf(stderr, PROGRAM ": %s\n", err);
		return 2;
	}
	if (options_check_sources(&opts, err, sizeof(err))) {
		fprintf(stderr, PROGRAM ": %s\n", err);
		return 2;
	}
	log_set_level(opts.log_level);
	return agent_run(&opts);
}

/* The state the agent left for inspect (--run-dir/state.json) names owners
 * of entries that are gone now: removed too. 0, or 1 when it stays. */
static int remove_state_file(const char *run_dir)
{
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/state.json", run_dir) >= (int)sizeof(path)) {
		fprintf(stderr, PROGRAM " uninstall: --run-dir is too long\n");
		return 1;
	}
	if (unlink(path) == 0) {
		printf("removed %s\n", path);
	} else if (errno != ENOENT) {
		fprintf(stderr, PROGRAM " uninstall: %s: %s\n", path, strerror(errno));
		return 1;
	}
	return 0;
}

/* balancing-agent uninstall [options]: the agent's options (--bpffs is the
 * one it uses), so that an agent command line works with "uninstall" put in. */
static int run_uninstall(int argc, char **argv)
{
	struct uninstall_result r;
	struct agent_options opts;
	struct errmsg e;
	char err[512];
	int ret;

	ret = options_parse(&opts, argc, argv, err, sizeof(err));
	if (ret == OPTIONS_HELP) {
		printf(
		    "usage: " PROGRAM " uninstall [--bpffs PATH] [--run-dir DIR]\n\n"
		    "Detaches balancing's programs and removes every pin under the pin directory\n"
		    "(default /sys/fs/bpf/balancing): the datapath stops. Removes the state file\n"
		    "the agent kept for inspect (DIR/state.json, default /run/balancing). The\n"
		    "agent's other options are accepted and ignored.\n");
		return 0;
	}
	if (ret) {
		fprintf(stderr, PROGRAM " uninstall: %s\n", err);
		return 2;
	}
	if (uninstall_pins(opts.bpffs, &r, &e)) {
		fprintf(stderr, PROGRAM " uninstall: %s\n", e.text);
		return 1;
	}
	if (r.absent)
		printf("nothing to remove: no pin directory %s\n", opts.bpffs);
	else
		printf("detached and unpinned %d links, unpinned %d maps, removed %s\n", r.links,
		       r.maps, opts.bpffs);
	return remove_state_file(opts.run_dir);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "plan") == 0)
		return run_plan(argc - 2, argv + 2);
	if (argc > 1 && strcmp(argv[1], "uninstall") == 0)
		return run_uninstall(argc - 1, argv + 1);
	return run_agent(argc, argv);
}
