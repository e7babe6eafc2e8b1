// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Runs the stale-socket iterator over one request (see stale_sockets.h).
 *
 * The request map is written here and not through core/apply.c: apply
 * keeps the datapath's lasting state (owners, a shadow, a write order that
 * never leaves a frontend without backends), while a request has no owner
 * and lives for one run of the iterator by this process (the map is not
 * even pinned). */
#include "stale_sockets.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "cgroup_netns.h"
#include "loader.h"

/* Reads the iterator to its end: the program runs as the reads walk the
 * sockets, and writes one cookie per socket it destroyed. */
static int run_iterator(struct bpf_link *link, __u64 *destroyed, struct errmsg *e)
{
	__u64 cookies[64];
	ssize_t n;
	int fd;

	fd = bpf_iter_create(bpf_link__fd(link));
	if (fd < 0)
		return errmsg_set(e, -errno, "create the stale UDP socket iterator");
	while ((n = read(fd, cookies, sizeof(cookies))) > 0)
		*destroyed += (__u64)n / sizeof(cookies[0]);
	if (n < 0) {
		int err = -errno;

		close(fd);
		return errmsg_set(e, err, "read the stale UDP socket iterator");
	}
	close(fd);
	return 0;
}

static int clear_request(int map_fd, const struct stale_backend_key *pairs, size_t count,
			 struct errmsg *e)
{
	int err = 0;

	for (size_t i = 0; i < count; i++)
		if (bpf_map_delete_elem(map_fd, &pairs[i]) && errno != ENOENT && !err)
			err = errmsg_set(e, -errno, "clear map_stale_backend");
	return err;
}

/* The iterator walks the sockets of the namespace its fd is created in: it
 * runs in ours, then in each of the cgroup's (this thread enters it and
 * comes back; nothing else runs on the thread meanwhile). */
static int run_everywhere(struct bpf_link *link, const struct cgroup_netns *ns, int home_fd,
			  __u64 *destroyed, struct errmsg *e)
{
	int err = run_iterator(link, destroyed, e);

	for (size_t i = 0; !err && i < ns->count; i++) {
		if (setns(ns->fds[i], CLONE_NEWNET))
			continue; /* its last process is gone: so are its sockets */
		err = run_iterator(link, destroyed, e);
		if (setns(home_fd, CLONE_NEWNET))
			return errmsg_set(e, -errno, "return to the agent's network namespace");
	}
	return err;
}

static int run_request(struct bpf_link *link, const struct cgroup_netns *ns, int home_fd,
		       int map_fd, const struct stale_backend_key *pairs, size_t count,
		       __u64 *destroyed, struct errmsg *e)
{
	const struct stale_backend_value present = {0};
	size_t written = 0;
	int err = 0, cleared;

	for (; written < count; written++) {
		if (bpf_map_update_elem(map_fd, &pairs[written], &present, BPF_ANY)) {
			err = errmsg_set(e, -errno, "write map_stale_backend");
			break;
		}
	}
	if (!err)
		err = run_everywhere(link, ns, home_fd, destroyed, e);
	/* a request left behind would destroy the sockets of a backend that
	 * comes back, at the next run */
	cleared = clear_request(map_fd, pairs, written, err ? NULL : e);
	return err ? err : cleared;
}

int stale_sockets_destroy(struct datapath *dp, const struct stale_backend_key *pairs, size_t count,
			  const char *cgroup, __u64 *destroyed, struct errmsg *e)
{
	int map_fd = loader_stale_backend_fd(dp);
	struct cgroup_netns ns = {0};
	struct bpf_link *link = NULL;
	int home_fd, err = 0;

	*destroyed = 0;
	if (count == 0)
		return 0;
	home_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (home_fd < 0)
		return errmsg_set(e, -errno, "open /proc/thread-self/ns/net");
	if (cgroup)
		err = cgroup_netns_collect(&ns, cgroup, e);
	/* an iterator link is cheap, and one per request keeps nothing open
	 * between applies */
	if (!err) {
		link = bpf_program__attach_iter(loader_stale_udp_program(dp), NULL);
		if (!link)
			err = errmsg_set(e, -errno, "attach the stale UDP socket iterator");
	}
	for (size_t done = 0; !err && done < count; done += MAX_STALE_BACKENDS) {
		size_t run = count - done < MAX_STALE_BACKENDS ? count - done : MAX_STALE_BACKENDS;

		err = run_request(link, &ns, home_fd, map_fd, pairs + done, run, destroyed, e);
	}
	bpf_link__destroy(link);
	cgroup_netns_free(&ns);
	close(home_fd);
	return err;
}
