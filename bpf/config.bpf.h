/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * map_configure, the agent's knobs for the datapath. An array lookup with a
 * constant key is inlined by the verifier, so reading it per use is cheap.
 * A map the agent has not written yet reads as zeros: logging off, no
 * LocalRedirect limit.
 */
#ifndef BALANCING_CONFIG_BPF_H
#define BALANCING_CONFIG_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "balancing.h"
#include "maps.bpf.h"

static __always_inline struct configure_value *config_get(void)
{
	__u32 key = CONFIGURE_INDEX;

	return bpf_map_lookup_elem(&map_configure, &key);
}

static __always_inline __u32 config_log_level(void)
{
	struct configure_value *cfg = config_get();

	return cfg ? cfg->bpf_log_level : BPF_LOG_OFF;
}

static __always_inline __u32 config_events(void)
{
	struct configure_value *cfg = config_get();

	return cfg ? cfg->events : EVENTS_ALL;
}

static __always_inline __u32 config_redirect_qos_limit(void)
{
	struct configure_value *cfg = config_get();

	return cfg ? cfg->redirect_qos_limit : 0;
}

#endif /* BALANCING_CONFIG_BPF_H */
