/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One kind followed on the API server, as client-go's reflector does: LIST
 * in pages (limit/continue), then WATCH from the list's resourceVersion with
 * bookmarks, resumed from the last resourceVersion when the server ends it.
 *
 *   - the server ends a watch (its timeoutSeconds): watch again at once;
 *   - 410 Gone (an ERROR event, or a 410 answer) or an expired continue
 *     token: LIST again from scratch; the sink diffs the complete list
 *     against its store, so what was deleted meanwhile is deleted;
 *   - a dropped connection, a 5xx, a refused page, a stall (no byte, not
 *     even a bookmark, for stall_seconds): start again after an exponential
 *     backoff with jitter (from the last resourceVersion when there is one);
 *   - 404 (a custom resource whose CRD is not installed yet): the kind is
 *     empty and synced, one log line, and it is listed again now and then.
 *
 * What the bytes mean is the sink's business (balancing.source in Lua): the
 * watch hands it each complete page and each line of the stream.
 */
#ifndef BALANCING_KUBE_WATCH_H
#define BALANCING_KUBE_WATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "kube_http.h"

enum kube_line_result {
	KUBE_LINE_EVENT,    /* an object changed */
	KUBE_LINE_BOOKMARK, /* progress: only the resourceVersion moved */
	KUBE_LINE_RELIST,   /* 410 Gone: list again from scratch */
	KUBE_LINE_SKIPPED,  /* refused and logged by the sink */
	KUBE_LINE_ERROR,    /* an ERROR event other than 410: the watch failed */
};

struct kube_watch_sink {
	/* A complete LIST page. Returns 0 with *next the continue token
	 * (malloc'd) or NULL when the list is complete, or -1 when the page
	 * was refused (the list starts again later). */
	int (*list_page)(void *ctx, const char *body, size_t len, char **next);
	/* A LIST starts again from its first page: drop the pages so far. */
	void (*list_restarted)(void *ctx);
	/* One line of the WATCH stream (without its newline). */
	enum kube_line_result (*watch_line)(void *ctx, const char *line, size_t len);
	/* Where a WATCH starts: the list's or the last event's or bookmark's
	 * resourceVersion (malloc'd), or NULL. */
	char *(*resource_version)(void *ctx);
};

struct kube_watch_options {
	const char *kind;  /* for log lines: "Service" */
	const char *path;  /* "/api/v1/services" */
	const char *query; /* extra escaped parameters ("labelSelector=..."), or NULL */
	bool optional;     /* a custom resource: 404 means not installed yet */
	long page_size;    /* LIST limit */
	long stall_seconds;
	double backoff_initial, backoff_max; /* seconds */
};

struct kube_watch_stats {
	const char *state; /* "listing", "watching", "waiting" */
	bool synced;       /* one LIST completed (or the kind is not served) */
	unsigned long restarts; /* a watch or list that failed and was started again */
	unsigned long relists;  /* LISTs started again after 410 Gone */
	unsigned long events;
};

struct kube_watch;

/* Starts following the kind at once; NULL with e filled. */
struct kube_watch *kube_watch_start(struct kube_http *http, const struct kube_watch_options *options,
				    const struct kube_watch_sink *sink, void *ctx, struct errmsg *e);
void kube_watch_stop(struct kube_watch *w);
void kube_watch_stats(const struct kube_watch *w, struct kube_watch_stats *stats);

#endif /* BALANCING_KUBE_WATCH_H */
