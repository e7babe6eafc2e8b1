/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The BPF filesystem the pin directory lives on. */
#ifndef BALANCING_BPFFS_H
#define BALANCING_BPFFS_H

#include "errmsg.h"

/* 1 when path is on a bpffs, 0 when it is not, -errno when it cannot be
 * examined (e.g. it does not exist). */
int bpffs_is_bpffs(const char *path);

/* Make path a bpffs: 0 when it already is one, else create the directory
 * and mount a bpffs there. */
int bpffs_mount(const char *path, struct errmsg *e);

/* Create the pin directory (and its parents), first mounting bpffs at
 * /sys/fs/bpf (for a directory under it) or at the directory itself when no
 * bpffs holds it yet. */
int bpffs_prepare_dir(const char *pin_dir, struct errmsg *e);

/* mkdir -p with the given mode; 0 when it already exists. */
int bpffs_mkdir_p(const char *path, unsigned int mode);

#endif /* BALANCING_BPFFS_H */
