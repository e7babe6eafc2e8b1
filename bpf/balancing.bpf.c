// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Placeholder entry points: the datapath is being written (issue 2). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "balancing.h"
#include "maps.bpf.h"

SEC("cgroup/connect4")
int balancing_connect4(struct bpf_sock_addr *ctx) { return 1; }
SEC("cgroup/sendmsg4")
int balancing_sendmsg4(struct bpf_sock_addr *ctx) { return 1; }
SEC("cgroup/recvmsg4")
int balancing_recvmsg4(struct bpf_sock_addr *ctx) { return 1; }
SEC("cgroup/getpeername4")
int balancing_getpeername4(struct bpf_sock_addr *ctx) { return 1; }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
