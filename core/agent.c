// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "agent.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <lauxlib.h>
#include <lua.h>

#include "dir_watch.h"
#include "kernel_features.h"
#include "log.h"
#include "lua_binding.h"
#include "lua_host.h"
#include "output.h"

#define PROGRAM "balancing-agent"

enum { HTTP_REQUEST_MAX = 4096 };
/* the programs wake the loop per batch of events (EVENT_WAKEUP_FRACTION):
 * the tick takes the rest, so an event waits at most this long */
#define EVENTS_TICK_SECONDS 0.1
/* at the end, what is buffered gets this long to be read */
#define OUTPUT_FLUSH_MS 2000

struct agent {
	struct ev_loop *loop;
	struct lua_host host;
	int ref; /* the Lua agent object, in the registry */
	ev_signal sigterm, sigint;
	/* --manifests followed: a burst of changes is one sync */
	struct dir_watch manifests;
	int http_fd;
	ev_io http_io;
	ev_io events_io; /* the ring buffer's epoll fd (none with --events off) */
	ev_timer tick;	 /* agent:tick(), what is polled rather than watched */
	ev_timer events_tick; /* drops said even when no event follows them */
	/* --lua-dir followed, for live overrides */
	struct dir_watch lua_dir;
};

/* One HTTP request being read: GET lines only, answered and closed. */
struct http_conn {
	ev_io io;
	struct agent *agent;
	size_t len;
	char buf[HTTP_REQUEST_MAX];
};

/* agent:method(), nresults left on the stack; -1 after a logged error. */
static int call_agent(struct agent *a, const char *method, int nresults)
{
	lua_State *L = a->host.L;
	char what[64];

	lua_rawgeti(L, LUA_REGISTRYINDEX, a->ref);
	lua_getfield(L, -1, method);
	lua_insert(L, -2);
	snprintf(what, sizeof(what), "balancing.agent:%s", method);
	return lua_host_pcall(&a->host, 1, nresults, what);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	log_line(LOG_LEVEL_INFO, "stopping: the datapath stays pinned and attached", "signal",
		 w->signum == SIGTERM ? "SIGTERM" : "SIGINT", NULL);
	ev_break(loop, EVBREAK_ALL);
}

static void on_manifests_changed(void *data)
{
	if (call_agent(data, "sync", 0) == 0)
		log_line(LOG_LEVEL_DEBUG, "manifests synced", NULL);
}

static void on_lua_dir_changed(void *data)
{
	call_agent(data, "lua_dir_changed", 0);
}

/* --lua-dir followed, so that an override is swapped in live: 0 or -errno
 * (a missing directory: no ConfigMap mounted). */
static int watch_lua_dir(struct agent *a)
{
	return dir_watch_start(&a->lua_dir, a->loop, a->host.override_dir, DIR_WATCH_OVERRIDE_DEPTH,
			       on_lua_dir_changed, a);
}

/* How often agent:tick() runs: a backend pod's cgroup made after its Pod
 * object is seen within this (docs/agent.md "Loop avoidance"). */
#define TICK_SECONDS 1.0

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	call_agent(w->data, "tick", 0);
}

static void on_events(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	call_agent(w->data, "drain_events", 0);
}

static void on_events_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	call_agent(w->data, "drain_events", 0);
}

/* agent:event_fd() on the loop, when there is one. */
static void watch_events(struct agent *a)
{
	lua_State *L = a->host.L;
	int fd;

	if (call_agent(a, "event_fd", 1))
		return;
	fd = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
	lua_pop(L, 1);
	if (fd < 0)
		return;
	ev_io_init(&a->events_io, on_events, fd, EV_READ);
	a->events_io.data = a;
	ev_io_start(a->loop, &a->events_io);
	/* a turn each tick besides: events short of a batch wake no one, the
	 * ring's drops are counted in the datapath, and the drop line is due
	 * even when the flood has stopped */
	ev_timer_init(&a->events_tick, on_events_tick, EVENTS_TICK_SECONDS, EVENTS_TICK_SECONDS);
	a->events_tick.data = a;
	ev_timer_start(a->loop, &a->events_tick);
}

static void http_close(struct http_conn *c)
{
	ev_io_stop(c->agent->loop, &c->io);
	close(c->io.fd);
	free(c);
}

static void http_respond(struct http_conn *c, int code, const char *reason, const char *type,
			 const char *body, size_t body_len)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n",
			 code, reason, type, body_len);

	/* small answers to a local prober: one write each, best effort */
	if (write(c->io.fd, head, (size_t)n) == n && body_len)
		(void)!write(c->io.fd, body, body_len);
}

