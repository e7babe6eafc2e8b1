// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "loader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "balancing.h"
#include "balancing.skel.h"
#include "bpffs.h"
#include "cgroup.h"

enum { LOADER_MAX_MAPS = 32 };

struct datapath {
	struct balancing_bpf *skel;
	char pin_dir[PATH_MAX];
	struct bpf_link *links[LOADER_HOOK_COUNT];
	/* the maps pinned by name, in object order */
	struct bpf_map *maps[LOADER_MAX_MAPS];
	bool reused[LOADER_MAX_MAPS];
	/* pins of another layout or ABI: left in place (the running datapath
	 * may use them) until the new object has loaded, then replaced */
	char *stale_pins[LOADER_MAX_MAPS];
	int map_count;
};

static const char *const hook_names[LOADER_HOOK_COUNT] = {
    [LOADER_HOOK_CONNECT4] = "connect4",
    [LOADER_HOOK_SENDMSG4] = "sendmsg4",
    [LOADER_HOOK_RECVMSG4] = "recvmsg4",
    [LOADER_HOOK_GETPEERNAME4] = "getpeername4",
};

const char *loader_hook_name(enum loader_hook hook)
{
	return hook < LOADER_HOOK_COUNT ? hook_names[hook] : "?";
}

static struct bpf_program *hook_program(const struct balancing_bpf *skel, enum loader_hook hook)
{
	switch (hook) {
	case LOADER_HOOK_CONNECT4:
		return skel->progs.balancing_connect4;
	case LOADER_HOOK_SENDMSG4:
		return skel->progs.balancing_sendmsg4;
	case LOADER_HOOK_RECVMSG4:
		return skel->progs.balancing_recvmsg4;
	case LOADER_HOOK_GETPEERNAME4:
		return skel->progs.balancing_getpeername4;
	case LOADER_HOOK_COUNT:
		break;
	}
	return NULL;
}

void loader_options_init(struct loader_options *o, const char *bpffs)
{
	*o = (struct loader_options){
	    .bpffs = bpffs,
	    .max_services = DEFAULT_MAX_SERVICES,
	    .max_backends = DEFAULT_MAX_BACKENDS,
	    .max_affinity = DEFAULT_MAX_AFFINITY,
	    .max_nat_records = DEFAULT_MAX_NAT_RECORDS,
	    .max_tcp_nat_records = DEFAULT_MAX_TCP_NAT_RECORDS,
	    .max_node_ips = DEFAULT_MAX_NODE_IPS,
	    .max_node_proxy_ips = DEFAULT_MAX_NODE_PROXY_IPS,
	    .max_redirect_qos = DEFAULT_MAX_REDIRECT_QOS,
	    .max_redirect_loop = DEFAULT_MAX_REDIRECT_LOOP,
	    .max_translation_counters = DEFAULT_MAX_TRANSLATION_COUNTERS,
	    .event_ring_bytes = DEFAULT_EVENT_RING_BYTES,
	    .count_translations = true,
	};
}

void loader_config_init(struct loader_config *c)
{
	*c = (struct loader_config){
	    .bpf_log_level = -1, .redirect_qos_limit = -1, .node_id = -1, .events = -1};
}

const char *loader_pin_dir(const struct datapath *dp)
{
	return dp->pin_dir;
}

struct bpf_program *loader_stale_udp_program(const struct datapath *dp)
{
	return dp->skel->progs.balancing_stale_udp;
}

int loader_stale_backend_fd(const struct datapath *dp)
{
	return bpf_map__fd(dp->skel->maps.map_stale_backend);
}

/* The pin of a hook's link: "<pin dir>/link_<hook><suffix>". An attach
 * pins a new link at suffix "_new" first (bpffs refuses names with a dot)
 * and renames it over the suffix "" pin. */
static int link_path(const struct datapath *dp, enum loader_hook hook, const char *suffix,
		     char *buf, size_t len)
{
	if (snprintf(buf, len, "%s/link_%s%s", dp->pin_dir, loader_hook_name(hook), suffix) >=
	    (int)len)
		return -ENAMETOOLONG;
	return 0;
}

/* --- load --------------------------------------------------------------------- */

static int is_power_of_two(__u32 n)
{
	return n && !(n & (n - 1));
}

