/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What one forward translation (connect4, sendmsg4) knows as it goes: the
 * destination the client dialed, the frontend entry that matched, the
 * backend chosen, and what the event will say. Lives on the program's stack;
 * the steps fill it in order (lookup.bpf.h, select.bpf.h, nat_record.bpf.h)
 * and events.bpf.h turns it into the event record.
 */
#ifndef BALANCING_XLATE_BPF_H
#define BALANCING_XLATE_BPF_H

#include "vmlinux.h"
#include "balancing.h"

struct sock4_xlate {
	__u64 netns_cookie;            /* the client's network namespace */
	__u64 socket_cookie;           /* set once a frontend matched */
	struct service_key frontend;   /* the entry that matched (NodePort:
					  address NODE_PORT_ANY_ADDRESS) */
	struct service_value service;  /* a copy of its value */
	struct backend_value backend;  /* the chosen backend */
	__u32 dialed_address;          /* ctx->user_ip4 on entry */
	__u16 dialed_port;             /* ctx->user_port on entry */
	__u16 count;                   /* usable backend slots 0..count-1 */
	__u8 protocol;                 /* enum balancing_protocol */
	__u8 hook;                     /* enum balancing_hook */
	__u8 reason;                   /* enum balancing_reason */
	__u8 flags;                    /* enum event_flags */
};

#endif /* BALANCING_XLATE_BPF_H */
