/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The cgroup v2 hierarchy the programs attach to. */
#ifndef BALANCING_CGROUP_H
#define BALANCING_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>

#include "errmsg.h"

/* The first cgroup2 mount point in /proc/mounts (it differs between hosts:
 * /sys/fs/cgroup on unified systems, /sys/fs/cgroup/unified on hybrid
 * ones), copied into buf. */
int cgroup2_mount_point(char *buf, size_t len, struct errmsg *e);

/*
 * Makes path a cgroup2 mount, as Cilium does with /run/cilium/cgroupv2: 0
 * when it already is a cgroup2 directory (*mounted false); else creates it
 * when missing and mounts cgroup2 on it when it is an empty directory that
 * is no mount point (*mounted true). Refuses, naming the path and why, a
 * file, a non-empty directory and another file system mounted there.
 * The mount shows the root of the caller's cgroup namespace.
 */
int cgroup2_ensure_mounted(const char *path, bool *mounted, struct errmsg *e);

/* An O_RDONLY fd on a cgroup v2 directory; refuses anything else (a cgroup
 * v1 directory would take the attach but never run the programs). */
int cgroup_open(const char *path, struct errmsg *e);

/* The cgroup ID of a cgroup v2 directory: what bpf link info and
 * bpf_get_current_cgroup_id() report. */
int cgroup_id_of(const char *path, __u64 *id, struct errmsg *e);

#endif /* BALANCING_CGROUP_H */