static int set_sizes(struct balancing_bpf *skel, const struct loader_options *o, struct errmsg *e)
{
	const struct {
		struct bpf_map *map;
		const char *option;
		__u32 size;
	} sizes[] = {
	    {skel->maps.map_service, "max_services", o->max_services},
	    {skel->maps.map_backend, "max_backends", o->max_backends},
	    {skel->maps.map_affinity, "max_affinity", o->max_affinity},
	    {skel->maps.map_nat_record, "max_nat_records", o->max_nat_records},
	    {skel->maps.map_nat_record_tcp, "max_tcp_nat_records", o->max_tcp_nat_records},
	    {skel->maps.map_node_ip, "max_node_ips", o->max_node_ips},
	    {skel->maps.map_node_proxy_ip, "max_node_proxy_ips", o->max_node_proxy_ips},
	    {skel->maps.map_redirect_qos, "max_redirect_qos", o->max_redirect_qos},
	    {skel->maps.map_redirect_loop, "max_redirect_loop", o->max_redirect_loop},
	    {skel->maps.map_translations, "max_translation_counters", o->max_translation_counters},
	    {skel->maps.map_event, "event_ring_bytes", o->event_ring_bytes},
	};
	long page = sysconf(_SC_PAGESIZE);
	int err;

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		if (sizes[i].size == 0)
			return errmsg_plain(e, -EINVAL, "%s: must be at least 1", sizes[i].option);
		err = bpf_map__set_max_entries(sizes[i].map, sizes[i].size);
		if (err)
			return errmsg_set(e, err, "%s of %s", sizes[i].option,
					  bpf_map__name(sizes[i].map));
	}
	/* the datapath finds a socket's slot with a mask */
	if (!is_power_of_two(o->max_tcp_nat_records))
		return errmsg_plain(e, -EINVAL, "max_tcp_nat_records %u: must be a power of two",
				    o->max_tcp_nat_records);
	/* the kernel wants a ring of whole pages, a power of two of them */
	if (!is_power_of_two(o->event_ring_bytes) || o->event_ring_bytes < (__u32)page)
		return errmsg_plain(
		    e, -EINVAL,
		    "event_ring_bytes %u: must be a power of two and at least the page size (%ld)",
		    o->event_ring_bytes, page);
	return 0;
}

static void collect_pinned_maps(struct datapath *dp)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, dp->skel->obj)
	{
		if (!bpf_map__pin_path(map) || dp->map_count >= LOADER_MAX_MAPS)
			continue;
		dp->maps[dp->map_count++] = map;
	}
}

/* The checks libbpf makes before it reuses a pinned map (1.1:
 * map_is_reuse_compat); a map that fails them would fail the load. */
static bool layout_matches(const struct bpf_map *map, int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return false;
	return info.type == bpf_map__type(map) && info.key_size == bpf_map__key_size(map) &&
	       info.value_size == bpf_map__value_size(map) &&
	       info.max_entries == bpf_map__max_entries(map) &&
	       info.map_flags == bpf_map__map_flags(map) &&
	       info.map_extra == bpf_map__map_extra(map);
}

/* The pinned map set is of our ABI when its map_configure says so: a map
 * of another ABI may have the same sizes and a different meaning. */
static bool pinned_abi_matches(const struct datapath *dp)
{
	const struct bpf_map *map = dp->skel->maps.map_configure;
	struct configure_key key = {CONFIGURE_INDEX};
	struct configure_value value = {};
	bool ok = false;
	int fd;

	fd = bpf_obj_get(bpf_map__pin_path(map));
	if (fd < 0)
		return false;
	if (layout_matches(map, fd) && bpf_map_lookup_elem(fd, &key, &value) == 0)
		ok = value.abi_version == BALANCING_ABI_VERSION;
	close(fd);
	return ok;
}

/* Remember which pinned maps libbpf will reuse; a pinned map it must not
 * reuse (another layout or ABI) is set aside: libbpf creates that map
 * unpinned, and the old pin stays until the whole object has loaded
 * (replace_stale_pins), so that a load that fails — the verifier, a map too
 * large — leaves every pin as it was. */
static int set_aside_stale_pins(struct datapath *dp, struct errmsg *e)
{
	bool abi_ok = pinned_abi_matches(dp);

	for (int i = 0; i < dp->map_count; i++) {
		const char *path = bpf_map__pin_path(dp->maps[i]);
		int fd = bpf_obj_get(path);

		if (fd < 0 && fd != -ENOENT)
			return errmsg_set(e, fd, "open pinned map %s", path);
		if (fd < 0)
			continue;
		dp->reused[i] = abi_ok && layout_matches(dp->maps[i], fd);
		close(fd);
		if (dp->reused[i])
			continue;
		dp->stale_pins[i] = strdup(path);
		if (!dp->stale_pins[i])
			return errmsg_set(e, -ENOMEM, "set aside stale map %s", path);
		if (bpf_map__set_pin_path(dp->maps[i], NULL))
			return errmsg_set(e, -errno, "set aside stale map %s", path);
	}
	return 0;
}

