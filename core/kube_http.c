// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "kube_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define USER_AGENT "balancing-agent"
#define CONNECT_TIMEOUT_SECONDS 10L
/* A bearer token is a JWT of a few hundred bytes; more is not a token. */
enum { TOKEN_MAX = 16384 };

struct kube_http {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timeout;
	int in_flight;
	struct kube_request *requests; /* in flight, to drop them at free */
	char *server;
	char *ca_file, *ca_pem, *cert_file, *cert_pem, *key_file, *key_pem, *token, *token_file;
};

struct kube_request {
	struct kube_request *next, **prev_next;
	struct kube_http *http;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	const struct kube_request_ops *ops;
	void *ctx;
	bool aborted;
	char error[CURL_ERROR_SIZE];
};

/* One socket curl wants watched. */
struct socket_watch {
	ev_io io;
	struct kube_http *http;
};

static char *copy(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void request_free(struct kube_request *r)
{
	curl_multi_remove_handle(r->http->multi, r->easy);
	*r->prev_next = r->next;
	if (r->next)
		r->next->prev_next = r->prev_next;
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->body);
	r->http->in_flight--;
	free(r);
}

/* Every finished transfer: its callback, then it is freed. A callback may
 * start new requests (they are added, not run, here). */
static void collect_done(struct kube_http *h)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(h->multi, &left))) {
		struct kube_request *r;
		long status = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		if (msg->data.result != CURLE_OK && !r->error[0])
			snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(msg->data.result));
		r->ops->on_done(r->ctx, status, msg->data.result == CURLE_OK ? NULL : r->error,
				r->aborted);
		request_free(r);
	}
}

static void on_socket_ready(struct ev_loop *loop, ev_io *w, int revents)
{
	/* read before curl runs: a connection curl closes in there takes its
	 * watch with it (socket_changed frees it on CURL_POLL_REMOVE) */
	struct kube_http *h = ((struct socket_watch *)w)->http;
	int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;

	(void)loop;
	curl_multi_socket_action(h->multi, w->fd, action, &running);
	collect_done(h);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct kube_http *h = w->data;
	int running;

	(void)loop;
	(void)revents;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect_done(h);
}

/* CURLMOPT_SOCKETFUNCTION: watch (or stop watching) one socket. */
static int socket_changed(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct kube_http *h = userp;
	struct socket_watch *sw = socketp;
	int events;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (sw) {
			ev_io_stop(h->loop, &sw->io);
			free(sw);
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (!sw) {
		sw = calloc(1, sizeof(*sw));
		if (!sw)
			return -1;
		sw->http = h;
		curl_multi_assign(h->multi, fd, sw);
	} else {
		ev_io_stop(h->loop, &sw->io);
	}
	ev_io_init(&sw->io, on_socket_ready, fd, events);
	ev_io_start(h->loop, &sw->io);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: when curl wants to be called without I/O. */
static int timer_changed(CURLM *multi, long timeout_ms, void *userp)
{
	struct kube_http *h = userp;

	(void)multi;
	ev_timer_stop(h->loop, &h->timeout);
	if (timeout_ms >= 0) {
		ev_timer_set(&h->timeout, (double)timeout_ms / 1000.0, 0.);
		ev_timer_start(h->loop, &h->timeout);
	}
	return 0;
}

struct kube_http *kube_http_new(struct ev_loop *loop, const struct kube_access *access,
				struct errmsg *e)
{
	static bool curl_ready;
	struct kube_http *h;

	if (!access->server || !*access->server) {
		errmsg_plain(e, -EINVAL, "API server access: no server URL");
		return NULL;
	}
	if ((access->cert_file || access->cert_pem) != (access->key_file || access->key_pem)) {
		errmsg_plain(e, -EINVAL, "API server access: a client certificate needs its key");
		return NULL;
	}
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
			errmsg_plain(e, -ENOMEM, "libcurl cannot start");
			return NULL;
		}
		curl_ready = true;
	}
	h = calloc(1, sizeof(*h));
	if (!h || !(h->multi = curl_multi_init())) {
		free(h);
		errmsg_plain(e, -ENOMEM, "out of memory for the API client");
		return NULL;
	}
	h->loop = loop;
	h->server = copy(access->server);
	h->ca_file = copy(access->ca_file);
	h->ca_pem = copy(access->ca_pem);
	h->cert_file = copy(access->cert_file);
	h->cert_pem = copy(access->cert_pem);
	h->key_file = copy(access->key_file);
	h->key_pem = copy(access->key_pem);
	h->token = copy(access->token);
	h->token_file = copy(access->token_file);
	ev_timer_init(&h->timeout, on_timeout, 0., 0.);
	h->timeout.data = h;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_changed);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_changed);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

void kube_http_free(struct kube_http *h)
{
	if (!h)
		return;
	/* every request still in flight, without its callback */
	while (h->requests)
		request_free(h->requests);
	ev_timer_stop(h->loop, &h->timeout);
	curl_multi_cleanup(h->multi);
	free(h->server);
	free(h->ca_file);
	free(h->ca_pem);
	free(h->cert_file);
	free(h->cert_pem);
	free(h->key_file);
	free(h->key_pem);
	free(h->token);
	free(h->token_file);
	free(h);
}

