// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The socket-layer load balancer: cgroup sock_addr programs that rewrite the
 * destination of connect() and sendmsg() towards a frontend to one of its
 * backends, before any packet exists, and give the dialed address back on
 * recvmsg() and getpeername().
 *
 * The entry programs only turn a helper's negative errno into a verdict:
 * -EHOSTUNREACH (a frontend without a usable backend) rejects with that
 * errno; anything else (-ENXIO: not a frontend, -EPROTONOSUPPORT: not TCP
 * or UDP, -ESTALE: a stale reverse record) proceeds untouched. The steps
 * live in the headers, one job each:
 *   lookup.bpf.h      which frontend (priority, NodePort, LocalRedirect guards)
 *   select.bpf.h      which backend (affinity, random or per-socket slot)
 *   nat_record.bpf.h  the reverse record, and reverse translation
 *   counters.bpf.h    the per-owner counter of a translation
 *   events.bpf.h      the event of a translation
 *   stale_sockets.bpf.h  which UDP sockets to destroy when a backend leaves
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <asm-generic/errno.h>
#include "balancing.h"
#include "maps.bpf.h"
#include "log.bpf.h"
#include "xlate.bpf.h"
#include "lookup.bpf.h"
#include "select.bpf.h"
#include "nat_record.bpf.h"
#include "counters.bpf.h"
#include "events.bpf.h"
#include "stale_sockets.bpf.h"

static __always_inline bool sock4_is_balanced_protocol(__u32 protocol)
{
	return protocol == BALANCING_PROTO_TCP || protocol == BALANCING_PROTO_UDP;
}

static __always_inline int sock4_xlate_init(struct bpf_sock_addr *ctx, __u8 hook,
					    struct sock4_xlate *x)
{
	__u32 protocol = ctx->protocol;

	if (!sock4_is_balanced_protocol(protocol))
		return -EPROTONOSUPPORT;
	x->protocol = (__u8)protocol;
	x->hook = hook;
	x->dialed_address = ctx->user_ip4;
	x->dialed_port = (__u16)ctx->user_port;
	return 0;
}

/* What only a matched frontend needs (affinity, the event, the reverse
 * record), taken once one matched: a send to an address that is no
 * frontend, most of them, pays for neither helper. */
static __always_inline void sock4_xlate_matched(struct bpf_sock_addr *ctx, struct sock4_xlate *x)
{
	x->netns_cookie = bpf_get_netns_cookie(ctx);
	x->socket_cookie = bpf_get_socket_cookie(ctx);
}

/* Every translation that matched a frontend, success or failure, is counted
 * for its owner (map_translations, whatever --events says) and offered to
 * the event ring (which --events filters). A function of its own (a BPF to
 * BPF call), not inlined: sock4_xlate_fwd reports from three places, and
 * three copies of the counter and the event made the program half as long
 * again, its success path spread over more instruction cache and pages. */
static __noinline int sock4_report(const struct sock4_xlate *x)
{
	counter_add(x);
	event_submit(x);
	return 0;
}

/* A LocalRedirect entry passed over for its QoS limit with nothing behind
 * it: the client goes to the address it dialed, and the event says why. */
static __always_inline void sock4_report_unserved_redirect(struct bpf_sock_addr *ctx,
							  struct sock4_xlate *x)
{
	if (!(x->flags & EVENT_FLAG_REDIRECT_HIT_LIMIT))
		return;
	x->netns_cookie = bpf_get_netns_cookie(ctx);
	x->reason = REASON_REDIRECT_LIMIT;
	sock4_report(x);
}

/* Rewrites ctx towards a backend: 0 when translated, -EHOSTUNREACH when the
 * frontend has no usable backend, another negative errno when not ours. */
static __always_inline int sock4_xlate_fwd(struct bpf_sock_addr *ctx, __u8 hook)
{
	struct sock4_xlate x = {};
	int err;

	err = sock4_xlate_init(ctx, hook, &x);
	if (err)
		return err;
	err = lb4_lookup_frontend(&x);
	if (err) {
		sock4_report_unserved_redirect(ctx, &x);
		return err;
	}
	sock4_xlate_matched(ctx, &x);
	err = lb4_select_backend(&x);
	if (err) {
		BALANCING_LOG(BPF_LOG_INFO, "%pI4:%u rejected, reason %u", &x.dialed_address,
			      bpf_ntohs(x.dialed_port), x.reason);
		sock4_report(&x);
		return err;
	}
	if (nat_record_store(&x)) {
		BALANCING_LOG(BPF_LOG_ERROR, "reverse record not stored for %pI4:%u",
			      &x.dialed_address, bpf_ntohs(x.dialed_port));
		x.reason = REASON_NAT_RECORD_FAILED;
	}
	ctx->user_ip4 = x.backend.address;
	ctx->user_port = x.backend.port;
	x.flags |= EVENT_FLAG_SUCCESS;
	BALANCING_LOG(BPF_LOG_INFO, "%pI4:%u -> %pI4:%u", &x.dialed_address,
		      bpf_ntohs(x.dialed_port), &x.backend.address, bpf_ntohs(x.backend.port));
	sock4_report(&x);
	return 0;
}

static __always_inline int sock4_verdict(int err)
{
	if (err == -EHOSTUNREACH) {
		/* without it the caller would see EPERM */
		bpf_set_retval(err);
		return VERDICT_REJECT;
	}
	return VERDICT_PROCEED;
}

/* TCP, and UDP sockets that connect(). */
SEC("cgroup/connect4")
int balancing_connect4(struct bpf_sock_addr *ctx)
{
	return sock4_verdict(sock4_xlate_fwd(ctx, HOOK_CONNECT4));
}

/* Unconnected UDP: called only for sends that name a destination. */
SEC("cgroup/sendmsg4")
int balancing_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_verdict(sock4_xlate_fwd(ctx, HOOK_SENDMSG4));
}

/* The source address of a received UDP datagram. */
SEC("cgroup/recvmsg4")
int balancing_recvmsg4(struct bpf_sock_addr *ctx)
{
	nat_record_restore(ctx);
	return VERDICT_PROCEED;
}

SEC("cgroup/getpeername4")
int balancing_getpeername4(struct bpf_sock_addr *ctx)
{
	nat_record_restore(ctx);
	return VERDICT_PROCEED;
}

/* Run by the agent (core/stale_sockets.c) over the UDP sockets of its
 * network namespace after an apply took backends out of UDP frontends;
 * writes the cookie of every socket it destroyed, so the agent can count. */
SEC("iter/udp")
int balancing_stale_udp(struct bpf_iter__udp *ctx)
{
	struct sock *sk = (struct sock *)ctx->udp_sk;
	__u64 cookie;

	/* (a missing weak kfunc resolves to 0; libbpf 1.1 has no bpf_ksym_exists) */
	if (!sk || !bpf_sock_destroy)
		return 0;
	cookie = bpf_get_socket_cookie(sk);
	if (!stale_socket_matches(sk, cookie))
		return 0;
	if (bpf_sock_destroy(&sk->__sk_common) == 0)
		bpf_seq_write(ctx->meta->seq, &cookie, sizeof(cookie));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
