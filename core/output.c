/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The running agent's stdout, bounded and never blocking (see output.h). */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* below a page, a single event line could not be buffered */
#define OUTPUT_MIN_CAPACITY 4096u
#define OUTPUT_MAX_CAPACITY (1u << 30)

static struct output *agent_output;

void output_set_agent(struct output *o)
{
	agent_output = o;
}

struct output *output_agent(void)
{
	return agent_output;
}

size_t output_capacity_from_env(bool *bad)
{
	const char *text = getenv(OUTPUT_CAPACITY_ENV);
	unsigned long long value;
	char *end;

	if (bad)
		*bad = false;
	if (!text || !*text)
		return OUTPUT_DEFAULT_CAPACITY;
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno || *end || text[0] == '-' || value < OUTPUT_MIN_CAPACITY ||
	    value > OUTPUT_MAX_CAPACITY) {
		if (bad)
			*bad = true;
		return OUTPUT_DEFAULT_CAPACITY;
	}
	return (size_t)value;
}

int output_open(struct output *o, int fd, size_t capacity)
{
	int flags = fcntl(fd, F_GETFL);

	memset(o, 0, sizeof(*o));
	o->fd = -1;
	if (flags < 0)
		return -errno;
	/* O_NONBLOCK is a flag of the open file, which the process that gave
	 * us fd 1 may share: it is put back at close */
	if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	o->fd = fd;
	o->fd_flags = flags;
	o->capacity = capacity;
	return 0;
}

/* The watcher runs only while something waits: an idle output costs the
 * loop nothing, and a writable fd with nothing to write is no busy loop. */
static void watch_while_pending(struct output *o)
{
	if (!o->loop)
		return;
	if (o->len && !ev_is_active(&o->io))
		ev_io_start(o->loop, &o->io);
	else if (!o->len && ev_is_active(&o->io))
		ev_io_stop(o->loop, &o->io);
}

/* Writes data until it is all out, the reader is full (EAGAIN) or the fd
 * fails (then o->error, and nothing more goes out): the bytes written. */
static size_t write_now(struct output *o, const char *data, size_t len)
{
	size_t done = 0;
	ssize_t n;

	while (done < len && !o->error) {
		n = write(o->fd, data + done, len - done);
		if (n > 0)
			done += (size_t)n;
		else if (n < 0 && errno == EAGAIN)
			break;
		else if (!(n < 0 && errno == EINTR))
			o->error = n < 0 ? -errno : -EIO;
	}
	return done;
}

int output_pump(struct output *o)
{
	size_t n = write_now(o, o->buf + o->head, o->len);

	o->head += n;
	o->len -= n;
	/* the reader is gone (EPIPE) or the fd is broken: what waits can never
	 * be read, and holding it would only refuse lines */
	if (o->error)
		o->len = 0;
	if (!o->len)
		o->head = 0;
	watch_while_pending(o);
	return o->error;
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	output_pump(w->data);
}

void output_attach(struct output *o, struct ev_loop *loop)
{
	o->loop = loop;
	ev_io_init(&o->io, on_writable, o->fd, EV_WRITE);
	o->io.data = o;
	watch_while_pending(o);
}

/* Appends len bytes that fit (capacity - o->len >= len): straight to the
 * fd when nothing waits (the reader keeping up sees no delay), the rest
 * after what waits, so the bytes go out in the order they came. */
static void append(struct output *o, const char *data, size_t len)
{
	if (!o->len) {
		size_t n = write_now(o, data, len);

		data += n;
		len -= n;
	}
	if (!len || o->error)
		return;
	/* the buffer is made when a line first has to wait: an agent whose
	 * reader keeps up never holds it (4 MiB that the RSS would count once
	 * touched) */
	if (!o->buf && !(o->buf = malloc(o->capacity ? o->capacity : 1))) {
		o->error = -ENOMEM; /* as a broken fd: nothing more goes out */
		return;
	}
	if (o->head + o->len + len > o->capacity) {
		memmove(o->buf, o->buf + o->head, o->len);
		o->head = 0;
	}
	memcpy(o->buf + o->head + o->len, data, len);
	o->len += len;
	watch_while_pending(o);
}

static size_t count_lines(const char *text, size_t len)
{
	size_t lines = 0;
	const char *p = text, *end = text + len, *nl;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		lines++;
		p = nl ? nl + 1 : end;
	}
	return lines;
}

size_t output_write_lines(struct output *o, const char *text, size_t len, size_t *refused)
{
	size_t room = o->error ? 0 : o->capacity - o->len;
	size_t fit = len;
	const char *last;

	if (len > room) {
		/* the whole lines that fit; from the first that does not, none */
		last = room ? memrchr(text, '\n', room) : NULL;
		fit = last ? (size_t)(last - text) + 1 : 0;
	}
	if (fit)
		append(o, text, fit);
	if (refused)
		*refused = count_lines(text + fit, len - fit);
	return count_lines(text, fit);
}

bool output_write_log_line(struct output *o, const char *line, size_t len)
{
	size_t refused;

	output_write_lines(o, line, len, &refused);
	o->log_lines_dropped += refused;
	return refused == 0;
}

static long long monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int output_flush(struct output *o, int timeout_ms)
{
	long long deadline = monotonic_ms() + timeout_ms;
	struct pollfd pfd = {.fd = o->fd, .events = POLLOUT};
	long long left;

	for (;;) {
		if (output_pump(o))
			return o->error;
		if (!o->len)
			return 0;
		left = deadline - monotonic_ms();
		if (left <= 0)
			return -EAGAIN;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			return -errno;
	}
}

void output_close(struct output *o)
{
	if (o->loop && ev_is_active(&o->io))
		ev_io_stop(o->loop, &o->io);
	o->loop = NULL;
	if (o->fd >= 0)
		(void)fcntl(o->fd, F_SETFL, o->fd_flags);
	free(o->buf);
	o->buf = NULL;
	o->len = o->head = o->capacity = 0;
	o->fd = -1;
	if (agent_output == o)
		agent_output = NULL;
}
