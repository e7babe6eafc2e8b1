/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A directory followed with inotify on the agent's loop: a burst of changes
 * in the directory or, depth levels down, its subdirectories (through
 * symlinks, as a ConfigMap mount makes them) is one callback, a short while
 * after the burst's last event. The subdirectories are watched again after
 * every burst, so that a ConfigMap's `..data` swap, which puts a new
 * directory behind the same names, stays followed.
 *
 *   struct dir_watch w;
 *   dir_watch_start(&w, loop, "/etc/balancing/lua", DIR_WATCH_OVERRIDE_DEPTH, on_changed, data);
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
	int depth;
	void (*changed)(void *data);
	void *data;
};

/* Levels of subdirectories followed below a Lua override directory: its
 * modules are balancing/reconcile/<module>.lua. */
#define DIR_WATCH_OVERRIDE_DEPTH 3

/* 0, or -errno when the directory cannot be watched (nothing is started).
 * depth 0: the directory's own entries only. */
int dir_watch_start(struct dir_watch *w, struct ev_loop *loop, const char *dir, int depth,
		    void (*changed)(void *data), void *data);

/* Stops and closes; a watch that never started (or stopped) is left alone. */
void dir_watch_stop(struct dir_watch *w);

#endif /* BALANCING_DIR_WATCH_H */
