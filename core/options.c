/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The options of balancing-agent's run mode (see options.h). */
#include "options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum option_id {
	OPT_NODE_NAME,
	OPT_KUBECONFIG,
	OPT_MANIFESTS,
	OPT_CGROUP,
	OPT_BPFFS,
	OPT_LUA_DIR,
	OPT_LISTEN,
	OPT_LOG_LEVEL,
	OPT_BPF_LOG_LEVEL,
	OPT_REDIRECT_QOS_LIMIT,
	OPT_OUT_CLUSTER,
	OPT_SERVICE_PROXY_NAME,
	OPT_EVENTS,
	OPT_RUN_DIR,
};

struct option_spec {
	enum option_id id;
	const char *name; /* without the leading "--" */
	const char *env;
	const char *arg; /* NULL for a flag */
	const char *help;
};

/* The table of CONTRACTS.md, in its order; the usage text is made from it. */
static const struct option_spec option_specs[] = {
    {OPT_NODE_NAME, "node-name", "NODE_NAME", "NAME", "this node's name (default: the host name)"},
    {OPT_KUBECONFIG, "kubeconfig", "KUBECONFIG", "PATH",
     "API server access from outside a pod (default: in-cluster service account)"},
    {OPT_MANIFESTS, "manifests", "BALANCING_MANIFESTS", "DIR",
     "standalone: read objects from *.json, *.yaml, *.yml in DIR"},
    {OPT_CGROUP, "cgroup", "BALANCING_CGROUP", "PATH",
     "cgroup v2 directory to attach to (default /run/balancing/cgroupv2)"},
    {OPT_BPFFS, "bpffs", "BALANCING_BPFFS", "PATH",
     "pin directory (default /sys/fs/bpf/balancing)"},
    {OPT_LUA_DIR, "lua-dir", "BALANCING_LUA_DIR", "DIR",
     "Lua override directory (default /etc/balancing/lua)"},
    {OPT_LISTEN, "listen", "BALANCING_LISTEN", "ADDR:PORT",
     "health and metrics (default 127.0.0.1:5870)"},
    {OPT_LOG_LEVEL, "log-level", "BALANCING_LOG_LEVEL", "LEVEL",
     "debug, info, warn, error (default info)"},
    {OPT_BPF_LOG_LEVEL, "bpf-log-level", "BALANCING_BPF_LOG_LEVEL", "LEVEL",
     "verbose, info, error, off (default error)"},
    {OPT_REDIRECT_QOS_LIMIT, "redirect-qos-limit", "BALANCING_REDIRECT_QOS_LIMIT", "N",
     "LocalRedirect limit per frontend per second, 0 = none (default 0)"},
    {OPT_OUT_CLUSTER, "out-cluster", "BALANCING_OUT_CLUSTER", NULL,
     "this agent runs outside the cluster (variable: 1)"},
    {OPT_SERVICE_PROXY_NAME, "service-proxy-name", "BALANCING_SERVICE_PROXY_NAME", "NAME",
     "also serve Services labelled service.kubernetes.io/service-proxy-name=NAME (default none)"},
    {OPT_EVENTS, "events", "BALANCING_EVENTS", "all|failures|off",
     "which translations become events, written to map_configure (default all)"},
    {OPT_RUN_DIR, "run-dir", "BALANCING_RUN_DIR", "DIR",
     "where the agent keeps state.json for inspect (default /run/balancing)"},
};

#define OPTION_COUNT (sizeof(option_specs) / sizeof(option_specs[0]))

static const char *const bpf_log_levels[] = {"verbose", "info", "error", "off"};
static const char *const event_filters[] = {"all", "failures", "off"};

static void options_defaults(struct agent_options *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->cgroup = "/run/balancing/cgroupv2";
	opts->bpffs = "/sys/fs/bpf/balancing";
	opts->lua_dir = "/etc/balancing/lua";
	opts->run_dir = "/run/balancing";
	opts->listen = "127.0.0.1:5870";
	opts->log_level = LOG_LEVEL_INFO;
	opts->bpf_log_level = "error";
	opts->events = "all";
	opts->redirect_qos_limit = 0;
	opts->out_cluster = false;
}

/* "--name" or the variable, as the user typed it, for messages. */
static void source_name(char *out, size_t size, const struct option_spec *spec, bool from_env)
{
	if (from_env)
		snprintf(out, size, "%s", spec->env);
	else
		snprintf(out, size, "--%s", spec->name);
}

