/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * balancing-agent's run mode: one libev loop drives the sources, the
 * reconcile-and-apply of what changed (Lua: balancing.agent), the health and
 * metrics endpoint, and the signals. This version follows a manifest
 * directory (inotify); the API server source is next.
 */
#ifndef BALANCING_AGENT_H
#define BALANCING_AGENT_H

#include "options.h"

/* Runs until SIGTERM or SIGINT: 0 then; 1 when the agent cannot start (one
 * log line says why). The datapath stays pinned and attached on exit. */
int agent_run(const struct agent_options *opts);

#endif /* BALANCING_AGENT_H */
