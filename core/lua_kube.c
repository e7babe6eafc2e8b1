// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The API client class of balancing.core (see lua_kube.h): kube_watch and
 * kube_http on the default libev loop, their callbacks calling Lua. */
#include "lua_kube.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>
#include <lauxlib.h>

#include "kube_http.h"
#include "kube_watch.h"
#include "log.h"
#include "lua_binding.h"

#define CLIENT_MT "balancing.kube_client"
/* The agent follows six kinds; a few to spare. */
enum { FOLLOWED_MAX = 16 };

struct lua_kube;

/* One followed kind: its Lua sink (a table of functions) in the registry. */
struct followed {
	struct lua_kube *client;
	struct kube_watch *watch;
	char kind[64];
	char path[256];
	struct kube_watch_options options; /* kind and path point into this struct */
	struct kube_watch_stats before;    /* counts of the watches rewatch replaced */
	int sink_ref;
};

/* One request with a Lua callback: the answer's body is collected for it. */
struct pending {
	struct pending *next, **prev_next;
	struct lua_kube *client;
	struct kube_request *request;
	int callback_ref;
	char *body;
	size_t len, cap;
};

/* A Lua function to call once, later. */
struct later {
	ev_timer timer;
	struct later *next, **prev_next;
	struct lua_kube *client;
	int callback_ref;
};

struct lua_kube {
	lua_State *L;
	struct ev_loop *loop;
	struct kube_http *http; /* NULL once closed */
	struct followed followed[FOLLOWED_MAX];
	size_t n_followed;
	struct pending *pending;
	struct later *laters;
	int on_turn_ref;
	bool delivered; /* a watch brought something since the last turn */
	/* Lua called from inside a request's or a watch's callbacks: close and
	 * rewatch would free what the C caller goes on using */
	int in_callback;
	ev_prepare turn;
};

static struct lua_kube *check_client(lua_State *L)
{
	struct lua_kube *c = luaL_checkudata(L, 1, CLIENT_MT);

	if (!c->http)
		luaL_error(L, "the API client is closed");
	return c;
}

/* --- calling Lua from the loop ------------------------------------------------- */

static int traceback(lua_State *L)
{
	luaL_traceback(L, L, lua_tostring(L, 1), 1);
	return 1;
}

/* f(args) with nargs on the stack above f; nresults pushed, or -1 with the
 * error logged naming what. */
static int call_lua(lua_State *L, int nargs, int nresults, const char *what, const char *kind)
{
	int handler = lua_gettop(L) - nargs;

	lua_pushcfunction(L, traceback);
	lua_insert(L, handler);
	if (lua_pcall(L, nargs, nresults, handler)) {
		log_line(LOG_LEVEL_ERROR, "lua error", "in", what, "kind", kind, "error",
			 lua_tostring(L, -1), NULL);
		lua_settop(L, handler - 1);
		return -1;
	}
	lua_remove(L, handler);
	return 0;
}

/* call_lua from inside a request's or a watch's callbacks: the client
 * refuses close and rewatch meanwhile. */
static int call_lua_in_callback(struct lua_kube *c, int nargs, int nresults, const char *what,
				const char *kind)
{
	int result;

	c->in_callback++;
	result = call_lua(c->L, nargs, nresults, what, kind);
	c->in_callback--;
	return result;
}

/* sink[name](arg) — arg a string when given — with nresults left on the
 * stack; false, with the stack as it was, when the sink has no such
 * function or it failed (logged). */
static bool call_sink(struct followed *f, const char *name, const char *arg, size_t len, int nresults)
{
	lua_State *L = f->client->L;

	lua_rawgeti(L, LUA_REGISTRYINDEX, f->sink_ref);
	lua_getfield(L, -1, name);
	lua_remove(L, -2);
	if (!lua_isfunction(L, -1)) {
		lua_pop(L, 1);
		return false;
	}
	if (arg)
		lua_pushlstring(L, arg, len);
	return call_lua_in_callback(f->client, arg ? 1 : 0, nresults, name, f->kind) == 0;
}

