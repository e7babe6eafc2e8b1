/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The options of balancing-agent's run mode: each from the command line,
 * else from its environment variable, else its default (CONTRACTS.md).
 */
#ifndef BALANCING_OPTIONS_H
#define BALANCING_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

#define OPTIONS_HOST_NAME_MAX 256

struct agent_options {
	const char *node_name;
	const char *kubeconfig; /* NULL: in-cluster when KUBERNETES_SERVICE_HOST is set */
	const char *manifests;	/* NULL: not standalone */
	const char *cgroup;
	const char *bpffs;
	const char *lua_dir;
	const char *run_dir; /* state.json for inspect (owners' names, why not programmed) */
	const char *listen;
	enum log_level log_level;
	const char *bpf_log_level; /* verbose | info | error | off, as balancing.core takes it */
	uint32_t redirect_qos_limit;
	bool out_cluster;
	const char *service_proxy_name; /* NULL: Services labelled for any proxy are left to it */
	const char *events;		/* all | failures | off, as balancing.core takes it */
	char host_name[OPTIONS_HOST_NAME_MAX];
};

enum options_result {
	OPTIONS_OK = 0,
	OPTIONS_HELP = 1, /* --help was given: print the usage, exit 0 */
};

/*
 * Fills opts from the environment, then argv[1..argc-1]. Returns OPTIONS_OK,
 * OPTIONS_HELP, or -EINVAL with one line naming the option (or variable) and
 * what is wrong in err.
 */
int options_parse(struct agent_options *opts, int argc, char **argv, char *err, size_t err_size);

/*
 * Checks what the run mode needs from the outside world: the manifest
 * directory and the kubeconfig readable. 0, or -errno with the reason in err.
 */
int options_check_sources(const struct agent_options *opts, char *err, size_t err_size);

void options_usage(FILE *stream, const char *program);

#endif /* BALANCING_OPTIONS_H */
