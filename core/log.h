/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * JSON log lines from C: one object per line with "time", "level", "msg",
 * then string fields. The Lua side (balancing.log) writes the same shape, so
 * a reader of the agent's output sees one format whoever wrote the line.
 */
#ifndef BALANCING_LOG_H
#define BALANCING_LOG_H

#include <stdio.h>

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO = 1,
	LOG_LEVEL_WARN = 2,
	LOG_LEVEL_ERROR = 3,
};

/* "debug", "info", "warn", "error" -> *level; 0, or -EINVAL for other text. */
int log_level_parse(const char *text, enum log_level *level);
const char *log_level_name(enum log_level level);

/* Lines below this level are dropped (default info). */
void log_set_level(enum log_level level);
/* Where lines go (default stderr; the running agent logs on stdout). */
void log_set_stream(FILE *stream);

/*
 * Writes one line: log_line(LOG_LEVEL_ERROR, "lua error", "module",
 * "balancing.plan", "error", text, NULL). Fields are key/value string pairs
 * ended by NULL; a NULL value is written as JSON null.
 */
void log_line(enum log_level level, const char *msg, ...) __attribute__((sentinel));

/* The JSON string literal of text (quotes included) into out; returns the
 * length it needs, like snprintf. Exposed for callers building JSON. */
size_t log_json_string(char *out, size_t size, const char *text);

#endif /* BALANCING_LOG_H */
