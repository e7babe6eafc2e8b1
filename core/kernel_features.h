/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the kernel must offer before the agent loads anything (CONTRACTS.md,
 * "At start"): cgroup sock_addr hooks, bpf_set_retval from them, BTF, and a
 * ring buffer map. Probed with libbpf, so a missing piece is named up front
 * rather than surfacing as a verifier log in the middle of a load.
 */
#ifndef BALANCING_KERNEL_FEATURES_H
#define BALANCING_KERNEL_FEATURES_H

#include <stdbool.h>
#include <stddef.h>

enum kernel_feature {
	KERNEL_FEATURE_CGROUP_SOCK_ADDR,
	KERNEL_FEATURE_BPF_SET_RETVAL,
	KERNEL_FEATURE_BTF,
	KERNEL_FEATURE_RING_BUFFER,
	KERNEL_FEATURE_COUNT,
};

struct kernel_features {
	bool present[KERNEL_FEATURE_COUNT];
};

/* The feature's key: "cgroup_sock_addr", "bpf_set_retval", "btf",
 * "ring_buffer" (the Lua table's keys, and the words of the variable below). */
const char *kernel_feature_key(enum kernel_feature f);

/* What a log line calls it: "cgroup sock_addr hooks", "bpf_set_retval",
 * "BTF (/sys/kernel/btf/vmlinux)", "ring buffer". */
const char *kernel_feature_name(enum kernel_feature f);

/*
 * Probes the running kernel (needs the privilege a load needs: a probe that
 * cannot load counts as missing). For the specs only, the environment
 * variable BALANCING_FEATURES_PRETEND_MISSING (keys, comma-separated, e.g.
 * "ring_buffer,bpf_set_retval") marks those as missing whatever the kernel
 * has, so that a spec can see the agent refuse to start (docs/testing.md).
 */
void kernel_features_probe(struct kernel_features *f);

/* The names of the missing features, comma-separated, into buf ("" when
 * none); returns how many are missing. */
int kernel_features_missing_text(const struct kernel_features *f, char *buf, size_t size);

/* kernel_features_probe, then kernel_features_missing_text: 0 when everything is there,
 * else the number missing, with their names in missing. */
int kernel_features_check(char *missing, size_t size);

#endif /* BALANCING_KERNEL_FEATURES_H */
