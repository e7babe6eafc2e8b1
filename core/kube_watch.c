// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "kube_watch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json_strip.h"
#include "log.h"

/* A watch asks the server to end it after a random 5 to 10 minutes, as
 * client-go does, so that watches of many agents do not end together. */
#define WATCH_TIMEOUT_MIN_SECONDS 300
/* A watch that ends this soon with nothing in it counts as a failure: a
 * server that closes every watch at once must not be asked in a tight loop. */
#define WATCH_MIN_HEALTHY_SECONDS 1.0
/* What a kind whose CRD is not installed reads as: empty. */
static const char EMPTY_LIST[] = "{\"kind\":\"List\",\"metadata\":{},\"items\":[]}";

enum watch_state { STATE_LISTING, STATE_WATCHING, STATE_WAITING };

static const char *const STATE_NAMES[] = {"listing", "watching", "waiting"};

struct buffer {
	char *data;
	size_t len, cap;
};

struct kube_watch {
	struct kube_http *http;
	struct ev_loop *loop;
	char *kind, *path, *query;
	bool optional;
	long page_size, stall_seconds;
	double backoff_initial, backoff_max, backoff;
	const struct kube_watch_sink *sink;
	void *ctx;

	enum watch_state state;
	struct kube_request *request;
	struct buffer buf; /* a LIST page, or the WATCH line not yet complete */
	char *continue_token;
	bool relist_wanted; /* a watch line said 410 Gone */
	bool watch_failed;  /* a watch line was an ERROR event */
	bool watch_had_lines;
	bool missing_logged; /* a custom resource not served: said once */
	ev_tstamp watch_started;
	ev_tstamp last_byte; /* of the request in flight */
	ev_timer retry;
	ev_timer stall; /* checks last_byte; no wakeup while bytes flow */
	struct kube_watch_stats stats;
};

static void start_list(struct kube_watch *w);
static void start_watch(struct kube_watch *w);
static void failed(struct kube_watch *w, const char *what, long status, const char *error);

static bool buffer_append(struct buffer *b, const char *data, size_t len)
{
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 65536;
		char *grown;

		while (cap < b->len + len + 1)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (!grown)
			return false;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return true;
}

/* A list page can be megabytes: its buffer is not kept between lists. */
static void buffer_release(struct buffer *b)
{
	free(b->data);
	*b = (struct buffer){0};
}

/* Percent-encoding of a query value (continue tokens are base64). */
static void append_escaped(char *out, size_t size, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(out);

	for (const unsigned char *p = (const unsigned char *)value; *p && len + 4 < size; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '_' || *p == '.' || *p == '~') {
			out[len++] = (char)*p;
		} else {
			out[len++] = '%';
			out[len++] = hex[*p >> 4];
			out[len++] = hex[*p & 15];
		}
	}
	out[len] = '\0';
}

/* The first bytes of an answer, for a log line (a Status says why). */
static void excerpt(const struct buffer *b, char *out, size_t size)
{
	size_t len = b->len < size - 1 ? b->len : size - 1;

	memcpy(out, b->data ? b->data : "", len);
	out[len] = '\0';
}

static double jittered(double seconds)
{
	return seconds * (0.5 + (double)random() / RAND_MAX);
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct kube_watch *w = t->data;
	char *version;

	(void)loop;
	(void)revents;
	/* a watch resumes where it was; a list that failed starts again */
	version = w->stats.synced && !w->continue_token ? w->sink->resource_version(w->ctx) : NULL;
	if (version) {
		free(version);
		start_watch(w);
	} else {
		start_list(w);
	}
}

/* Starts again after the backoff, which doubles up to its maximum. */
static void retry_later(struct kube_watch *w)
{
	double delay = jittered(w->backoff);

	w->state = STATE_WAITING;
	w->backoff = w->backoff * 2 < w->backoff_max ? w->backoff * 2 : w->backoff_max;
	ev_timer_set(&w->retry, delay, 0.);
	ev_timer_start(w->loop, &w->retry);
}

