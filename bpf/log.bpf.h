/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one way the datapath prints: a line goes to the trace pipe when its
 * level (enum bpf_log_level) is at most map_configure.bpf_log_level. Every
 * line starts with "balancing: " so that
 *     bpftool prog tracelog | grep balancing:
 * finds ours among everyone's. Addresses print with %pI4 (pass a pointer),
 * ports in host order (bpf_ntohs).
 */
#ifndef BALANCING_LOG_BPF_H
#define BALANCING_LOG_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "balancing.h"
#include "config.bpf.h"

#define BALANCING_LOG(level, fmt, ...)                                  \
	do {                                                            \
		if ((__u32)(level) <= config_log_level())               \
			bpf_printk("balancing: " fmt, ##__VA_ARGS__);   \
	} while (0)

#endif /* BALANCING_LOG_BPF_H */
