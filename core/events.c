// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "events.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* What the sample callback returns to stop consuming when a poll has taken
 * its maximum; consume() hands it back (the sample that returned it is
 * already copied). */
enum { STOP_TAKING = -ECANCELED };

/*
 * The ring is read here rather than through libbpf's ring_buffer: libbpf
 * maps the data area twice in a row (2 × the ring, so that a record that
 * wraps reads as one piece), and a mapped ring is resident in full — the
 * default 4 MiB ring counted 8 MiB in the agent's RSS. Mapped once, it
 * counts its 4 MiB; the rare record that wraps is copied (take_sample
 * copies every record anyway). The protocol is the kernel's
 * (kernel/bpf/ringbuf.c) as libbpf's ringbuf_process_ring reads it.
 */
struct events_reader {
	int map_fd;
	int epoll_fd;
	unsigned long *consumer; /* the consumer page, the only writable one */
	const void *producer;	 /* the producer page, then the data, once */
	const unsigned char *data;
	size_t mapped; /* bytes mapped at producer */
	struct balancing_event *items;
	__u32 count;
	__u32 capacity;
	__u32 max;
	bool full;
	bool out_of_memory;
	bool discarding; /* events_discard: count the samples, keep none */
	__s64 realtime_offset_ns;
	/* the ring's positions: how far behind the reader is */
	const unsigned long *consumer_pos;
	const unsigned long *producer_pos;
	size_t page_size;
	__u32 ring_bytes;
};

static int reserve(struct events_reader *r)
{
	struct balancing_event *items;
	__u32 want;

	if (r->count < r->capacity)
		return 0;
	want = r->capacity ? r->capacity * 2 : 64;
	if (want > r->max)
		want = r->max;
	items = realloc(r->items, sizeof(*items) * want);
	if (!items)
		return -ENOMEM;
	r->items = items;
	r->capacity = want;
	return 0;
}

/* A shorter record (an older program) is zero-extended, a longer one (a
 * newer program) truncated: the fields both know are what we can read. */
static int take_sample(void *ctx, void *data, size_t size)
{
	struct events_reader *r = ctx;
	struct balancing_event *item;

	if (r->discarding) {
		if (++r->count < r->max)
			return 0;
		r->full = true;
		return STOP_TAKING;
	}
	if (reserve(r)) {
		r->out_of_memory = true;
		return -ENOMEM;
	}
	item = &r->items[r->count++];
	memset(item, 0, sizeof(*item));
	memcpy(item, data, size < sizeof(*item) ? size : sizeof(*item));
	if (r->count < r->max)
		return 0;
	r->full = true;
	return STOP_TAKING;
}

/* The consumer page (offset 0, read-write), and the producer page (offset
 * one page) with the data after it (read-only), as the kernel lays a BPF
 * ring buffer out for mmap; an epoll fd that is readable when records wait
 * (the loop watches it). */
static int map_ring(struct events_reader *r, struct errmsg *e)
{
	struct bpf_map_info info = {};
	__u32 info_len = sizeof(info);
	struct epoll_event ev = {.events = EPOLLIN};
	void *consumer, *producer;
	int err;

	err = bpf_obj_get_info_by_fd(r->map_fd, &info, &info_len);
	if (err)
		return errmsg_set(e, -errno, "map_event: map info");
	if (info.type != BPF_MAP_TYPE_RINGBUF)
		return errmsg_set(e, -EINVAL, "map_event: not a ring buffer (type %u)", info.type);
	r->ring_bytes = info.max_entries;
	r->page_size = (size_t)sysconf(_SC_PAGESIZE);
	consumer = mmap(NULL, r->page_size, PROT_READ | PROT_WRITE, MAP_SHARED, r->map_fd, 0);
	if (consumer == MAP_FAILED)
		return errmsg_set(e, -errno, "map_event: map the consumer position");
	r->consumer = consumer;
	r->consumer_pos = consumer;
	r->mapped = r->page_size + r->ring_bytes;
	producer = mmap(NULL, r->mapped, PROT_READ, MAP_SHARED, r->map_fd, (off_t)r->page_size);
	if (producer == MAP_FAILED) {
		r->mapped = 0;
		return errmsg_set(e, -errno, "map_event: map the producer position and data");
	}
	r->producer = producer;
	r->producer_pos = producer;
	r->data = (const unsigned char *)producer + r->page_size;
	r->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epoll_fd < 0)
		return errmsg_set(e, -errno, "map_event: epoll");
	if (epoll_ctl(r->epoll_fd, EPOLL_CTL_ADD, r->map_fd, &ev) < 0)
		return errmsg_set(e, -errno, "map_event: epoll");
	return 0;
}