static void failed(struct kube_watch *w, const char *what, long status, const char *error)
{
	char code[16], answer[200];

	snprintf(code, sizeof(code), "%ld", status);
	excerpt(&w->buf, answer, sizeof(answer));
	w->stats.restarts++;
	log_line(LOG_LEVEL_WARN, "API request failed: retrying", "kind", w->kind, "request", what,
		 "status", status ? code : NULL, "error", error ? error : answer, NULL);
	buffer_release(&w->buf);
	retry_later(w);
}

static void relist(struct kube_watch *w, const char *why)
{
	w->stats.relists++;
	log_line(LOG_LEVEL_INFO, "listing again", "kind", w->kind, "reason", why, NULL);
	free(w->continue_token);
	w->continue_token = NULL;
	start_list(w);
}

/* A stall: not one byte (a real server sends a bookmark about every
 * minute) for stall_seconds. Checked by one timer per kind that wakes only
 * at the deadline the last byte set — no timer work per byte, and none
 * while the agent idles (libcurl's own low-speed check would wake it every
 * second per transfer). */
static void on_stall_check(struct ev_loop *loop, ev_timer *t, int revents)
{
	struct kube_watch *w = t->data;
	ev_tstamp left = w->last_byte + (ev_tstamp)w->stall_seconds - ev_now(loop);
	char why[64];

	(void)revents;
	if (!w->request)
		return;
	if (left > 0) {
		ev_timer_set(t, left, 0.);
		ev_timer_start(loop, t);
		return;
	}
	kube_request_cancel(w->request);
	w->request = NULL;
	snprintf(why, sizeof(why), "stalled: no byte for %ld s", w->stall_seconds);
	failed(w, w->state == STATE_LISTING ? "list" : "watch", 0, why);
}

static void got_bytes(struct kube_watch *w)
{
	w->last_byte = ev_now(w->loop);
}

static bool on_list_data(void *ctx, long status, const char *data, size_t len)
{
	struct kube_watch *w = ctx;

	(void)status; /* a page or a Status: read whole in on_list_done */
	got_bytes(w);
	return buffer_append(&w->buf, data, len);
}

/* A custom resource that is not served: the kind reads as empty (synced),
 * and it is listed again now and then until its CRD is installed. */
static void not_served(struct kube_watch *w)
{
	char *next = NULL;

	if (!w->missing_logged)
		log_line(LOG_LEVEL_WARN, "not served (is its CRD installed?): retried", "kind", w->kind,
			 "path", w->path, NULL);
	w->missing_logged = true;
	/* (a 404 on a later page: the next list starts from its first) */
	free(w->continue_token);
	w->continue_token = NULL;
	w->sink->list_restarted(w->ctx);
	if (w->sink->list_page(w->ctx, EMPTY_LIST, sizeof(EMPTY_LIST) - 1, &next) == 0)
		w->stats.synced = true;
	free(next);
	buffer_release(&w->buf);
	w->backoff = w->backoff_max; /* waiting for a CRD is not a failure */
	retry_later(w);
}

static void on_list_done(void *ctx, long status, const char *error, bool aborted)
{
	struct kube_watch *w = ctx;
	char *next = NULL;

	w->request = NULL;
	if (error || aborted) {
		failed(w, "list", status, aborted ? "out of memory for the list" : error);
		return;
	}
	if (status == 410 && w->continue_token) {
		buffer_release(&w->buf);
		relist(w, "continue token expired (410 Gone)");
		return;
	}
	if (status == 404 && w->optional) {
		not_served(w);
		return;
	}
	if (status != 200) {
		failed(w, "list", status, NULL);
		return;
	}
	if (w->buf.data)
		w->buf.len = json_strip_members(w->buf.data, w->buf.len, JSON_STRIP_UNREAD);
	if (w->sink->list_page(w->ctx, w->buf.data ? w->buf.data : "", w->buf.len, &next)) {
		failed(w, "list", status, "the page was refused");
		return;
	}
	buffer_release(&w->buf);
	free(w->continue_token);
	w->continue_token = next;
	if (next) {
		start_list(w);
		return;
	}
	if (w->missing_logged) {
		log_line(LOG_LEVEL_INFO, "now served", "kind", w->kind, NULL);
		w->missing_logged = false;
	}
	w->stats.synced = true;
	w->backoff = w->backoff_initial;
	start_watch(w);
}