/* After a load: each new map pinned beside its stale pin, then renamed over
 * it (rename within bpffs replaces the pin at once: no moment without one). */
static int replace_stale_pins(struct datapath *dp, struct errmsg *e)
{
	char tmp[PATH_MAX];
	int err;

	for (int i = 0; i < dp->map_count; i++) {
		const char *path = dp->stale_pins[i];

		if (!path)
			continue;
		if (snprintf(tmp, sizeof(tmp), "%s_new", path) >= (int)sizeof(tmp))
			return errmsg_set(e, -ENAMETOOLONG, "pin map %s", path);
		unlink(tmp); /* left by an agent that died here */
		err = bpf_map__pin(dp->maps[i], tmp);
		if (err)
			return errmsg_set(e, err, "pin map %s", tmp);
		if (rename(tmp, path))
			return errmsg_set(e, -errno, "replace stale map %s", path);
		err = bpf_map__set_pin_path(dp->maps[i], path);
		if (err)
			return errmsg_set(e, err, "pin path of map %s", path);
	}
	return 0;
}

static int copy_pin_dir(struct datapath *dp, const char *bpffs, struct errmsg *e)
{
	size_t len;

	if (!bpffs || !bpffs[0])
		return errmsg_plain(e, -EINVAL, "bpffs: no pin directory given");
	len = strlen(bpffs);
	if (len >= sizeof(dp->pin_dir))
		return errmsg_set(e, -ENAMETOOLONG, "pin directory %s", bpffs);
	memcpy(dp->pin_dir, bpffs, len + 1);
	while (len > 1 && dp->pin_dir[len - 1] == '/')
		dp->pin_dir[--len] = '\0';
	return 0;
}

static int check_config(const struct loader_config *c, struct errmsg *e)
{
	if (c->bpf_log_level > BPF_LOG_VERBOSE)
		return errmsg_plain(e, -EINVAL, "bpf_log_level %lld: at most %d", c->bpf_log_level,
				    BPF_LOG_VERBOSE);
	if (c->redirect_qos_limit > UINT32_MAX)
		return errmsg_plain(e, -EINVAL, "redirect_qos_limit %lld: at most %u",
				    c->redirect_qos_limit, UINT32_MAX);
	if (c->node_id > UINT32_MAX)
		return errmsg_plain(e, -EINVAL, "node_id %lld: at most %u", c->node_id, UINT32_MAX);
	if (c->events > EVENTS_OFF)
		return errmsg_plain(e, -EINVAL, "events %lld: at most %d", c->events, EVENTS_OFF);
	return 0;
}

int loader_load(struct datapath **out, const struct loader_options *o,
		const struct loader_config *config, struct errmsg *e)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	struct datapath *dp;
	int err;

	*out = NULL;
	dp = calloc(1, sizeof(*dp));
	if (!dp)
		return errmsg_set(e, -ENOMEM, "load");
	/* every option checked before anything is created on the system */
	err = copy_pin_dir(dp, o->bpffs, e);
	if (!err)
		err = check_config(config, e);
	if (err)
		goto out;
	opts.pin_root_path = dp->pin_dir;
	dp->skel = balancing_bpf__open_opts(&opts);
	if (!dp->skel) {
		err = errmsg_set(e, -errno, "open BPF object");
		goto out;
	}
	err = set_sizes(dp->skel, o, e);
	if (err)
		goto out;
	dp->skel->rodata->count_translations = o->count_translations;
	dp->skel->rodata->nat_record_tcp_slots = o->max_tcp_nat_records;
	err = bpffs_prepare_dir(dp->pin_dir, e);
	if (err)
		goto out;
	collect_pinned_maps(dp);
	err = set_aside_stale_pins(dp, e);
	if (err)
		goto out;
	err = balancing_bpf__load(dp->skel);
	if (err) {
		/* libbpf has printed the verifier's log to its print callback; the
		 * maps it created are unpinned again, the stale pins untouched */
		err = errmsg_set(e, err, "load BPF programs and maps into %s", dp->pin_dir);
		goto out;
	}
	err = replace_stale_pins(dp, e);
	if (err)
		goto out;
	err = loader_configure(dp, config, e);
