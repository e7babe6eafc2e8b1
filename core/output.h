/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The running agent's stdout, never blocking its loop (docs/agent.md "Output
 * under a stalled reader"). Whole lines go into a bounded buffer and out to
 * the fd, set O_NONBLOCK, as fast as the reader takes them: written at once
 * when nothing is waiting, otherwise from an ev_io watcher on the loop that
 * runs only while something is buffered. The buffer is allocated when a line
 * first has to wait. A line that does not fit is
 * refused whole (never cut) and the caller counts it; log lines refused are
 * counted here (output_log_lines_dropped). At the end, output_flush waits a
 * bounded time for the reader, so that a normal stop loses nothing.
 *
 *   struct output out;
 *   output_open(&out, STDOUT_FILENO, output_capacity_from_env());
 *   output_attach(&out, loop);            // the watcher, once there is a loop
 *   output_set_agent(&out);               // log.c and balancing.core write here
 *   output_write_log_line(&out, line, len);
 *   output_flush(&out, 2000);  output_close(&out);
 */
#ifndef BALANCING_OUTPUT_H
#define BALANCING_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#define OUTPUT_DEFAULT_CAPACITY (4u << 20)
#define OUTPUT_CAPACITY_ENV "BALANCING_OUTPUT_BUFFER_BYTES"

struct output {
	int fd;
	int fd_flags;	/* as found: restored at close (the open file is shared) */
	char *buf;
	size_t capacity;
	size_t head, len; /* what waits: buf[head .. head + len) */
	int error;	  /* a write failure other than EAGAIN (-errno): nothing more goes out */
	uint64_t log_lines_dropped;
	struct ev_loop *loop;
	ev_io io;
};

/* 0, or -errno (fd not usable, no memory). capacity: bytes buffered at most. */
int output_open(struct output *o, int fd, size_t capacity);
/* BALANCING_OUTPUT_BUFFER_BYTES when it is a whole number >= 4096, else
 * OUTPUT_DEFAULT_CAPACITY; *bad (may be NULL) is set when the variable was
 * set and refused. */
size_t output_capacity_from_env(bool *bad);
/* From now on what waits is written from the loop when the fd is writable. */
void output_attach(struct output *o, struct ev_loop *loop);

/*
 * text: whole lines, each ended by '\n'. Taken in order while they fit
 * (what cannot be written now is buffered); from the first line that does
 * not fit, the rest is refused. Returns the lines taken; *refused (may be
 * NULL) the lines refused.
 */
size_t output_write_lines(struct output *o, const char *text, size_t len, size_t *refused);
/* One log line (ended by '\n'): true when taken; a refused one is counted
 * in log_lines_dropped. */
bool output_write_log_line(struct output *o, const char *line, size_t len);

/* Writes what it can now without waiting: 0, or the write error (-errno). */
int output_pump(struct output *o);
/* Writes what is buffered, waiting at most timeout_ms in all for the reader:
 * 0 once everything is out, -EAGAIN on timeout, or the write error. */
int output_flush(struct output *o, int timeout_ms);
/* Stops the watcher, frees the buffer, restores the fd's flags (what is
 * still buffered is lost: flush first). */
void output_close(struct output *o);

/* The agent's output (NULL: none; log lines then go to log.c's stream). */
void output_set_agent(struct output *o);
struct output *output_agent(void);

#endif /* BALANCING_OUTPUT_H */