static int sink_list_page(void *ctx, const char *body, size_t len, char **next)
{
	struct followed *f = ctx;
	lua_State *L = f->client->L;
	int top = lua_gettop(L), result = -1;

	*next = NULL;
	if (call_sink(f, "list_page", body, len, 1)) {
		if (lua_type(L, -1) == LUA_TSTRING) {
			*next = strdup(lua_tostring(L, -1));
			result = *next ? 0 : -1;
		} else if (lua_toboolean(L, -1)) {
			f->client->delivered = true;
			result = 0;
		}
	}
	lua_settop(L, top);
	return result;
}

static void sink_list_restarted(void *ctx)
{
	call_sink(ctx, "list_restarted", NULL, 0, 0);
}

static enum kube_line_result sink_watch_line(void *ctx, const char *line, size_t len)
{
	static const char *const names[] = {"event", "bookmark", "relist", "skipped", "error", NULL};
	struct followed *f = ctx;
	lua_State *L = f->client->L;
	int top = lua_gettop(L);
	enum kube_line_result result = KUBE_LINE_SKIPPED;

	if (call_sink(f, "watch_line", line, len, 1) && lua_type(L, -1) == LUA_TSTRING) {
		for (int i = 0; names[i]; i++)
			if (strcmp(names[i], lua_tostring(L, -1)) == 0)
				result = (enum kube_line_result)i;
	}
	if (result == KUBE_LINE_EVENT)
		f->client->delivered = true;
	lua_settop(L, top);
	return result;
}

static char *sink_resource_version(void *ctx)
{
	struct followed *f = ctx;
	lua_State *L = f->client->L;
	int top = lua_gettop(L);
	char *version = NULL;

	if (call_sink(f, "resource_version", NULL, 0, 1) && lua_type(L, -1) == LUA_TSTRING)
		version = strdup(lua_tostring(L, -1));
	lua_settop(L, top);
	return version;
}

static const struct kube_watch_sink LUA_SINK = {sink_list_page, sink_list_restarted,
						sink_watch_line, sink_resource_version};

/* Once per loop turn, after what the turn's watches delivered: on_turn(). */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct lua_kube *c = w->data;

	(void)loop;
	(void)revents;
	if (!c->delivered || c->on_turn_ref == LUA_NOREF)
		return;
	c->delivered = false;
	lua_rawgeti(c->L, LUA_REGISTRYINDEX, c->on_turn_ref);
	call_lua(c->L, 0, 0, "on_turn", NULL);
}

/* --- core.kube_client(access) ---------------------------------------------------- */

static const char *opt_string(lua_State *L, int idx, const char *field)
{
	const char *value;

	lua_getfield(L, idx, field);
	/* a string only: the table keeps it alive once popped (a number's
	 * conversion would live only on the stack) */
	value = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	lua_pop(L, 1);
	return value;
}

static double opt_number(lua_State *L, int idx, const char *field, double fallback)
{
	double value;

	lua_getfield(L, idx, field);
	value = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : fallback;
	lua_pop(L, 1);
	return value;
}

int lua_kube_new(lua_State *L)
{
	struct kube_access access;
	struct lua_kube *c;
	struct errmsg e;

	luaL_checktype(L, 1, LUA_TTABLE);
	access = (struct kube_access){
	    .server = opt_string(L, 1, "server"),
	    .ca_file = opt_string(L, 1, "ca_file"),
	    .ca_pem = opt_string(L, 1, "ca_pem"),
	    .cert_file = opt_string(L, 1, "cert_file"),
	    .cert_pem = opt_string(L, 1, "cert_pem"),
	    .key_file = opt_string(L, 1, "key_file"),
	    .key_pem = opt_string(L, 1, "key_pem"),
	    .token = opt_string(L, 1, "token"),
	    .token_file = opt_string(L, 1, "token_file"),
	};
	c = lua_newuserdata(L, sizeof(*c));
	memset(c, 0, sizeof(*c));
	c->L = L;
	c->on_turn_ref = LUA_NOREF;
	c->loop = ev_default_loop(0);
	if (!c->loop)
		return lua_binding_push_plain_error(L, -ENOMEM, "no event loop");
	c->http = kube_http_new(c->loop, &access, &e);
	if (!c->http)
		return lua_binding_push_error(L, -EINVAL, &e);
	luaL_getmetatable(L, CLIENT_MT);
	lua_setmetatable(L, -2);
	ev_prepare_init(&c->turn, on_prepare);
	c->turn.data = c;
	ev_prepare_start(c->loop, &c->turn);
	ev_unref(c->loop); /* the turn hook alone does not keep a loop running */
	return 1;
}