static void http_route(struct http_conn *c)
{
	struct agent *a = c->agent;
	lua_State *L = a->host.L;
	int top = lua_gettop(L);
	char path[256] = "";
	size_t len;
	int ready;

	if (sscanf(c->buf, "GET %255s", path) != 1) {
		http_respond(c, 405, "Method Not Allowed", "text/plain", "GET only\n", 9);
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		http_respond(c, 200, "OK", "text/plain", "ok\n", 3);
	} else if (strcmp(path, "/readyz") == 0) {
		ready = call_agent(a, "ready", 1) == 0 && lua_toboolean(L, -1);
		lua_settop(L, top);
		if (ready)
			http_respond(c, 200, "OK", "text/plain", "ready\n", 6);
		else
			http_respond(c, 503, "Service Unavailable", "text/plain", "not ready\n",
				     10);
	} else if (strcmp(path, "/metrics") == 0) {
		if (call_agent(a, "metrics", 1) == 0 && lua_isstring(L, -1)) {
			const char *text = lua_tolstring(L, -1, &len);

			http_respond(c, 200, "OK", "text/plain; version=0.0.4", text, len);
		} else {
			http_respond(c, 500, "Internal Server Error", "text/plain",
				     "metrics failed\n", 15);
		}
		lua_settop(L, top);
	} else {
		http_respond(c, 404, "Not Found", "text/plain", "not found\n", 10);
	}
}

static void on_http_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_conn *c = (struct http_conn *)w;
	ssize_t n;

	(void)loop;
	(void)revents;
	n = read(w->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		http_close(c);
		return;
	}
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	if (strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n")) {
		http_route(c);
		http_close(c);
	} else if (c->len >= sizeof(c->buf) - 1) {
		http_respond(c, 431, "Request Header Fields Too Large", "text/plain", "", 0);
		http_close(c);
	}
}

static void on_http_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct agent *a = w->data;
	struct http_conn *c;
	int fd;

	(void)revents;
	fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->agent = a;
	ev_io_init(&c->io, on_http_read, fd, EV_READ);
	ev_io_start(loop, &c->io);
}

