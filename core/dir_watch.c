// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "dir_watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

/* A burst of file events (an editor's save, a ConfigMap swap) is one
 * callback, this long after its last event. */
#define DIR_WATCH_DEBOUNCE_SECONDS 0.05

#define DIR_WATCH_EVENTS                                                                           \
	(IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB |        \
	 IN_MODIFY)

/* Watches path and, depth levels down, its subdirectories (stat follows
 * symlinks; hidden entries such as ..data are reached through the names
 * that point into them). Adding a watch twice to one directory is harmless:
 * inotify gives the same descriptor. */
static void add_watches(int fd, const char *path, int depth)
{
	char child[PATH_MAX];
	struct dirent *entry;
	struct stat st;
	DIR *d;

	if (inotify_add_watch(fd, path, DIR_WATCH_EVENTS) < 0 || depth == 0)
		return;
	d = opendir(path);
	if (!d)
		return;
	while ((entry = readdir(d))) {
		if (entry->d_name[0] == '.')
			continue;
		if (snprintf(child, sizeof(child), "%s/%s", path, entry->d_name) >=
		    (int)sizeof(child))
			continue;
		if (stat(child, &st) == 0 && S_ISDIR(st.st_mode))
			add_watches(fd, child, depth - 1);
	}
	closedir(d);
}

static void on_debounce(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct dir_watch *w = t->data;

	(void)loop;
	(void)revents;
	/* directories created by the burst are followed from now on */
	add_watches(w->fd, w->dir, w->depth);
	w->changed(w->data);
}

static void on_inotify(struct ev_loop *loop, ev_io *io, int revents)
{
	struct dir_watch *w = io->data;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	(void)revents;
	/* the events themselves do not matter: the callee reads the tree again */
	while (read(io->fd, buf, sizeof(buf)) > 0)
		;
	ev_timer_stop(loop, &w->debounce);
	ev_timer_set(&w->debounce, DIR_WATCH_DEBOUNCE_SECONDS, 0.);
	ev_timer_start(loop, &w->debounce);
}

int dir_watch_start(struct dir_watch *w, struct ev_loop *loop, const char *dir, int depth,
		    void (*changed)(void *data), void *data)
{
	int err;

	memset(w, 0, sizeof(*w));
	w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->fd < 0)
		return -errno;
	if (inotify_add_watch(w->fd, dir, DIR_WATCH_EVENTS) < 0) {
		err = -errno;
		close(w->fd);
		w->fd = -1;
		return err;
	}
	w->loop = loop;
	w->dir = dir;
	w->depth = depth;
	w->changed = changed;
	w->data = data;
	add_watches(w->fd, dir, depth);
	ev_timer_init(&w->debounce, on_debounce, DIR_WATCH_DEBOUNCE_SECONDS, 0.);
	w->debounce.data = w;
	ev_io_init(&w->io, on_inotify, w->fd, EV_READ);
	w->io.data = w;
	ev_io_start(loop, &w->io);
	return 0;
}

void dir_watch_stop(struct dir_watch *w)
{
	if (!w->loop)
		return;
	ev_io_stop(w->loop, &w->io);
	ev_timer_stop(w->loop, &w->debounce);
	close(w->fd);
	w->fd = -1;
	w->loop = NULL;
}