/* client:watch{kind, path, query, optional, page_size, stall_seconds,
 * backoff_initial, backoff_max, sink} → true | nil, err */
static int client_watch(lua_State *L)
{
	struct lua_kube *c = check_client(L);
	struct kube_watch_options options;
	struct followed *f;
	struct errmsg e;

	luaL_checktype(L, 2, LUA_TTABLE);
	options = (struct kube_watch_options){
	    .kind = opt_string(L, 2, "kind"),
	    .path = opt_string(L, 2, "path"),
	    .query = opt_string(L, 2, "query"),
	    .page_size = (long)opt_number(L, 2, "page_size", 500),
	    .stall_seconds = (long)opt_number(L, 2, "stall_seconds", 0),
	    .backoff_initial = opt_number(L, 2, "backoff_initial", 0),
	    .backoff_max = opt_number(L, 2, "backoff_max", 0),
	};
	lua_getfield(L, 2, "optional");
	options.optional = lua_toboolean(L, -1);
	lua_getfield(L, 2, "sink");
	if (!options.kind || !options.path || !lua_istable(L, -1))
		return luaL_error(L, "watch: kind, path and a sink table are needed");
	if (c->n_followed == FOLLOWED_MAX)
		return luaL_error(L, "watch: at most %d kinds", FOLLOWED_MAX);
	f = &c->followed[c->n_followed];
	memset(f, 0, sizeof(*f));
	f->client = c;
	snprintf(f->kind, sizeof(f->kind), "%s", options.kind);
	snprintf(f->path, sizeof(f->path), "%s", options.path);
	f->options = options;
	f->options.kind = f->kind;
	f->options.path = f->path;
	f->options.query = NULL; /* given again to each start */
	f->sink_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the sink */
	f->watch = kube_watch_start(c->http, &options, &LUA_SINK, f, &e);
	if (!f->watch) {
		luaL_unref(L, LUA_REGISTRYINDEX, f->sink_ref);
		return lua_binding_push_error(L, -ENOMEM, &e);
	}
	c->n_followed++;
	lua_pushboolean(L, 1);
	return 1;
}

/* client:rewatch(kind, query) → true | nil, err: the kind followed again
 * with another query, from a new LIST (its sink is told list_restarted);
 * the kind reads as not synced until that list is complete. */
static int client_rewatch(lua_State *L)
{
	struct lua_kube *c = check_client(L);
	const char *kind = luaL_checkstring(L, 2);
	struct kube_watch_options options;
	struct errmsg e;

	if (c->in_callback)
		return luaL_error(L, "rewatch: not from inside the client's callbacks (use after())");
	for (size_t i = 0; i < c->n_followed; i++) {
		struct followed *f = &c->followed[i];

		if (strcmp(f->kind, kind) != 0)
			continue;
		if (f->watch) {
			struct kube_watch_stats stats;

			kube_watch_stats(f->watch, &stats);
			f->before.restarts += stats.restarts;
			f->before.relists += stats.relists;
			f->before.events += stats.events;
		}
		kube_watch_stop(f->watch);
		f->watch = NULL;
		options = f->options;
		options.query = luaL_optstring(L, 3, NULL);
		f->watch = kube_watch_start(c->http, &options, &LUA_SINK, f, &e);
		if (!f->watch) {
			/* keep the slot usable for a later rewatch */
			return lua_binding_push_error(L, -ENOMEM, &e);
		}
		lua_pushboolean(L, 1);
		return 1;
	}
	return luaL_error(L, "rewatch: %s is not followed", kind);
}

/* --- one-off requests ------------------------------------------------------------ */

