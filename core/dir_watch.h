/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A directory tree followed with inotify on the agent's loop: a burst of
 * changes anywhere in the directory or its subdirectories (a few levels,
 * through symlinks, as a ConfigMap mount makes them) is one callback, a
 * short while after the burst's last event. The subdirectories are watched
 * again after every burst, so that a ConfigMap's `..data` swap, which puts a
 * new directory behind the same names, stays followed.
 *
 *   struct dir_watch w;
 *   dir_watch_start(&w, loop, "/etc/balancing/lua", on_changed, data);
 *   ...
 *   dir_watch_stop(&w);
 */
#ifndef BALANCING_DIR_WATCH_H
#define BALANCING_DIR_WATCH_H

#include <ev.h>

struct dir_watch {
	struct ev_loop *loop;
	int fd;
	ev_io io;
	ev_timer debounce;
	const char *dir;
	void (*changed)(void *data);
	void *data;
};

/* 0, or -errno when the directory cannot be watched (nothing is started). */
int dir_watch_start(struct dir_watch *w, struct ev_loop *loop, const char *dir,
		    void (*changed)(void *data), void *data);

/* Stops and closes; a watch that never started (or stopped) is left alone. */
void dir_watch_stop(struct dir_watch *w);

#endif /* BALANCING_DIR_WATCH_H */