static int parse_u32(const char *text, uint32_t *value)
{
	unsigned long long n;
	char *end;

	/* strtoull accepts "-1" (wrapping) and leading blanks: only digits here */
	if (!text[0] || strspn(text, "0123456789") != strlen(text))
		return -EINVAL;
	errno = 0;
	n = strtoull(text, &end, 10);
	if (errno || *end || n > UINT32_MAX)
		return -ERANGE;
	*value = (uint32_t)n;
	return 0;
}

static int check_listen(const char *text)
{
	const char *colon = strrchr(text, ':');
	char host[INET_ADDRSTRLEN];
	struct in_addr addr;
	uint32_t port;

	if (!colon || (size_t)(colon - text) >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	if (inet_pton(AF_INET, host, &addr) != 1)
		return -EINVAL;
	if (parse_u32(colon + 1, &port) || port == 0 || port > 65535)
		return -EINVAL;
	return 0;
}

/* Stores one option's value; err gets "<source>: <what is wrong>". */
static int set_option(struct agent_options *opts, const struct option_spec *spec, const char *value,
		      bool from_env, char *err, size_t err_size)
{
	char source[64];
	size_t i;

	source_name(source, sizeof(source), spec, from_env);
	if (spec->arg && !value[0]) {
		snprintf(err, err_size, "%s: empty value", source);
		return -EINVAL;
	}

	switch (spec->id) {
	case OPT_NODE_NAME:
		opts->node_name = value;
		break;
	case OPT_KUBECONFIG:
		opts->kubeconfig = value;
		break;
	case OPT_MANIFESTS:
		opts->manifests = value;
		break;
	case OPT_CGROUP:
		opts->cgroup = value;
		break;
	case OPT_BPFFS:
		opts->bpffs = value;
		break;
	case OPT_LUA_DIR:
		opts->lua_dir = value;
		break;
	case OPT_RUN_DIR:
		opts->run_dir = value;
		break;
	case OPT_LISTEN:
		if (check_listen(value)) {
			snprintf(err, err_size,
				 "%s: \"%s\" is not IPv4-ADDRESS:PORT (e.g. 127.0.0.1:5870)",
				 source, value);
			return -EINVAL;
		}
		opts->listen = value;
		break;
	case OPT_LOG_LEVEL:
		if (log_level_parse(value, &opts->log_level)) {
			snprintf(err, err_size, "%s: \"%s\" is not one of debug, info, warn, error",
				 source, value);
			return -EINVAL;
		}
		break;
	case OPT_BPF_LOG_LEVEL:
		for (i = 0; i < sizeof(bpf_log_levels) / sizeof(bpf_log_levels[0]); i++) {
			if (strcmp(value, bpf_log_levels[i]) == 0) {
				opts->bpf_log_level = bpf_log_levels[i];
				return 0;
			}
		}
		snprintf(err, err_size, "%s: \"%s\" is not one of verbose, info, error, off",
			 source, value);
		return -EINVAL;
	case OPT_REDIRECT_QOS_LIMIT:
		if (parse_u32(value, &opts->redirect_qos_limit)) {
			snprintf(err, err_size,
				 "%s: \"%s\" is not a whole number from 0 to 4294967295", source,
				 value);
			return -EINVAL;
		}
		break;
	case OPT_OUT_CLUSTER:
		/* the flag on the command line; the variable is "1" (on) or "0"/"" (off) */
		if (!from_env || strcmp(value, "1") == 0 || strcmp(value, "true") == 0) {
			opts->out_cluster = true;
		} else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 || !value[0]) {
			opts->out_cluster = false;
		} else {
			snprintf(err, err_size, "%s: \"%s\" is not 1 or 0", source, value);
			return -EINVAL;
		}
		break;
	case OPT_SERVICE_PROXY_NAME:
		opts->service_proxy_name = value;
		break;
	case OPT_EVENTS:
		for (i = 0; i < sizeof(event_filters) / sizeof(event_filters[0]); i++) {
			if (strcmp(value, event_filters[i]) == 0) {
				opts->events = event_filters[i];
				return 0;
			}
		}
		snprintf(err, err_size, "%s: \"%s\" is not one of all, failures, off", source, value);
		return -EINVAL;
	}
	return 0;
}

static const struct option_spec *find_option(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < OPTION_COUNT; i++) {
		if (strlen(option_specs[i].name) == len &&
		    strncmp(option_specs[i].name, name, len) == 0)
			return &option_specs[i];
	}
	return NULL;
}