/* A record's length in the ring: its header and its sample, 8-aligned. */
static __u32 record_bytes(__u32 len)
{
	len &= ~(__u32)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
	return (len + BPF_RINGBUF_HDR_SZ + 7) & ~7u;
}

/* Takes the committed records in order, each to take_sample, until the
 * ring is empty, a record is still being written, or take_sample says
 * stop (returned, as libbpf's ring_buffer__consume does). → the number of
 * samples taken, or a negative error. */
static int consume(struct events_reader *r)
{
	unsigned long mask = (unsigned long)r->ring_bytes - 1;
	unsigned long cons = __atomic_load_n(r->consumer, __ATOMIC_ACQUIRE);
	int count = 0;
	bool more;

	do {
		unsigned long prod = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE);

		more = false;
		while (cons < prod) {
			unsigned long at = cons & mask;
			__u32 len =
			    __atomic_load_n((const __u32 *)(r->data + at), __ATOMIC_ACQUIRE);
			int err = 0;

			if (len & BPF_RINGBUF_BUSY_BIT)
				return count;
			more = true;
			cons += record_bytes(len);
			if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
				size_t size =
				    len & ~(__u32)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
				size_t start = (at + BPF_RINGBUF_HDR_SZ) & mask;

				if (start + size <= r->ring_bytes) {
					err = take_sample(r, (void *)(r->data + start), size);
				} else {
					/* wraps: what take_sample keeps, in one piece */
					struct balancing_event copy;
					size_t keep = size < sizeof(copy) ? size : sizeof(copy);
					size_t first = r->ring_bytes - start;

					if (first > keep)
						first = keep;
					memcpy(&copy, r->data + start, first);
					memcpy((unsigned char *)&copy + first, r->data,
					       keep - first);
					err = take_sample(r, &copy, keep);
				}
				if (err < 0) {
					__atomic_store_n(r->consumer, cons, __ATOMIC_RELEASE);
					return err;
				}
				if (count < INT_MAX)
					count++;
			}
			__atomic_store_n(r->consumer, cons, __ATOMIC_RELEASE);
		}
	} while (more);
	return count;
}

/* Waits up to timeout_ms for the ring's fd, then takes what waits. */
static int poll_ring(struct events_reader *r, int timeout_ms)
{
	struct epoll_event ev;

	if (epoll_wait(r->epoll_fd, &ev, 1, timeout_ms) < 0)
		return -errno;
	return consume(r);
}

int events_open(struct events_reader **out, int map_fd, struct errmsg *e)
{
	struct events_reader *r;
	int err;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r) {
		close(map_fd);
		return errmsg_set(e, -ENOMEM, "map_event reader");
	}
	r->map_fd = map_fd;
	r->epoll_fd = -1;
	r->max = EVENTS_DEFAULT_MAX;
	err = map_ring(r, e);
	if (err) {
		events_close(r);
		return err;
	}
	*out = r;
	return 0;
}

int events_open_pinned(struct events_reader **out, const char *bpffs, struct errmsg *e)
{
	char path[PATH_MAX];
	int fd;

	*out = NULL;
	if (snprintf(path, sizeof(path), "%s/map_event", bpffs) >= (int)sizeof(path))
		return errmsg_set(e, -ENAMETOOLONG, "%s/map_event", bpffs);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errmsg_set(e, fd, "open pinned ring buffer %s", path);
	return events_open(out, fd, e);
}

static __s64 clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (__s64)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The programs wake the reader per batch (EVENT_WAKEUP_FRACTION), so the
 * fd does not say that a few events wait: what is there is taken first,
 * and a wait looks at the ring again every slice. */
enum { WAIT_SLICE_MS = 5 };