static const struct kube_request_ops LIST_OPS = {on_list_data, on_list_done};

static void start_request(struct kube_watch *w, const char *url, const struct kube_request_ops *ops,
			  const char *what)
{
	struct kube_request_options options = {0};
	struct errmsg e;

	w->request = kube_http_start(w->http, url, &options, ops, w, &e);
	if (w->request && w->stall_seconds > 0) {
		got_bytes(w); /* the deadline counts from the start */
		ev_timer_stop(w->loop, &w->stall);
		ev_timer_set(&w->stall, (ev_tstamp)w->stall_seconds, 0.);
		ev_timer_start(w->loop, &w->stall);
	}
	if (!w->request) {
		w->stats.restarts++;
		log_line(LOG_LEVEL_WARN, "API request not started: retrying", "kind", w->kind, "request",
			 what, "error", e.text, NULL);
		retry_later(w);
	}
}

static void start_list(struct kube_watch *w)
{
	char url[4096];

	if (!w->continue_token)
		w->sink->list_restarted(w->ctx);
	w->state = STATE_LISTING;
	buffer_release(&w->buf);
	snprintf(url, sizeof(url), "%s?limit=%ld", w->path, w->page_size);
	if (w->continue_token) {
		strncat(url, "&continue=", sizeof(url) - strlen(url) - 1);
		append_escaped(url, sizeof(url), w->continue_token);
	}
	if (w->query) {
		strncat(url, "&", sizeof(url) - strlen(url) - 1);
		strncat(url, w->query, sizeof(url) - strlen(url) - 1);
	}
	start_request(w, url, &LIST_OPS, "list");
}

/* Each complete line of the stream to the sink; the rest waits for more. */
static bool on_watch_data(void *ctx, long status, const char *data, size_t len)
{
	struct kube_watch *w = ctx;
	size_t start = 0;
	char *newline;

	got_bytes(w);
	if (!buffer_append(&w->buf, data, len))
		return false;
	if (status != 200)
		return true; /* a Status, not a stream: kept whole for the log */
	while ((newline = memchr(w->buf.data + start, '\n', w->buf.len - start))) {
		size_t line_len = (size_t)(newline - (w->buf.data + start));

		*newline = '\0';
		if (line_len) {
			char *line = w->buf.data + start;
			enum kube_line_result result =
			    w->sink->watch_line(w->ctx, line, json_strip_members(line, line_len, JSON_STRIP_UNREAD));

			if (result == KUBE_LINE_RELIST) {
				w->relist_wanted = true;
				return false;
			}
			if (result == KUBE_LINE_ERROR) {
				w->watch_failed = true;
				return false;
			}
			if (result == KUBE_LINE_EVENT)
				w->stats.events++;
			if (result == KUBE_LINE_EVENT || result == KUBE_LINE_BOOKMARK) {
				/* the watch works: the next failure starts from the shortest wait */
				w->watch_had_lines = true;
				w->backoff = w->backoff_initial;
			}
		}
		start += line_len + 1;
	}
	memmove(w->buf.data, w->buf.data + start, w->buf.len - start);
	w->buf.len -= start;
	w->buf.data[w->buf.len] = '\0';
	return true;
}

