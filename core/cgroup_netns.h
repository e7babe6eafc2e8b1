/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The network namespaces of the processes in a cgroup subtree, each once:
 * where the sockets our cgroup programs translated live (a pod has one of
 * its own), for the stale-socket iterator, which walks only the sockets of
 * the namespace it is created in (core/stale_sockets.c).
 */
#ifndef BALANCING_CGROUP_NETNS_H
#define BALANCING_CGROUP_NETNS_H

#include <stddef.h>

#include "errmsg.h"

struct cgroup_netns {
	int *fds; /* open /proc/PID/ns/net files, one per namespace */
	size_t count, cap;
};

/* Fills ns with the namespaces of every process in cgroup and below, the
 * caller's own excluded. A process that exits meanwhile is skipped. */
int cgroup_netns_collect(struct cgroup_netns *ns, const char *cgroup, struct errmsg *e);

/* Closes the fds; ns is empty again. */
void cgroup_netns_free(struct cgroup_netns *ns);

#endif /* BALANCING_CGROUP_NETNS_H */