out:
	if (err)
		loader_close(dp);
	else
		*out = dp;
	return err;
}

/* --- map_configure ----------------------------------------------------------- */

/* Read, change the fields given, write back: node_id and the log level
 * survive a restart that does not set them. */
int loader_configure(struct datapath *dp, const struct loader_config *c, struct errmsg *e)
{
	int fd = bpf_map__fd(dp->skel->maps.map_configure);
	struct configure_key key = {CONFIGURE_INDEX};
	struct configure_value value = {};
	int err;

	err = check_config(c, e);
	if (err)
		return err;
	err = bpf_map_lookup_elem(fd, &key, &value);
	if (err)
		return errmsg_set(e, err, "read map_configure");
	value.abi_version = BALANCING_ABI_VERSION;
	if (c->bpf_log_level >= 0)
		value.bpf_log_level = (__u32)c->bpf_log_level;
	if (c->redirect_qos_limit >= 0)
		value.redirect_qos_limit = (__u32)c->redirect_qos_limit;
	if (c->node_id >= 0)
		value.node_id = (__u32)c->node_id;
	if (c->events >= 0)
		value.events = (__u32)c->events;
	err = bpf_map_update_elem(fd, &key, &value, BPF_ANY);
	if (err)
		return errmsg_set(e, err, "write map_configure");
	return 0;
}

/* --- attach ------------------------------------------------------------------- */

static int link_info_of_fd(int fd, struct bpf_link_info *info)
{
	__u32 len = sizeof(*info);

	memset(info, 0, sizeof(*info));
	return bpf_obj_get_info_by_fd(fd, info, &len);
}

/* What an attach did to one hook, so that a failure on a later hook can
 * undo it: the datapath is left as it was, not half old and half new. */
struct hook_undo {
	enum { UNDO_NOTHING, UNDO_DETACH, UNDO_RESTORE_PROGRAM } action;
	/* UNDO_RESTORE_PROGRAM: the program before the update, held open (the
	 * link was its only reference: the update would free it) */
	int old_prog_fd;
};

/* A restart: swap the program behind the pinned link, which stays attached
 * throughout (no window without a program). Returns the link (undo records
 * the program it had), or NULL with *old set to the pinned link when it
 * cannot be updated (another cgroup, a defunct link whose cgroup is gone,
 * another attach type) and has to be replaced. */
static struct bpf_link *update_pinned(const char *path, struct bpf_program *prog, __u64 cg_id,
				      struct bpf_link **old, struct hook_undo *undo)
{
	struct bpf_link_info info;
	struct bpf_link *link;

	*old = NULL;
	if (access(path, F_OK))
		return NULL; /* no pin: libbpf would warn about it */
	link = bpf_link__open(path);
	if (!link)
		return NULL;
	if (link_info_of_fd(bpf_link__fd(link), &info) == 0 && info.type == BPF_LINK_TYPE_CGROUP &&
	    info.cgroup.cgroup_id == cg_id) {
		int old_prog_fd = bpf_prog_get_fd_by_id(info.prog_id);

		if (bpf_link__update_program(link, prog) == 0) {
			undo->action = UNDO_RESTORE_PROGRAM;
			undo->old_prog_fd = old_prog_fd;
			return link;
		}
		if (old_prog_fd >= 0)
			close(old_prog_fd);
	}
	*old = link;
	return NULL;
}

/* A new link, pinned at tmp and renamed over path: the pin moves from the
 * old link to the new one in one step. */
static int attach_new(const char *path, const char *tmp, struct bpf_program *prog, int cg_fd,
		      const char *cgroup, struct bpf_link **out, struct errmsg *e)
{
	struct bpf_link *link;
	int err;

	*out = NULL;
	unlink(tmp); /* left over by a crash between pin and rename */
	link = bpf_program__attach_cgroup(prog, cg_fd);
	if (!link)
		return errmsg_set(e, -errno, "attach %s to cgroup %s", bpf_program__name(prog),
				  cgroup);
	err = bpf_link__pin(link, tmp);
	if (err) {
		errmsg_set(e, err, "pin link %s", tmp);
		goto fail;
	}
	if (rename(tmp, path)) {
		err = errmsg_set(e, -errno, "pin link %s", path);
		unlink(tmp);
		goto fail;
	}
	*out = link;
	return 0;
fail:
	bpf_link__destroy(link);
	return err;
}