static void on_watch_done(void *ctx, long status, const char *error, bool aborted)
{
	struct kube_watch *w = ctx;
	bool quick = ev_now(w->loop) - w->watch_started < WATCH_MIN_HEALTHY_SECONDS;

	w->request = NULL;
	if (w->relist_wanted || status == 410) {
		w->relist_wanted = false;
		buffer_release(&w->buf);
		relist(w, "resourceVersion too old (410 Gone)");
		return;
	}
	if (status == 404 && w->optional) {
		/* its CRD went away while watched: the LIST says so (not_served) */
		buffer_release(&w->buf);
		relist(w, "not served any more (404)");
		return;
	}
	if (w->watch_failed) {
		w->watch_failed = false;
		failed(w, "watch", status, "an ERROR event (logged above)");
		return;
	}
	if (aborted && !error)
		error = "out of memory for a watch line";
	if (error || status != 200) {
		failed(w, "watch", status, error);
		return;
	}
	if (quick && !w->watch_had_lines) {
		failed(w, "watch", status, "the server ended the watch at once");
		return;
	}
	/* the server's timeoutSeconds: go on from where the stream was */
	buffer_release(&w->buf);
	start_watch(w);
}

static const struct kube_request_ops WATCH_OPS = {on_watch_data, on_watch_done};

static void start_watch(struct kube_watch *w)
{
	char url[4096];
	char *version = w->sink->resource_version(w->ctx);

	w->state = STATE_WATCHING;
	w->watch_had_lines = false;
	w->watch_started = ev_now(w->loop);
	buffer_release(&w->buf);
	snprintf(url, sizeof(url), "%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=%ld", w->path,
		 WATCH_TIMEOUT_MIN_SECONDS + random() % WATCH_TIMEOUT_MIN_SECONDS);
	if (version) {
		strncat(url, "&resourceVersion=", sizeof(url) - strlen(url) - 1);
		append_escaped(url, sizeof(url), version);
		free(version);
	}
	if (w->query) {
		strncat(url, "&", sizeof(url) - strlen(url) - 1);
		strncat(url, w->query, sizeof(url) - strlen(url) - 1);
	}
	start_request(w, url, &WATCH_OPS, "watch");
}

struct kube_watch *kube_watch_start(struct kube_http *http, const struct kube_watch_options *options,
				    const struct kube_watch_sink *sink, void *ctx, struct errmsg *e)
{
	static bool seeded;
	struct kube_watch *w = calloc(1, sizeof(*w));

	if (!seeded) {
		srandom((unsigned)getpid() ^ (unsigned)ev_time());
		seeded = true;
	}
	if (!w || !(w->kind = strdup(options->kind)) || !(w->path = strdup(options->path)) ||
	    (options->query && !(w->query = strdup(options->query)))) {
		if (w) {
			free(w->kind);
			free(w->path);
		}
		free(w);
		errmsg_plain(e, -ENOMEM, "out of memory for a watch");
		return NULL;
	}
	w->http = http;
	w->loop = kube_http_loop(http);
	w->optional = options->optional;
	w->page_size = options->page_size > 0 ? options->page_size : 500;
	w->stall_seconds = options->stall_seconds;
	w->backoff_initial = options->backoff_initial > 0 ? options->backoff_initial : 0.25;
	w->backoff_max = options->backoff_max > w->backoff_initial ? options->backoff_max : 30.;
	w->backoff = w->backoff_initial;
	w->sink = sink;
	w->ctx = ctx;
	ev_timer_init(&w->retry, on_retry, 0., 0.);
	w->retry.data = w;
	ev_timer_init(&w->stall, on_stall_check, 0., 0.);
	w->stall.data = w;
	start_list(w);
	return w;
}

void kube_watch_stop(struct kube_watch *w)
{
	if (!w)
		return;
	kube_request_cancel(w->request);
	ev_timer_stop(w->loop, &w->retry);
	ev_timer_stop(w->loop, &w->stall);
	buffer_release(&w->buf);
	free(w->continue_token);
	free(w->kind);
	free(w->path);
	free(w->query);
	free(w);
}

void kube_watch_stats(const struct kube_watch *w, struct kube_watch_stats *stats)
{
	*stats = w->stats;
	stats->state = STATE_NAMES[w->state];
}