static void pending_free(struct pending *p)
{
	*p->prev_next = p->next;
	if (p->next)
		p->next->prev_next = p->prev_next;
	luaL_unref(p->client->L, LUA_REGISTRYINDEX, p->callback_ref);
	free(p->body);
	free(p);
}

static bool on_pending_data(void *ctx, long status, const char *data, size_t len)
{
	struct pending *p = ctx;

	(void)status; /* the callback gets it with the whole body */
	if (p->len + len + 1 > p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 4096;
		char *grown;

		while (cap < p->len + len + 1)
			cap *= 2;
		grown = realloc(p->body, cap);
		if (!grown)
			return false;
		p->body = grown;
		p->cap = cap;
	}
	memcpy(p->body + p->len, data, len);
	p->len += len;
	return true;
}

/* callback(status, body, err): status 0 and err for a transport error. */
static void on_pending_done(void *ctx, long status, const char *error, bool aborted)
{
	struct pending *p = ctx;
	struct lua_kube *p_client = p->client;
	lua_State *L = p_client->L;

	lua_rawgeti(L, LUA_REGISTRYINDEX, p->callback_ref);
	lua_pushinteger(L, status);
	lua_pushlstring(L, p->body ? p->body : "", p->len);
	if (error || aborted)
		lua_pushstring(L, error ? error : "out of memory for the answer");
	else
		lua_pushnil(L);
	p->request = NULL;
	pending_free(p);
	call_lua_in_callback(p_client, 3, 0, "request callback", NULL);
}

static const struct kube_request_ops PENDING_OPS = {on_pending_data, on_pending_done};

/* client:request{method, path, content_type, body, on_done} → true | nil, err */
static int client_request(lua_State *L)
{
	struct lua_kube *c = check_client(L);
	struct kube_request_options options;
	struct pending *p;
	const char *path;
	struct errmsg e;

	luaL_checktype(L, 2, LUA_TTABLE);
	options = (struct kube_request_options){
	    .method = opt_string(L, 2, "method"),
	    .content_type = opt_string(L, 2, "content_type"),
	    .body = opt_string(L, 2, "body"),
	    .stall_seconds = (long)opt_number(L, 2, "stall_seconds", 30),
	};
	path = opt_string(L, 2, "path");
	lua_getfield(L, 2, "on_done");
	if (!path || !lua_isfunction(L, -1))
		return luaL_error(L, "request: path and an on_done function are needed");
	p = calloc(1, sizeof(*p));
	if (!p)
		return lua_binding_push_plain_error(L, -ENOMEM, "out of memory");
	p->client = c;
	p->callback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	p->next = c->pending;
	if (p->next)
		p->next->prev_next = &p->next;
	p->prev_next = &c->pending;
	c->pending = p;
	p->request = kube_http_start(c->http, path, &options, &PENDING_OPS, p, &e);
	if (!p->request) {
		pending_free(p);
		return lua_binding_push_error(L, -EIO, &e);
	}
	lua_pushboolean(L, 1);
	return 1;
}

/* --- timers -------------------------------------------------------------------- */

static void later_free(struct later *t)
{
	ev_timer_stop(t->client->loop, &t->timer);
	*t->prev_next = t->next;
	if (t->next)
		t->next->prev_next = t->prev_next;
	luaL_unref(t->client->L, LUA_REGISTRYINDEX, t->callback_ref);
	free(t);
}

static void on_later(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct later *t = (struct later *)w;
	lua_State *L = t->client->L;

	(void)loop;
	(void)revents;
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->callback_ref);
	later_free(t);
	call_lua(L, 0, 0, "timer", NULL);
}

/* client:after(seconds, fn): fn() once, seconds from now (dropped at close). */
static int client_after(lua_State *L)
{
	struct lua_kube *c = check_client(L);
	double seconds = luaL_checknumber(L, 2);
	struct later *t;

	luaL_checktype(L, 3, LUA_TFUNCTION);
	t = calloc(1, sizeof(*t));
	if (!t)
		return lua_binding_push_plain_error(L, -ENOMEM, "out of memory");
	lua_pushvalue(L, 3);
	t->callback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	t->client = c;
	t->next = c->laters;
	if (t->next)
		t->next->prev_next = &t->next;
	t->prev_next = &c->laters;
	c->laters = t;
	ev_timer_init(&t->timer, on_later, seconds > 0 ? seconds : 0., 0.);
	ev_timer_start(c->loop, &t->timer);
	lua_pushboolean(L, 1);
	return 1;
}

