// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The network namespaces of a cgroup subtree's processes (see
 * cgroup_netns.h): cgroup.procs of every directory of the subtree, each
 * pid's /proc/PID/ns/net opened, told apart by device and inode. */
#include "cgroup_netns.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct walk {
	struct cgroup_netns *ns;
	struct stat *seen; /* dev and ino of ns->fds[i], and the caller's at the end */
	size_t seen_cap;
	struct stat self;
};

static bool same_ns(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static int keep(struct walk *w, int fd, const struct stat *st)
{
	struct cgroup_netns *ns = w->ns;

	if (same_ns(st, &w->self))
		return 0;
	for (size_t i = 0; i < ns->count; i++)
		if (same_ns(st, &w->seen[i]))
			return 0;
	if (ns->count == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 16;
		int *fds = realloc(ns->fds, cap * sizeof(*fds));
		struct stat *seen;

		if (!fds)
			return -ENOMEM;
		ns->fds = fds;
		seen = realloc(w->seen, cap * sizeof(*seen));
		if (!seen)
			return -ENOMEM;
		w->seen = seen;
		ns->cap = cap;
	}
	w->seen[ns->count] = *st;
	ns->fds[ns->count++] = fd;
	return 1;
}

static int add_pid(struct walk *w, long pid)
{
	char path[64];
	struct stat st;
	int fd, kept;

	snprintf(path, sizeof(path), "/proc/%ld/ns/net", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* gone meanwhile, or a kernel thread */
	if (fstat(fd, &st)) {
		close(fd);
		return 0;
	}
	kept = keep(w, fd, &st);
	if (kept <= 0)
		close(fd);
	return kept < 0 ? kept : 0;
}

static int add_procs(struct walk *w, const char *dir)
{
	char path[PATH_MAX];
	long pid;
	FILE *f;
	int err = 0;

	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	f = fopen(path, "re");
	if (!f)
		return 0; /* removed meanwhile */
	while (!err && fscanf(f, "%ld", &pid) == 1)
		err = add_pid(w, pid);
	fclose(f);
	return err;
}

/* Depth first; the depth is bounded by PATH_MAX. */
static int walk_dir(struct walk *w, const char *dir)
{
	char child[PATH_MAX];
	struct dirent *d;
	DIR *dp;
	int err = add_procs(w, dir);

	if (err)
		return err;
	dp = opendir(dir);
	if (!dp)
		return 0;
	while (!err && (d = readdir(dp))) {
		if (d->d_type != DT_DIR || d->d_name[0] == '.')
			continue;
		if (snprintf(child, sizeof(child), "%s/%s", dir, d->d_name) >= (int)sizeof(child))
			continue;
		err = walk_dir(w, child);
	}
	closedir(dp);
	return err;
}

int cgroup_netns_collect(struct cgroup_netns *ns, const char *cgroup, struct errmsg *e)
{
	struct walk w = {.ns = ns};
	int err;

	if (stat("/proc/thread-self/ns/net", &w.self))
		return errmsg_set(e, -errno, "stat /proc/thread-self/ns/net");
	err = walk_dir(&w, cgroup);
	free(w.seen);
	if (err) {
		cgroup_netns_free(ns);
		return errmsg_set(e, err, "network namespaces of cgroup %s", cgroup);
	}
	return 0;
}

void cgroup_netns_free(struct cgroup_netns *ns)
{
	for (size_t i = 0; i < ns->count; i++)
		close(ns->fds[i]);
	free(ns->fds);
	*ns = (struct cgroup_netns){0};
}
