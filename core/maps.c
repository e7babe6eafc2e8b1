// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "maps.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "balancing.h"

/* The kernel answers a batch command on a map type without batch support
 * with ENOTSUPP (524, kernel-internal), newer kernels with EOPNOTSUPP; some
 * types say EINVAL. Those mean "do it one by one", nothing worse. */
enum { KERNEL_ENOTSUPP = 524 };

/* ENOTSUPP has no strerror text in user space ("Unknown error 524"). */
static int user_errno(int err)
{
	return err == -KERNEL_ENOTSUPP ? -EOPNOTSUPP : err;
}

/* First chunk of a batched dump; doubled when a hash bucket is larger
 * (ENOSPC). */
enum { DUMP_CHUNK = 256 };

/* --- keys as text --------------------------------------------------------- */

static void format_ipv4(__u32 address, char *buf, size_t len)
{
	if (!inet_ntop(AF_INET, &address, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

static const char *protocol_text(__u8 protocol, char *buf, size_t len)
{
	if (protocol == BALANCING_PROTO_TCP)
		return "TCP";
	if (protocol == BALANCING_PROTO_UDP)
		return "UDP";
	snprintf(buf, len, "%u", protocol);
	return buf;
}

static const char *nat_type_text(__u8 nat_type, char *buf, size_t len)
{
	switch (nat_type) {
	case NAT_TYPE_SERVICE:
		return "service";
	case NAT_TYPE_LOCAL_REDIRECT:
		return "localRedirect";
	case NAT_TYPE_BALANCING:
		return "balancing";
	}
	snprintf(buf, len, "type%u", nat_type);
	return buf;
}

/* "10.96.0.10:53/UDP service"; a NodePort frontend (address 0) is "*". */
static void format_frontend(const struct service_key *k, char *buf, size_t len)
{
	char address[INET_ADDRSTRLEN] = "*", proto[8], type[16];

	if (k->address)
		format_ipv4(k->address, address, sizeof(address));
	snprintf(buf, len, "%s:%u/%s %s", address, ntohs(k->port),
		 protocol_text(k->protocol, proto, sizeof(proto)),
		 nat_type_text(k->nat_type, type, sizeof(type)));
}

static void format_service_key(const void *key, char *buf, size_t len)
{
	format_frontend(key, buf, len);
}

static void format_backend_key(const void *key, char *buf, size_t len)
{
	const struct backend_key *k = key;
	char frontend[96];

	format_frontend(&k->frontend, frontend, sizeof(frontend));
	snprintf(buf, len, "%s slot %u", frontend, k->slot);
}

static void format_netns_frontend_key(const void *key, char *buf, size_t len)
{
	const struct affinity_key *k = key;
	char frontend[96];

	format_frontend(&k->frontend, frontend, sizeof(frontend));
	snprintf(buf, len, "netns %llu %s", (unsigned long long)k->netns_cookie, frontend);
}

static void format_redirect_loop_key(const void *key, char *buf, size_t len)
{
	const struct redirect_loop_key *k = key;
	char frontend[96];

	format_frontend(&k->frontend, frontend, sizeof(frontend));
	snprintf(buf, len, "cgroup %llu %s", (unsigned long long)k->cgroup_id, frontend);
}

static void format_nat_record_key(const void *key, char *buf, size_t len)
{
	const struct nat_record_key *k = key;
	char address[INET_ADDRSTRLEN];

	format_ipv4(k->address, address, sizeof(address));
	snprintf(buf, len, "socket %llu backend %s:%u", (unsigned long long)k->socket_cookie,
		 address, ntohs(k->port));
}

static void format_node_ip_key(const void *key, char *buf, size_t len)
{
	const struct node_ip_key *k = key;

	format_ipv4(k->address, buf, len);
}

static void format_node_proxy_ip_key(const void *key, char *buf, size_t len)
{
	const struct node_proxy_ip_key *k = key;

	snprintf(buf, len, "node %u", k->node_id);
}

static void format_translation_key(const void *key, char *buf, size_t len)
{
	const struct translation_key *k = key;

	snprintf(buf, len, "owner %u type %u reason %u", k->service_id, k->nat_type, k->reason);
}

static void format_configure_key(const void *key, char *buf, size_t len)
{
	const struct configure_key *k = key;

	snprintf(buf, len, "index %u", k->index);
}

static const struct key_format {
	const char *map;
	size_t key_size;
	void (*format)(const void *key, char *buf, size_t len);
} key_formats[] = {
    {"map_service", sizeof(struct service_key), format_service_key},
    {"map_redirect_qos", sizeof(struct service_key), format_service_key},
    {"map_backend", sizeof(struct backend_key), format_backend_key},
    {"map_affinity", sizeof(struct affinity_key), format_netns_frontend_key},
    {"map_redirect_loop", sizeof(struct redirect_loop_key), format_redirect_loop_key},
    {"map_nat_record", sizeof(struct nat_record_key), format_nat_record_key},
    {"map_node_ip", sizeof(struct node_ip_key), format_node_ip_key},
    {"map_node_proxy_ip", sizeof(struct node_proxy_ip_key), format_node_proxy_ip_key},
    {"map_configure", sizeof(struct configure_key), format_configure_key},
    {"map_translations", sizeof(struct translation_key), format_translation_key},
};

static void format_hex(const void *key, size_t size, char *buf, size_t len)
{
	const unsigned char *bytes = key;
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < size && used + 3 < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%02x", bytes[i]);
	if (size == 0)
		snprintf(buf, len, "(none)");
}

void maps_describe_key(const struct map_handle *h, const void *key, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(key_formats) / sizeof(key_formats[0]); i++) {
		const struct key_format *f = &key_formats[i];

		if (strcmp(f->map, h->name) == 0 && f->key_size == h->key_size) {
			f->format(key, buf, len);
			return;
		}
	}
	format_hex(key, h->key_size, buf, len);
}

/* "update map_service key 127.10.0.1:80/TCP service: <why>" */
static int key_error(const struct map_handle *h, const char *op, const void *key, int err,
		     struct errmsg *e)
{
	char text[MAPS_KEY_TEXT_LEN];

	err = user_errno(err);
	maps_describe_key(h, key, text, sizeof(text));
	/* A full hash map answers E2BIG, whose strerror ("Argument list too
	 * long") would send an operator looking in the wrong place. */
	if (err == -E2BIG)
		return errmsg_plain(e, err, "%s %s key %s: map is full (max_entries %u)", op,
				    h->name, text, h->max_entries);
	return errmsg_set(e, err, "%s %s key %s", op, h->name, text);
}

/* --- handles ---------------------------------------------------------------- */

int maps_handle_from_fd(struct map_handle *h, int fd, const char *name, struct errmsg *e)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int err;

	memset(h, 0, sizeof(*h));
	h->fd = -1;
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		err = errmsg_set(e, -errno, "map %s: info", name);
		close(fd);
		return err;
	}
	h->fd = fd;
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->id = info.id;
	h->type = info.type;
	h->key_size = info.key_size;
	h->value_size = info.value_size;
	h->max_entries = info.max_entries;
	h->map_flags = info.map_flags;
	return 0;
}

