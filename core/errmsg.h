/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The message that goes with a negative errno. Every core function that can
 * fail returns 0 or -errno and, on failure, fills a struct errmsg the caller
 * passed in, naming the object at fault (map and key, path, program); the
 * Lua binding returns it as `nil, message, -errno`.
 */
#ifndef BALANCING_ERRMSG_H
#define BALANCING_ERRMSG_H

enum { ERRMSG_LEN = 512 };

struct errmsg {
	char text[ERRMSG_LEN];
};

/* "<formatted>: <strerror(-err)>"; returns err (negative) so callers can
 * write `return errmsg_set(e, -ENOENT, "open %s", path);`. A NULL e is
 * allowed and ignored. */
int errmsg_set(struct errmsg *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The formatted text alone, without strerror (for input errors whose text
 * already says everything); returns err. */
int errmsg_plain(struct errmsg *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* BALANCING_ERRMSG_H */
