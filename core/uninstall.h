/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * balancing-agent uninstall: the datapath taken off the node — the pinned
 * links detached (whoever else still holds them) and unpinned, our maps
 * unpinned, the pin directory removed. Works from the pins alone: no object
 * is loaded, so it works whatever version pinned them.
 */
#ifndef BALANCING_UNINSTALL_H
#define BALANCING_UNINSTALL_H

#include "errmsg.h"

struct uninstall_result {
	int links;   /* links detached and unpinned */
	int maps;    /* maps unpinned */
	int foreign; /* entries of the pin directory that are not ours, left */
	int absent;  /* 1: no pin directory, nothing to do */
};

/* 0 when the pin directory is gone (or was never there); -errno with the
 * object at fault in e otherwise — what could be removed is removed. */
int uninstall_pins(const char *bpffs, struct uninstall_result *r, struct errmsg *e);

#endif /* BALANCING_UNINSTALL_H */