int options_parse(struct agent_options *opts, int argc, char **argv, char *err, size_t err_size)
{
	const struct option_spec *spec;
	const char *value;
	size_t i;
	int a, ret;

	options_defaults(opts);

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0)
			return OPTIONS_HELP;
	}

	/* the environment first, so that the command line overrides it */
	for (i = 0; i < OPTION_COUNT; i++) {
		value = getenv(option_specs[i].env);
		if (!value)
			continue;
		/* an empty variable is the same as an unset one (a DaemonSet
		 * often renders unset values as "") */
		if (!value[0])
			continue;
		ret = set_option(opts, &option_specs[i], value, true, err, err_size);
		if (ret)
			return ret;
	}

	for (a = 1; a < argc; a++) {
		const char *arg = argv[a];
		const char *eq;

		if (strncmp(arg, "--", 2) != 0 || !arg[2]) {
			if (strcmp(arg, "plan") == 0)
				snprintf(err, err_size,
					 "unexpected argument \"plan\": the subcommand comes first "
					 "(balancing-agent plan [options])");
			else
				snprintf(err, err_size, "unexpected argument \"%s\" (see --help)",
					 arg);
			return -EINVAL;
		}
		eq = strchr(arg + 2, '=');
		spec = find_option(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
		if (!spec) {
			snprintf(err, err_size, "unknown option %.*s (see --help)",
				 eq ? (int)(eq - arg) : (int)strlen(arg), arg);
			return -EINVAL;
		}
		if (!spec->arg) {
			if (eq) {
				snprintf(err, err_size, "--%s takes no value", spec->name);
				return -EINVAL;
			}
			value = "1";
		} else if (eq) {
			value = eq + 1;
		} else if (a + 1 < argc) {
			value = argv[++a];
		} else {
			snprintf(err, err_size, "--%s needs a value (%s)", spec->name, spec->arg);
			return -EINVAL;
		}
		ret = set_option(opts, spec, value, false, err, err_size);
		if (ret)
			return ret;
	}

	if (!opts->node_name) {
		if (gethostname(opts->host_name, sizeof(opts->host_name)) != 0 ||
		    !opts->host_name[0]) {
			snprintf(err, err_size,
				 "--node-name: not given and the host name is unknown");
			return -EINVAL;
		}
		opts->host_name[sizeof(opts->host_name) - 1] = '\0';
		opts->node_name = opts->host_name;
	}
	return OPTIONS_OK;
}

int options_check_sources(const struct agent_options *opts, char *err, size_t err_size)
{
	struct stat st;
	int ret;

	if (opts->manifests) {
		if (stat(opts->manifests, &st) != 0) {
			ret = -errno;
			snprintf(err, err_size, "--manifests: %s: %s", opts->manifests,
				 strerror(-ret));
			return ret;
		}
		if (!S_ISDIR(st.st_mode)) {
			snprintf(err, err_size, "--manifests: %s: not a directory",
				 opts->manifests);
			return -ENOTDIR;
		}
		if (access(opts->manifests, R_OK | X_OK) != 0) {
			ret = -errno;
			snprintf(err, err_size, "--manifests: %s: %s", opts->manifests,
				 strerror(-ret));
			return ret;
		}
		/* standalone: the kubeconfig is not used, whatever the environment says */
		return 0;
	}
	if (opts->kubeconfig && access(opts->kubeconfig, R_OK) != 0) {
		ret = -errno;
		snprintf(err, err_size, "--kubeconfig: %s: %s", opts->kubeconfig, strerror(-ret));
		return ret;
	}
	if (!opts->kubeconfig && !getenv("KUBERNETES_SERVICE_HOST")) {
		snprintf(err, err_size,
			 "no source: give --manifests DIR, or --kubeconfig PATH outside a pod");
		return -EINVAL;
	}
	return 0;
}

void options_usage(FILE *stream, const char *program)
{
	char left[64];
	size_t i;

	fprintf(stream,
		"usage: %s [options]            run the node agent\n"
		"       %s plan [options]       print the entries it would program, touch nothing\n"
		"                                          (see '%s plan --help')\n"
		"       %s uninstall [options]  detach the programs and remove every pin (the datapath stops)\n"
		"\n"
		"options (each also read from the environment variable in brackets):\n",
		program, program, program, program);
	for (i = 0; i < OPTION_COUNT; i++) {
		const struct option_spec *spec = &option_specs[i];

		if (spec->arg)
			snprintf(left, sizeof(left), "--%s %s", spec->name, spec->arg);
		else
			snprintf(left, sizeof(left), "--%s", spec->name);
		fprintf(stream, "  %-28s %s [%s]\n", left, spec->help, spec->env);
	}
	fprintf(stream, "  %-28s %s\n", "--help", "this text");
	fprintf(stream, "\n"
			"Bad options or an unusable source: one line on stderr, exit status 2.\n");
}