/* --- the rest -------------------------------------------------------------------- */

/* client:stats() → { [kind] = {state, synced, restarts, relists, events} } */
static int client_stats(lua_State *L)
{
	struct lua_kube *c = check_client(L);
	struct kube_watch_stats stats;

	lua_createtable(L, 0, (int)c->n_followed);
	for (size_t i = 0; i < c->n_followed; i++) {
		if (c->followed[i].watch)
			kube_watch_stats(c->followed[i].watch, &stats);
		else
			stats = (struct kube_watch_stats){.state = "stopped"};
		lua_createtable(L, 0, 5);
		lua_binding_set_string(L, "state", stats.state);
		lua_binding_set_bool(L, "synced", stats.synced);
		/* counters go on across a rewatch */
		stats.restarts += c->followed[i].before.restarts;
		stats.relists += c->followed[i].before.relists;
		stats.events += c->followed[i].before.events;
		lua_binding_set_number(L, "restarts", (lua_Number)stats.restarts);
		lua_binding_set_number(L, "relists", (lua_Number)stats.relists);
		lua_binding_set_number(L, "events", (lua_Number)stats.events);
		lua_setfield(L, -2, c->followed[i].kind);
	}
	return 1;
}

/* client:on_turn(fn): fn() once per loop turn in which a watch delivered an
 * object (a complete list, an event): the changes of a turn, coalesced. */
static int client_on_turn(lua_State *L)
{
	struct lua_kube *c = check_client(L);

	luaL_checktype(L, 2, LUA_TFUNCTION);
	luaL_unref(L, LUA_REGISTRYINDEX, c->on_turn_ref);
	lua_pushvalue(L, 2);
	c->on_turn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

/* client:run_once([seconds]): one turn of the loop, for callers that own no
 * loop (plan); waits at most seconds (default 1) for something to happen. */
static void on_bound(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents; /* its firing ends the turn: nothing else to do */
}

static int client_run_once(lua_State *L)
{
	struct lua_kube *c = check_client(L);
	ev_timer bound;

	ev_timer_init(&bound, on_bound, luaL_optnumber(L, 2, 1.), 0.);
	ev_timer_start(c->loop, &bound);
	ev_run(c->loop, EVRUN_ONCE);
	ev_timer_stop(c->loop, &bound);
	return 0;
}

static int client_close(lua_State *L)
{
	struct lua_kube *c = luaL_checkudata(L, 1, CLIENT_MT);

	if (!c->http)
		return 0;
	if (c->in_callback)
		return luaL_error(L, "close: not from inside the client's callbacks (use after())");
	for (size_t i = 0; i < c->n_followed; i++) {
		kube_watch_stop(c->followed[i].watch);
		luaL_unref(L, LUA_REGISTRYINDEX, c->followed[i].sink_ref);
	}
	c->n_followed = 0;
	kube_http_free(c->http); /* drops what is in flight, without callbacks */
	c->http = NULL;
	while (c->pending)
		pending_free(c->pending);
	while (c->laters)
		later_free(c->laters);
	ev_ref(c->loop);
	ev_prepare_stop(c->loop, &c->turn);
	luaL_unref(L, LUA_REGISTRYINDEX, c->on_turn_ref);
	c->on_turn_ref = LUA_NOREF;
	return 0;
}

static const luaL_Reg client_methods[] = {
    {"watch", client_watch},     {"rewatch", client_rewatch},   {"request", client_request},
    {"stats", client_stats},
    {"on_turn", client_on_turn}, {"run_once", client_run_once}, {"after", client_after},
    {"close", client_close},
    {NULL, NULL},
};

static const luaL_Reg client_meta[] = {
    {"__gc", client_close},
    {NULL, NULL},
};

void lua_kube_register(lua_State *L)
{
	lua_binding_new_class(L, CLIENT_MT, client_meta, client_methods, true);
}