static size_t write_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct kube_request *r = userp;
	size_t len = size * nmemb;
	long status = 0;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (r->aborted || !r->ops->on_data(r->ctx, status, data, len)) {
		r->aborted = true;
		return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
	}
	return len;
}

/* The token for this request: the inline one, or the file read now. */
static int bearer_header(const struct kube_http *h, char *out, size_t size, struct errmsg *e)
{
	char token[TOKEN_MAX];
	size_t len = 0;
	FILE *f;

	if (h->token) {
		if (strlen(h->token) >= sizeof(token))
			return errmsg_plain(e, -E2BIG, "the bearer token is too long");
		snprintf(token, sizeof(token), "%s", h->token);
	} else if (h->token_file) {
		f = fopen(h->token_file, "re");
		if (!f)
			return errmsg_set(e, -errno, "token file %s", h->token_file);
		len = fread(token, 1, sizeof(token), f);
		fclose(f);
		if (len == sizeof(token))
			return errmsg_plain(e, -E2BIG, "token file %s: longer than a token", h->token_file);
		token[len] = '\0';
		while (len && (token[len - 1] == '\n' || token[len - 1] == '\r' || token[len - 1] == ' '))
			token[--len] = '\0';
		if (!len)
			return errmsg_plain(e, -EINVAL, "token file %s is empty", h->token_file);
	} else {
		out[0] = '\0';
		return 0;
	}
	/* a token is printable ASCII: anything else (a line break) would
	 * write another header */
	for (const char *p = token; *p; p++) {
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) {
			explicit_bzero(token, sizeof(token));
			return errmsg_plain(e, -EINVAL, "the bearer token has a byte a token cannot have");
		}
	}
	len = (size_t)snprintf(out, size, "Authorization: Bearer %s", token);
	explicit_bzero(token, sizeof(token));
	if (len >= size)
		return errmsg_plain(e, -E2BIG, "the bearer token is too long");
	return 0;
}

static void set_blob(CURL *easy, CURLoption option, const char *pem)
{
	struct curl_blob blob = {.data = (void *)pem, .len = strlen(pem), .flags = CURL_BLOB_COPY};

	curl_easy_setopt(easy, option, &blob);
}

static void set_tls(const struct kube_http *h, CURL *easy)
{
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->ca_pem)
		set_blob(easy, CURLOPT_CAINFO_BLOB, h->ca_pem);
	else if (h->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, h->ca_file);
	if (h->cert_pem)
		set_blob(easy, CURLOPT_SSLCERT_BLOB, h->cert_pem);
	else if (h->cert_file)
		curl_easy_setopt(easy, CURLOPT_SSLCERT, h->cert_file);
	if (h->key_pem)
		set_blob(easy, CURLOPT_SSLKEY_BLOB, h->key_pem);
	else if (h->key_file)
		curl_easy_setopt(easy, CURLOPT_SSLKEY, h->key_file);
}

struct kube_request *kube_http_start(struct kube_http *h, const char *path,
				     const struct kube_request_options *options,
				     const struct kube_request_ops *ops, void *ctx, struct errmsg *e)
{
	char auth[TOKEN_MAX + 64], header[256];
	struct kube_request *r;
	size_t url_len = strlen(h->server) + strlen(path) + 1;
	char *url;
	int err;

	err = bearer_header(h, auth, sizeof(auth), e);
	if (err)
		return NULL;
	r = calloc(1, sizeof(*r));
	url = malloc(url_len);
	if (!r || !url || !(r->easy = curl_easy_init())) {
		free(r);
		free(url);
		errmsg_plain(e, -ENOMEM, "out of memory for a request");
		return NULL;
	}
	snprintf(url, url_len, "%s%s", h->server, path);
	r->http = h;
	r->ops = ops;
	r->ctx = ctx;
	r->headers = curl_slist_append(NULL, "Accept: application/json");
	if (auth[0])
		r->headers = curl_slist_append(r->headers, auth);
	if (options->content_type) {
		snprintf(header, sizeof(header), "Content-Type: %s", options->content_type);
		r->headers = curl_slist_append(r->headers, header);
	}
	explicit_bzero(auth, sizeof(auth));

	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	free(url); /* curl keeps its own copy */
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->error);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, USER_AGENT);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_SECONDS);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	/* one watch per connection: a stall or a drop is seen per stream */
	curl_easy_setopt(r->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(r->easy, CURLOPT_ACCEPT_ENCODING, ""); /* large lists come gzipped */
	if (options->stall_seconds > 0) {
		curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_TIME, options->stall_seconds);
	}
	set_tls(h, r->easy);
	if (options->method && strcmp(options->method, "GET") != 0)
		curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, options->method);
	if (options->body) {
		r->body = strdup(options->body);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(options->body));
	}
	if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
		curl_easy_cleanup(r->easy);
		curl_slist_free_all(r->headers);
		free(r->body);
		free(r);
		errmsg_plain(e, -EIO, "libcurl refused the request");
		return NULL;
	}
	h->in_flight++;
	r->next = h->requests;
	if (r->next)
		r->next->prev_next = &r->next;
	r->prev_next = &h->requests;
	h->requests = r;
	return r;
}

void kube_request_cancel(struct kube_request *r)
{
	if (r)
		request_free(r);
}

int kube_http_in_flight(const struct kube_http *h)
{
	return h->in_flight;
}

struct ev_loop *kube_http_loop(const struct kube_http *h)
{
	return h->loop;
}