static int attach_hook(struct datapath *dp, enum loader_hook hook, int cg_fd, __u64 cg_id,
		       const char *cgroup, struct hook_undo *undo, struct errmsg *e)
{
	struct bpf_program *prog = hook_program(dp->skel, hook);
	struct bpf_link *link, *old = NULL;
	char path[PATH_MAX], tmp[PATH_MAX];
	int err;

	if (link_path(dp, hook, "", path, sizeof(path)) ||
	    link_path(dp, hook, "_new", tmp, sizeof(tmp)))
		return errmsg_set(e, -ENAMETOOLONG, "link pin in %s", dp->pin_dir);
	/* our own link of an earlier attach is pinned: let go of the
	 * struct, the pin keeps the link */
	bpf_link__destroy(dp->links[hook]);
	dp->links[hook] = NULL;
	link = update_pinned(path, prog, cg_id, &old, undo);
	if (link) {
		dp->links[hook] = link;
		return 0;
	}
	err = attach_new(path, tmp, prog, cg_fd, cgroup, &link, e);
	/* Dropping our reference is not enough once the new link is in: an
	 * earlier agent still running (a rolling update) holds the old link
	 * and would keep its program on the old cgroup. A failed detach (the
	 * link is defunct, its cgroup gone) leaves nothing to undo. */
	if (!err && old)
		bpf_link__detach(old);
	bpf_link__destroy(old);
	if (!err) {
		dp->links[hook] = link;
		/* a link that replaced another (moved cgroup) is not undone: the
		 * old one is detached already */
		undo->action = old ? UNDO_NOTHING : UNDO_DETACH;
	}
	return err;
}

static int detach_hook(struct datapath *dp, enum loader_hook hook, struct errmsg *e);

/* Undoes what attach_hook did to one hook (best effort: the attach already
 * failed, and its error is the one reported). */
static void undo_hook(struct datapath *dp, enum loader_hook hook, const struct hook_undo *undo)
{
	struct errmsg ignored = {0};

	switch (undo->action) {
	case UNDO_DETACH:
		detach_hook(dp, hook, &ignored);
		break;
	case UNDO_RESTORE_PROGRAM:
		if (undo->old_prog_fd >= 0 && dp->links[hook])
			bpf_link_update(bpf_link__fd(dp->links[hook]), undo->old_prog_fd, NULL);
		break;
	case UNDO_NOTHING:
		break;
	}
}

int loader_attach(struct datapath *dp, const char *cgroup, struct errmsg *e)
{
	struct hook_undo undo[LOADER_HOOK_COUNT];
	__u64 cg_id;
	int cg_fd, err = 0, h;

	for (h = 0; h < LOADER_HOOK_COUNT; h++)
		undo[h] = (struct hook_undo){.action = UNDO_NOTHING, .old_prog_fd = -1};
	cg_fd = cgroup_open(cgroup, e);
	if (cg_fd < 0)
		return cg_fd;
	err = cgroup_id_of(cgroup, &cg_id, e);
	for (h = 0; !err && h < LOADER_HOOK_COUNT; h++)
		err = attach_hook(dp, (enum loader_hook)h, cg_fd, cg_id, cgroup, &undo[h], e);
	if (err) {
		/* a failure part-way: the hooks done so far go back as they were */
		while (--h >= 0)
			undo_hook(dp, (enum loader_hook)h, &undo[h]);
	}
	for (h = 0; h < LOADER_HOOK_COUNT; h++)
		if (undo[h].old_prog_fd >= 0)
			close(undo[h].old_prog_fd);
	close(cg_fd);
	return err;
}

/* --- detach, unpin, close ------------------------------------------------------ */

/* Detaches and unpins the link pinned at path: link when we hold it, else
 * the pin opened; 0 when there is neither. */
static int detach_pinned(const char *path, struct bpf_link *link, struct errmsg *e)
{
	int err;

	if (!link && access(path, F_OK))
		return 0;
	if (!link)
		link = bpf_link__open(path);
	if (!link)
		return errmsg_set(e, -errno, "open pinned link %s", path);
	/* BPF_LINK_DETACH takes the program off the cgroup even while some
	 * other process still holds the link */
	err = bpf_link__detach(link);
	if (err)
		errmsg_set(e, err, "detach link %s", path);
	if (unlink(path) && errno != ENOENT && !err)
		err = errmsg_set(e, -errno, "unpin link %s", path);
	bpf_link__destroy(link);
	return err;
}

/* The hook's link, and one an attach pinned at "_new" and died before
 * renaming, which is attached as well. */