/* A pinned object's kind shows in the fd's anon inode name
 * ("anon_inode:bpf-map"); map info cannot tell, because the kernel fills
 * whatever info struct matches the object behind the fd. */
static bool fd_is_map(int fd)
{
	char link[64], target[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return strcmp(target, "anon_inode:bpf-map") == 0;
}

int maps_open_pinned(struct map_handle *h, const char *dir, const char *name, struct errmsg *e)
{
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return errmsg_set(e, -ENAMETOOLONG, "pinned map %s/%s", dir, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errmsg_set(e, fd, "open pinned map %s", path);
	if (!fd_is_map(fd)) {
		close(fd);
		return errmsg_plain(e, -ENOTSUP, "%s: not a map", path);
	}
	return maps_handle_from_fd(h, fd, name, e);
}

void maps_handle_close(struct map_handle *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
}

const char *maps_type_name(const struct map_handle *h)
{
	const char *name = libbpf_bpf_map_type_str(h->type);

	return name ? name : "unknown";
}

static bool is_percpu(__u32 type)
{
	return type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       type == BPF_MAP_TYPE_LRU_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

size_t maps_value_bytes(const struct map_handle *h)
{
	int cpus;

	if (!is_percpu(h->type))
		return h->value_size;
	cpus = libbpf_num_possible_cpus();
	if (cpus < 1)
		cpus = 1;
	return (((size_t)h->value_size + 7) & ~(size_t)7) * (size_t)cpus;
}

/* --- single entries ---------------------------------------------------------- */

int maps_update(const struct map_handle *h, const void *key, const void *value, __u64 flags,
		struct errmsg *e)
{
	int err = bpf_map_update_elem(h->fd, key, value, flags);

	return err ? key_error(h, "update", key, err, e) : 0;
}

int maps_lookup(const struct map_handle *h, const void *key, void *value, struct errmsg *e)
{
	int err = bpf_map_lookup_elem(h->fd, key, value);

	return err ? key_error(h, "lookup", key, err, e) : 0;
}

int maps_delete(const struct map_handle *h, const void *key, struct errmsg *e)
{
	int err = bpf_map_delete_elem(h->fd, key);

	return err ? key_error(h, "delete", key, err, e) : 0;
}

/* --- batches ------------------------------------------------------------------ */

static bool batch_unsupported(int err)
{
	return err == -EOPNOTSUPP || err == -KERNEL_ENOTSUPP || err == -EINVAL;
}

static const void *nth(const void *base, size_t size, __u32 i)
{
	return (const unsigned char *)base + size * i;
}

static int update_each(const struct map_handle *h, const void *keys, const void *values,
		       __u32 count, __u64 flags, __u32 *done, struct errmsg *e)
{
	size_t vsize = maps_value_bytes(h);
	int err;

	for (*done = 0; *done < count; (*done)++) {
		err = maps_update(h, nth(keys, h->key_size, *done), nth(values, vsize, *done),
				  flags, e);
		if (err)
			return err;
	}
	return 0;
}

int maps_update_batch(const struct map_handle *h, const void *keys, const void *values, __u32 count,
		      __u64 flags, __u32 *done, struct errmsg *e)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = flags);
	__u32 n = count;
	int err;

	*done = 0;
	if (count == 0)
		return 0;
	/* the kernel's batch takes no NOEXIST/EXIST per element */
	if (flags != BPF_ANY)
		return update_each(h, keys, values, count, flags, done, e);
	err = bpf_map_update_batch(h->fd, keys, values, &n, &opts);
	if (!err) {
		*done = count;
		return 0;
	}
	/* A batch refused as a whole leaves the count as it was; one that
	 * failed at an entry reports how many went in before it. When none
	 * did, one by one says precisely which entry fails and why. */
	if (n >= count || n == 0)
		return update_each(h, keys, values, count, flags, done, e);
	*done = n;
	return key_error(h, "update", nth(keys, h->key_size, n), err, e);
}

static int delete_each(const struct map_handle *h, const void *keys, __u32 from, __u32 count,
		       __u32 *deleted, struct errmsg *e)
{
	int err;

	for (__u32 i = from; i < count; i++) {
		err = maps_delete(h, nth(keys, h->key_size, i), e);
		if (err == -ENOENT)
			continue;
		if (err)
			return err;
		(*deleted)++;
	}
	return 0;
}

int maps_delete_batch(const struct map_handle *h, const void *keys, __u32 count, __u32 *deleted,
		      struct errmsg *e)
{
	LIBBPF_OPTS(bpf_map_batch_opts, opts);
	__u32 at = 0, n;
	int err;

	*deleted = 0;
	while (at < count) {
		n = count - at;
		err = bpf_map_delete_batch(h->fd, nth(keys, h->key_size, at), &n, &opts);
		if (!err) {
			*deleted += count - at;
			return 0;
		}
		if (n >= count - at) /* refused as a whole, see update */
			n = 0;
		*deleted += n;
		at += n;
		if (err == -ENOENT) {
			at++; /* the batch stopped at an absent key: skip it */
			continue;
		}
		return delete_each(h, keys, at, count, deleted, e);
	}
	return 0;
}

/* --- dumps -------------------------------------------------------------------- */

static int dump_reserve(struct map_dump *d, __u32 extra)
{
	unsigned char *keys, *values;
	size_t want;

	if (d->capacity - d->count >= extra)
		return 0;
	want = (size_t)d->count + extra;
	if (want < (size_t)d->capacity * 2)
		want = (size_t)d->capacity * 2;
	if (want > UINT32_MAX)
		return -E2BIG;
	/* +1 so that a zero-sized key or value still gets a buffer */
	keys = realloc(d->keys, want * d->key_size + 1);
	if (!keys)
		return -ENOMEM;
	d->keys = keys;
	values = realloc(d->values, want * d->value_bytes + 1);
	if (!values)
		return -ENOMEM;
	d->values = values;
	d->capacity = (__u32)want;
	return 0;
}

/* The fallback for maps without BPF_MAP_LOOKUP_BATCH: walk the keys. An
 * entry deleted between get_next_key and lookup is simply not listed. */
static int dump_each(const struct map_handle *h, struct map_dump *d, struct errmsg *e)
{
	unsigned char *prev, *next;
	bool first = true;
	int err;

	prev = calloc(2, d->key_size + 1);
	if (!prev)
		return errmsg_set(e, -ENOMEM, "dump %s", h->name);
	next = prev + d->key_size + 1;
	for (;;) {
		err = bpf_map_get_next_key(h->fd, first ? NULL : prev, next);
		if (err == -ENOENT) {
			err = 0;
			break;
		}
		if (err || (err = dump_reserve(d, 1))) {
			err = errmsg_set(e, user_errno(err), "dump %s", h->name);
			break;
		}
		first = false;
		memcpy(prev, next, d->key_size);
		err = bpf_map_lookup_elem(h->fd, next, d->values + d->count * d->value_bytes);
		if (err == -ENOENT)
			continue;
		if (err) {
			err = key_error(h, "dump", next, err, e);
			break;
		}
		memcpy(d->keys + d->count * d->key_size, next, d->key_size);
		d->count++;
	}
	free(prev);
	return err;
}

/* The in and out batch tokens of BPF_MAP_LOOKUP_BATCH: a key for some map
 * types, a u32 bucket or index for others, so sized for both. */
struct batch_cursor {
	unsigned char *buf;
	unsigned char *in;
	unsigned char *out;
	bool first;
};

/* One BPF_MAP_LOOKUP_BATCH round into d: 1 when the map is exhausted, 0
 * when there is more, -errno on failure. */
static int dump_round(const struct map_handle *h, struct map_dump *d, struct batch_cursor *c,
		      __u32 *chunk)
{
	unsigned char *swap;
	__u32 n = *chunk;
	int err;

	err = dump_reserve(d, *chunk);
	if (err)
		return err;
	err = bpf_map_lookup_batch(h->fd, c->first ? NULL : c->in, c->out,
				   d->keys + d->count * d->key_size,
				   d->values + d->count * d->value_bytes, &n, NULL);
	if (err && err != -ENOENT) {
		/* a hash bucket larger than the chunk: retry with more room */
		if (err == -ENOSPC && n == 0) {
			*chunk *= 2;
			return 0;
		}
		return err;
	}
	d->count += n;
	if (err == -ENOENT)
		return 1;
	swap = c->in;
	c->in = c->out;
	c->out = swap;
	c->first = false;
	return 0;
}

int maps_dump(const struct map_handle *h, struct map_dump *d, struct errmsg *e)
{
	size_t token = h->key_size > 8 ? h->key_size : 8;
	struct batch_cursor c = {.first = true};
	__u32 chunk = DUMP_CHUNK;
	int err;

	memset(d, 0, sizeof(*d));
	d->key_size = h->key_size;
	d->value_bytes = maps_value_bytes(h);
	c.buf = calloc(2, token);
	if (!c.buf)
		return errmsg_set(e, -ENOMEM, "dump %s", h->name);
	c.in = c.buf;
	c.out = c.buf + token;
	do {
		err = dump_round(h, d, &c, &chunk);
	} while (err == 0);
	if (err < 0 && c.first && d->count == 0 && batch_unsupported(err))
		err = dump_each(h, d, e);
	else if (err < 0)
		err = errmsg_set(e, user_errno(err), "dump %s", h->name);
	else
		err = 0;
	free(c.buf);
	if (err)
		maps_dump_free(d);
	return err;
}

void maps_dump_free(struct map_dump *d)
{
	free(d->keys);
	free(d->values);
	d->keys = NULL;
	d->values = NULL;
	d->count = d->capacity = 0;
}

/* --- map_configure ------------------------------------------------------------- */

/* One more than the last value: the NULL that ends the list. */
const char *const maps_log_level_names[BPF_LOG_VERBOSE + 2] = {
    [BPF_LOG_OFF] = "off",
    [BPF_LOG_ERROR] = "error",
    [BPF_LOG_INFO] = "info",
    [BPF_LOG_VERBOSE] = "verbose",
};

const char *const maps_event_filter_names[EVENTS_OFF + 2] = {
    [EVENTS_ALL] = "all",
    [EVENTS_FAILURES] = "failures",
    [EVENTS_OFF] = "off",
};

static int check_setting(const char *field, long long value, long long max, const char *expected,
			 struct errmsg *e)
{
	if (value <= max)
		return 0;
	return errmsg_plain(e, -EINVAL, "configure %s %lld: expected %s", field, value, expected);
}

int maps_configure(const struct map_handle *h, const struct maps_configure *c, struct errmsg *e)
{
	struct configure_key key = {CONFIGURE_INDEX};
	struct configure_value value;
	int err;

	err = check_setting("bpf_log_level", c->bpf_log_level, BPF_LOG_VERBOSE,
			    "0 (off) to 3 (verbose)", e);
	if (!err)
		err = check_setting("redirect_qos_limit", c->redirect_qos_limit, UINT32_MAX,
				    "0 (none) to 4294967295", e);
	if (!err)
		err = check_setting("events", c->events, EVENTS_OFF, "0 (all) to 2 (off)", e);
	if (err)
		return err;
	if (c->bpf_log_level < 0 && c->redirect_qos_limit < 0 && c->events < 0)
		return errmsg_plain(e, -EINVAL,
				    "configure: nothing to change (give bpf_log_level, "
				    "redirect_qos_limit or events)");
	if (h->type != BPF_MAP_TYPE_ARRAY || h->key_size != sizeof(key) ||
	    h->value_size != sizeof(value))
		return errmsg_plain(e, -EINVAL,
				    "configure %s: not a map_configure of this version (%s, key %u "
				    "bytes, value %u bytes; expected array, %zu, %zu)",
				    h->name, maps_type_name(h), h->key_size, h->value_size,
				    sizeof(key), sizeof(value));
	err = maps_lookup(h, &key, &value, e);
	if (err)
		return err;
	if (value.abi_version != BALANCING_ABI_VERSION)
		return errmsg_plain(
		    e, -EPROTO,
		    "configure %s: it holds ABI version %u, this build writes version "
		    "%u: left as it is",
		    h->name, value.abi_version, BALANCING_ABI_VERSION);
	if (c->bpf_log_level >= 0)
		value.bpf_log_level = (__u32)c->bpf_log_level;
	if (c->redirect_qos_limit >= 0)
		value.redirect_qos_limit = (__u32)c->redirect_qos_limit;
	if (c->events >= 0)
		value.events = (__u32)c->events;
	return maps_update(h, &key, &value, BPF_EXIST, e);
}
