/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The network namespace cookie of the caller. */
#ifndef BALANCING_NETNS_H
#define BALANCING_NETNS_H

#include <linux/types.h>

#include "errmsg.h"

/* SO_NETNS_COOKIE of a fresh socket: the value the programs get from
 * bpf_get_netns_cookie() for a client in the caller's namespace. */
int netns_cookie(__u64 *cookie, struct errmsg *e);

#endif /* BALANCING_NETNS_H */
