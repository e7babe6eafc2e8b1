/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Requests to the Kubernetes API server on libcurl's multi interface, driven
 * by the libev loop: nothing here blocks. A request streams its body to
 * on_data as it arrives (a WATCH never ends on its own) and calls on_done
 * once, whatever happened.
 *
 * Access is what balancing.kubeconfig reads: the server URL, the CA bundle
 * (file or PEM), an optional client certificate and key (file or PEM), and
 * a bearer token or a token file. TLS is always verified. A token file is
 * read again for each request, as the kubelet rotates service-account
 * tokens; the token never reaches a log line.
 */
#ifndef BALANCING_KUBE_HTTP_H
#define BALANCING_KUBE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "errmsg.h"

struct kube_access {
	const char *server; /* "https://10.0.0.1:6443" (no trailing slash) */
	const char *ca_file, *ca_pem;
	const char *cert_file, *cert_pem;
	const char *key_file, *key_pem;
	const char *token, *token_file;
};

struct kube_http;
struct kube_request;

struct kube_request_ops {
	/* Bytes of the body, with the answer's HTTP status (a watch's stream
	 * is only a stream when it is 200; another status's body is a Status);
	 * return false to abort the request (on_done then comes with aborted
	 * set). */
	bool (*on_data)(void *ctx, long status, const char *data, size_t len);
	/* Once per request (unless cancelled): status is the HTTP status (0
	 * when none came), error a transport error or NULL; aborted when
	 * on_data stopped it. The request is freed after this. */
	void (*on_done)(void *ctx, long status, const char *error, bool aborted);
};

struct kube_request_options {
	const char *method;       /* "GET" by default */
	const char *content_type; /* of body, when there is one */
	const char *body;
	/* Abort when fewer than one byte came in this many seconds (a stalled
	 * watch or list); 0: no limit. */
	long stall_seconds;
};

/* A client of one API server on loop; NULL with e filled when access is
 * unusable (no server, a key without a certificate). Access strings are
 * copied. */
struct kube_http *kube_http_new(struct ev_loop *loop, const struct kube_access *access,
				struct errmsg *e);
/* Aborts what is in flight (on_done is not called any more) and frees.
 * Not from inside a request's callbacks: the client is still in use there. */
void kube_http_free(struct kube_http *h);

/* Starts path ("/api/v1/nodes?limit=500", already escaped) on the server:
 * the request, or NULL with e filled (nothing was started, no callback). */
struct kube_request *kube_http_start(struct kube_http *h, const char *path,
				     const struct kube_request_options *options,
				     const struct kube_request_ops *ops, void *ctx, struct errmsg *e);

/* Drops a request from outside its callbacks: no callback comes any more.
 * From inside on_data, return false instead. */
void kube_request_cancel(struct kube_request *r);

struct ev_loop *kube_http_loop(const struct kube_http *h);

/* Requests in flight, for the specs and /metrics. */
int kube_http_in_flight(const struct kube_http *h);

#endif /* BALANCING_KUBE_HTTP_H */
