// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "kernel_features.h"

#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#define PRETEND_MISSING_ENV "BALANCING_FEATURES_PRETEND_MISSING"

static const struct {
	const char *key;
	const char *name;
} features_table[KERNEL_FEATURE_COUNT] = {
    [KERNEL_FEATURE_CGROUP_SOCK_ADDR] = {"cgroup_sock_addr", "cgroup sock_addr hooks"},
    [KERNEL_FEATURE_BPF_SET_RETVAL] = {"bpf_set_retval", "bpf_set_retval"},
    [KERNEL_FEATURE_BTF] = {"btf", "BTF (/sys/kernel/btf/vmlinux)"},
    [KERNEL_FEATURE_RING_BUFFER] = {"ring_buffer", "ring buffer"},
};

const char *kernel_feature_key(enum kernel_feature f)
{
	return f < KERNEL_FEATURE_COUNT ? features_table[f].key : "unknown";
}

const char *kernel_feature_name(enum kernel_feature f)
{
	return f < KERNEL_FEATURE_COUNT ? features_table[f].name : "unknown";
}

/* libbpf's probes answer 1 (supported), 0 (not) or a negative errno (could
 * not tell, e.g. no privilege): only 1 is good enough to go on. */
static bool probe_ok(int ret)
{
	return ret == 1;
}

/*
 * bpf_set_retval from a connect4 program, asked by loading one that calls
 * it. Not libbpf_probe_bpf_helper: libbpf 1.1 (Debian 12) recognises a
 * refusal only by the verifier's older wording ("unknown func"), and answers
 * 1 on kernels that say "program of this type cannot use helper".
 */
static bool set_retval_present(void)
{
	const struct bpf_insn insns[] = {
	    {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_1, .imm = 0},
	    {.code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_set_retval},
	    {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1},
	    {.code = BPF_JMP | BPF_EXIT},
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_CGROUP_INET4_CONNECT);
	int fd;

	fd = bpf_prog_load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "balancing_probe", "GPL", insns,
			   sizeof(insns) / sizeof(insns[0]), &opts);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* The vmlinux BTF the loader's CO-RE relocations read: libbpf looks at
 * /sys/kernel/btf/vmlinux first, then the usual vmlinux image paths. */
static bool btf_present(void)
{
	struct btf *btf = btf__load_vmlinux_btf();

	if (!btf)
		return false;
	btf__free(btf);
	return true;
}

static void apply_pretend_missing(struct kernel_features *f)
{
	const char *env = getenv(PRETEND_MISSING_ENV);
	char *copy, *word, *save;

	if (!env || !*env)
		return;
	copy = strdup(env);
	if (!copy)
		return;
	for (word = strtok_r(copy, ", ", &save); word; word = strtok_r(NULL, ", ", &save))
		for (int i = 0; i < KERNEL_FEATURE_COUNT; i++)
			if (strcmp(word, features_table[i].key) == 0)
				f->present[i] = false;
	free(copy);
}

void kernel_features_probe(struct kernel_features *f)
{
	int sock_addr = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, NULL);

	f->present[KERNEL_FEATURE_CGROUP_SOCK_ADDR] = probe_ok(sock_addr);
	/* the helper is only worth asking about where the program type loads */
	f->present[KERNEL_FEATURE_BPF_SET_RETVAL] = probe_ok(sock_addr) && set_retval_present();
	f->present[KERNEL_FEATURE_BTF] = btf_present();
	f->present[KERNEL_FEATURE_RING_BUFFER] =
	    probe_ok(libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL));
	apply_pretend_missing(f);
}

int kernel_features_missing_text(const struct kernel_features *f, char *buf, size_t size)
{
	size_t used = 0;
	int missing = 0;

	if (size)
		buf[0] = '\0';
	for (int i = 0; i < KERNEL_FEATURE_COUNT; i++) {
		if (f->present[i])
			continue;
		if (used < size) {
			int n = snprintf(buf + used, size - used, "%s%s", missing ? ", " : "",
					 features_table[i].name);

			if (n > 0)
				used += (size_t)n;
		}
		missing++;
	}
	return missing;
}

int kernel_features_check(char *missing, size_t size)
{
	struct kernel_features f;

	kernel_features_probe(&f);
	return kernel_features_missing_text(&f, missing, size);
}