static int take_waiting(struct events_reader *r, int timeout_ms)
{
	__s64 deadline = clock_ns(CLOCK_MONOTONIC) + (__s64)timeout_ms * 1000000;
	int err = consume(r);

	while (err == 0 && timeout_ms != 0) {
		int slice = WAIT_SLICE_MS;

		if (timeout_ms > 0) {
			__s64 left_ms = (deadline - clock_ns(CLOCK_MONOTONIC)) / 1000000;

			if (left_ms <= 0)
				break;
			if (left_ms < slice)
				slice = (int)left_ms;
		}
		err = poll_ring(r, slice);
	}
	return err;
}

int events_poll(struct events_reader *r, int timeout_ms, __u32 max, struct errmsg *e)
{
	int err;

	r->count = 0;
	r->full = false;
	r->out_of_memory = false;
	r->max = max ? max : EVENTS_DEFAULT_MAX;
	err = take_waiting(r, timeout_ms);
	/* taken at each poll: the wall clock can be stepped while we run */
	r->realtime_offset_ns = clock_ns(CLOCK_REALTIME) - clock_ns(CLOCK_MONOTONIC);
	if (err == STOP_TAKING && r->full)
		return (int)r->count;
	if (r->out_of_memory)
		return errmsg_set(e, -ENOMEM, "map_event: %u events read", r->count);
	if (err == -EINTR)
		return (int)r->count;
	if (err < 0)
		return errmsg_set(e, err, "poll map_event");
	return (int)r->count;
}

int events_discard(struct events_reader *r, __u32 max, struct errmsg *e)
{
	__u32 taken;
	int err;

	r->count = 0;
	r->full = false;
	r->max = max ? max : EVENTS_DEFAULT_MAX;
	r->discarding = true;
	err = consume(r);
	r->discarding = false;
	taken = r->count;
	r->count = 0; /* nothing of this call is for events_get */
	if (err < 0 && err != STOP_TAKING && err != -EINTR)
		return errmsg_set(e, err, "discard map_event: %u events taken", taken);
	return (int)taken;
}

void events_backlog(const struct events_reader *r, __u64 *pending, __u64 *size)
{
	/* the producer's position is published with a release store */
	unsigned long producer = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE);
	unsigned long consumer = __atomic_load_n(r->consumer_pos, __ATOMIC_ACQUIRE);

	*pending = producer - consumer;
	*size = r->ring_bytes;
}

int events_get(const struct events_reader *r, __u32 i, struct event_record *out)
{
	if (i >= r->count)
		return -ERANGE;
	events_decode(&r->items[i], r->realtime_offset_ns, out);
	return 0;
}

int events_fd(const struct events_reader *r)
{
	return r->epoll_fd;
}

void events_close(struct events_reader *r)
{
	if (!r)
		return;
	if (r->consumer)
		munmap(r->consumer, r->page_size);
	if (r->producer)
		munmap((void *)r->producer, r->mapped);
	if (r->epoll_fd >= 0)
		close(r->epoll_fd);
	if (r->map_fd >= 0)
		close(r->map_fd);
	free(r->items);
	free(r);
}

static void format_address(const __u32 address[4], bool is_ipv4, char *buf, size_t len)
{
	if (!inet_ntop(is_ipv4 ? AF_INET : AF_INET6, address, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

void events_decode(const struct balancing_event *raw, __s64 realtime_offset_ns,
		   struct event_record *out)
{
	memset(out, 0, sizeof(*out));
	out->timestamp_ns = raw->timestamp_ns;
	out->time = (double)((__s64)raw->timestamp_ns + realtime_offset_ns) / 1e9;
	out->netns_cookie = raw->netns_cookie;
	out->cgroup_id = raw->cgroup_id;
	out->pid = raw->pid;
	out->service_id = raw->service_id;
	out->protocol = raw->protocol;
	out->nat_type = raw->nat_type;
	out->nat_mode = raw->nat_mode;
	out->reason = raw->reason;
	out->hook = raw->hook;
	out->flags = raw->flags;
	out->is_ipv4 = raw->is_ipv4 != 0;
	out->success = (raw->flags & EVENT_FLAG_SUCCESS) != 0;
	out->redirect_hit_limit = (raw->flags & EVENT_FLAG_REDIRECT_HIT_LIMIT) != 0;
	format_address(raw->original_address, out->is_ipv4, out->original_address,
		       sizeof(out->original_address));
	out->original_port = ntohs(raw->original_port);
	format_address(raw->nat_address, out->is_ipv4, out->nat_address, sizeof(out->nat_address));
	out->nat_port = ntohs(raw->nat_port);
}