/* The listening socket of --listen ("127.0.0.1:5870"): -errno on failure. */
static int http_listen(const char *listen_on)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	const char *colon = strrchr(listen_on, ':');
	char host[INET_ADDRSTRLEN] = "";
	int fd, one = 1, err;

	if (!colon || (size_t)(colon - listen_on) >= sizeof(host))
		return -EINVAL;
	memcpy(host, listen_on, (size_t)(colon - listen_on));
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
		return -EINVAL;
	addr.sin_port = htons((unsigned short)atoi(colon + 1));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(fd, 64)) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* The directory of --manifests watched (the files directly in it; a
 * ConfigMap's swap shows there too): a burst of changes is one sync. */
static int watch_manifests(struct agent *a, const char *dir)
{
	int err = dir_watch_start(&a->manifests, a->loop, dir, 0, on_manifests_changed, a);

	if (err) {
		log_line(LOG_LEVEL_ERROR, "agent cannot start", "manifests", dir, "error",
			 strerror(-err), NULL);
		return -1;
	}
	return 0;
}

static void push_options(lua_State *L, const struct agent_options *o)
{
	lua_createtable(L, 0, 13);
	lua_binding_set_string(L, "node_name", o->node_name);
	lua_binding_set_string(L, "manifests", o->manifests);
	lua_binding_set_string(L, "kubeconfig", o->kubeconfig);
	lua_binding_set_string(L, "cgroup", o->cgroup);
	lua_binding_set_string(L, "bpffs", o->bpffs);
	lua_binding_set_string(L, "run_dir", o->run_dir);
	lua_binding_set_string(L, "bpf_log_level", o->bpf_log_level);
	lua_binding_set_number(L, "redirect_qos_limit", o->redirect_qos_limit);
	lua_binding_set_string(L, "events", o->events);
	lua_binding_set_bool(L, "out_cluster", o->out_cluster);
	lua_binding_set_string(L, "service_proxy_name", o->service_proxy_name);
}

/* require("balancing.agent").start(options): the agent object in the
 * registry; -1 with the reason logged, or -2 for a bad command line. */
static int start_lua_agent(struct agent *a, const struct agent_options *opts)
{
	lua_State *L = a->host.L;

	lua_getglobal(L, "require");
	lua_pushstring(L, "balancing.agent");
	if (lua_host_pcall(&a->host, 1, 1, "balancing.agent"))
		return -1;
	lua_getfield(L, -1, "start");
	lua_remove(L, -2);
	push_options(L, opts);
	if (lua_host_pcall(&a->host, 1, 3, "balancing.agent.start"))
		return -1;
	if (lua_isnil(L, -3)) {
		const char *how = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
		bool usage = strcmp(how, "usage") == 0;

		/* a bad command line (a kubeconfig it cannot use) is said on
		 * stderr, as for the options, and nothing was loaded; "logged":
		 * the Lua side said it already, with its own fields */
		if (usage)
			fprintf(stderr, PROGRAM ": %s\n", lua_tostring(L, -2));
		else if (strcmp(how, "logged") != 0)
			log_line(LOG_LEVEL_ERROR, "agent cannot start", "error", lua_tostring(L, -2),
				 NULL);
		lua_pop(L, 3);
		return usage ? -2 : -1;
	}
	lua_pop(L, 2);
	a->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

int agent_run(const struct agent_options *opts)
{
	struct agent a = {.ref = LUA_NOREF, .http_fd = -1};
	char missing[256];
	int status = 1, ret, lua_dir_err = 0, err;
	struct output out;
	bool capacity_bad;
	size_t capacity = output_capacity_from_env(&capacity_bad);

	log_set_stream(stdout);
	/* a peer that closed its end (the API server cutting a connection, a
	 * prober gone) is an error on that write, never the end of the agent;
	 * OpenSSL writes with write(2), which raises SIGPIPE */
	signal(SIGPIPE, SIG_IGN);
	/* before anything is loaded or pinned (the Lua start then checks the
	 * API access and mounts cgroup2 at --cgroup when needed, in that order) */
	if (kernel_features_check(missing, sizeof(missing))) {
		log_line(LOG_LEVEL_ERROR, "agent cannot start", "missing", missing, NULL);
		return 1;
	}
	/* stdout through a bounded buffer, never blocking the loop: a stalled
	 * reader (a log driver, a full pipe) costs lines, counted, never the
	 * agent (issue 8; docs/agent.md "Output under a stalled reader") */
	fflush(stdout);
	err = output_open(&out, STDOUT_FILENO, capacity);
	if (err)
		log_line(LOG_LEVEL_WARN, "stdout written blocking", "error", strerror(-err), NULL);
	else
		output_set_agent(&out);
	if (capacity_bad)
		log_line(LOG_LEVEL_WARN, "output buffer size not a whole number from 4096 to 2^30: default used",
			 "variable", OUTPUT_CAPACITY_ENV, "value", getenv(OUTPUT_CAPACITY_ENV), NULL);
	if (lua_host_open(&a.host, PROGRAM, opts->lua_dir))
		goto out;
	a.loop = ev_default_loop(EVFLAG_AUTO);
	if (!a.loop) {
		log_line(LOG_LEVEL_ERROR, "agent cannot start", "error", "no event loop", NULL);
		goto out;
	}
	/* the endpoint and the directory watch before the first sync: a change
	 * during it is seen, and a prober gets "not ready" rather than nothing */
	a.http_fd = http_listen(opts->listen);
	if (a.http_fd < 0) {
		log_line(LOG_LEVEL_ERROR, "agent cannot start", "listen", opts->listen, "error",
			 strerror(-a.http_fd), NULL);
		goto out;
	}
	if (opts->manifests && watch_manifests(&a, opts->manifests))
		goto out;
	/* before the first sync (which reads the directory), so that a change
	 * made meanwhile is seen once the loop runs; said after the start, so
	 * that a start refused is one line */
	lua_dir_err = watch_lua_dir(&a);
	ret = start_lua_agent(&a, opts);
	if (ret) {
		status = ret == -2 ? 2 : 1;
		goto out;
	}

	if (!err)
		output_attach(&out, a.loop);
	ev_signal_init(&a.sigterm, on_signal, SIGTERM);
	ev_signal_init(&a.sigint, on_signal, SIGINT);
	ev_signal_start(a.loop, &a.sigterm);
	ev_signal_start(a.loop, &a.sigint);
	ev_io_init(&a.http_io, on_http_accept, a.http_fd, EV_READ);
	a.http_io.data = &a;
	ev_io_start(a.loop, &a.http_io);
	watch_events(&a);
	ev_timer_init(&a.tick, on_tick, TICK_SECONDS, TICK_SECONDS);
	a.tick.data = &a;
	ev_timer_start(a.loop, &a.tick);
	if (lua_dir_err)
		log_line(LOG_LEVEL_INFO, "Lua override directory not followed", "path",
			 a.host.override_dir, "error", strerror(-lua_dir_err), NULL);
	log_line(LOG_LEVEL_INFO, "agent running", "node", opts->node_name, "source",
		 opts->manifests ? opts->manifests : "API server", "listen", opts->listen, NULL);

	ev_run(a.loop, 0);
	call_agent(&a, "stop", 0);
	status = 0;
out:
	dir_watch_stop(&a.lua_dir);
	if (a.http_fd >= 0)
		close(a.http_fd);
	dir_watch_stop(&a.manifests);
	lua_host_close(&a.host);
	if (!err) {
		/* a normal stop loses nothing: the reader gets a bounded while
		 * to take what waits (then it is lost, said on stderr once the
		 * fd's flags are back: stderr may be the same open pipe) */
		size_t lost = output_flush(&out, OUTPUT_FLUSH_MS) ? out.len : 0;

		output_close(&out);
		if (lost)
			fprintf(stderr, PROGRAM ": %zu bytes of output lost: stdout not read\n", lost);
	}
	return status;
}
