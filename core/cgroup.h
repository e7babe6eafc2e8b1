/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The cgroup v2 hierarchy the programs attach to. */
#ifndef BALANCING_CGROUP_H
#define BALANCING_CGROUP_H

#include <stddef.h>
#include <linux/types.h>

#include "errmsg.h"

/* The first cgroup2 mount point in /proc/mounts (it differs between hosts:
 * /sys/fs/cgroup on unified systems, /sys/fs/cgroup/unified on hybrid
 * ones), copied into buf. */
int cgroup2_mount_point(char *buf, size_t len, struct errmsg *e);

/* An O_RDONLY fd on a cgroup v2 directory; refuses anything else (a cgroup
 * v1 directory would take the attach but never run the programs). */
int cgroup_open(const char *path, struct errmsg *e);

/* The cgroup ID of a cgroup v2 directory: what bpf link info and
 * bpf_get_current_cgroup_id() report. */
int cgroup_id_of(const char *path, __u64 *id, struct errmsg *e);

#endif /* BALANCING_CGROUP_H */