static int detach_hook(struct datapath *dp, enum loader_hook hook, struct errmsg *e)
{
	struct bpf_link *link = dp->links[hook];
	char path[PATH_MAX], tmp[PATH_MAX];
	int err, err_tmp;

	dp->links[hook] = NULL;
	if (link_path(dp, hook, "", path, sizeof(path)) ||
	    link_path(dp, hook, "_new", tmp, sizeof(tmp))) {
		bpf_link__destroy(link);
		return errmsg_set(e, -ENAMETOOLONG, "link pin in %s", dp->pin_dir);
	}
	err = detach_pinned(path, link, e);
	err_tmp = detach_pinned(tmp, NULL, err ? NULL : e);
	return err ? err : err_tmp;
}

int loader_detach(struct datapath *dp, struct errmsg *e)
{
	int err = 0, one;

	/* every hook, even after a failure: leave as little attached as
	 * possible; the first error is the one reported */
	for (int h = LOADER_HOOK_COUNT - 1; h >= 0; h--) {
		one = detach_hook(dp, (enum loader_hook)h, err ? NULL : e);
		if (!err)
			err = one;
	}
	return err;
}

int loader_unpin(struct datapath *dp, struct errmsg *e)
{
	int err = loader_detach(dp, e);
	const char *path;

	for (int i = 0; i < dp->map_count; i++) {
		path = bpf_map__pin_path(dp->maps[i]);
		if (path && unlink(path) && errno != ENOENT && !err)
			err = errmsg_set(e, -errno, "unpin map %s", path);
	}
	if (rmdir(dp->pin_dir) && errno != ENOENT && !err)
		err = errmsg_set(e, -errno, "remove pin directory %s", dp->pin_dir);
	return err;
}

void loader_close(struct datapath *dp)
{
	if (!dp)
		return;
	/* destroying a pinned link's struct only closes our fd */
	for (int h = 0; h < LOADER_HOOK_COUNT; h++)
		bpf_link__destroy(dp->links[h]);
	for (int i = 0; i < dp->map_count; i++)
		free(dp->stale_pins[i]);
	balancing_bpf__destroy(dp->skel);
	free(dp);
}

/* --- maps and links ---------------------------------------------------------- */

static int dup_fd(int fd)
{
	return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

int loader_map(struct datapath *dp, const char *name, struct map_handle *h, struct errmsg *e)
{
	struct bpf_map *map;
	int fd;

	map = bpf_object__find_map_by_name(dp->skel->obj, name);
	if (!map || !bpf_map__pin_path(map))
		return errmsg_plain(e, -ENOENT, "no map named %s", name);
	fd = dup_fd(bpf_map__fd(map));
	if (fd < 0)
		return errmsg_set(e, -errno, "map %s", name);
	return maps_handle_from_fd(h, fd, name, e);
}

int loader_event_fd(struct datapath *dp, struct errmsg *e)
{
	int fd = dup_fd(bpf_map__fd(dp->skel->maps.map_event));

	return fd < 0 ? errmsg_set(e, -errno, "map_event") : fd;
}

int loader_links(struct datapath *dp, struct loader_link_info info[LOADER_HOOK_COUNT],
		 struct errmsg *e)
{
	struct bpf_link_info li;
	char path[PATH_MAX];
	int fd, err = 0;

	for (int h = 0; !err && h < LOADER_HOOK_COUNT; h++) {
		memset(&info[h], 0, sizeof(info[h]));
		if (link_path(dp, (enum loader_hook)h, "", path, sizeof(path)))
			return errmsg_set(e, -ENAMETOOLONG, "links in %s", dp->pin_dir);
		fd = bpf_obj_get(path);
		if (fd == -ENOENT)
			continue;
		if (fd < 0)
			return errmsg_set(e, fd, "open pinned link %s", path);
		if (link_info_of_fd(fd, &li))
			err = errmsg_set(e, -errno, "link info of %s", path);
		info[h] = (struct loader_link_info){true, li.id, li.prog_id, li.cgroup.cgroup_id};
		close(fd);
	}
	return err;
}

int loader_map_count(const struct datapath *dp)
{
	return dp->map_count;
}

const char *loader_map_name(const struct datapath *dp, int i)
{
	return i >= 0 && i < dp->map_count ? bpf_map__name(dp->maps[i]) : NULL;
}

bool loader_map_reused(const struct datapath *dp, int i)
{
	return i >= 0 && i < dp->map_count && dp->reused[i];
}
