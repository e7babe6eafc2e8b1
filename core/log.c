/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* JSON log lines from C (see log.h). */
#include "log.h"

#include "output.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {
    [LOG_LEVEL_DEBUG] = "debug",
    [LOG_LEVEL_INFO] = "info",
    [LOG_LEVEL_WARN] = "warn",
    [LOG_LEVEL_ERROR] = "error",
};

/* The logger is process-wide by nature: one stream, one threshold. */
static enum log_level log_threshold = LOG_LEVEL_INFO;
static FILE *log_stream;

int log_level_parse(const char *text, enum log_level *level)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(text, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
	if ((unsigned)level >= sizeof(level_names) / sizeof(level_names[0]))
		return "error";
	return level_names[level];
}

void log_set_level(enum log_level level)
{
	log_threshold = level;
}

void log_set_stream(FILE *stream)
{
	log_stream = stream;
}

/* Appends one byte to out when it fits; always counts it. */
static void put_char(char *out, size_t size, size_t *len, char c)
{
	if (*len + 1 < size)
		out[*len] = c;
	(*len)++;
}

size_t log_json_string(char *out, size_t size, const char *text)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p;
	size_t len = 0;

	put_char(out, size, &len, '"');
	for (p = (const unsigned char *)text; *p; p++) {
		switch (*p) {
		case '"':
		case '\\':
			put_char(out, size, &len, '\\');
			put_char(out, size, &len, (char)*p);
			break;
		case '\n':
			put_char(out, size, &len, '\\');
			put_char(out, size, &len, 'n');
			break;
		case '\t':
			put_char(out, size, &len, '\\');
			put_char(out, size, &len, 't');
			break;
		case '\r':
			put_char(out, size, &len, '\\');
			put_char(out, size, &len, 'r');
			break;
		default:
			if (*p < 0x20) {
				/* other control bytes: \u00XX keeps the line one line */
				put_char(out, size, &len, '\\');
				put_char(out, size, &len, 'u');
				put_char(out, size, &len, '0');
				put_char(out, size, &len, '0');
				put_char(out, size, &len, hex[*p >> 4]);
				put_char(out, size, &len, hex[*p & 0xf]);
			} else {
				put_char(out, size, &len, (char)*p);
			}
		}
	}
	put_char(out, size, &len, '"');
	if (size)
		out[len < size ? len : size - 1] = '\0';
	return len;
}

/* A line built in memory: small lines on the stack, long ones (tracebacks)
 * grown on the heap. A failed allocation marks the line short of memory. */
struct line {
	char *text;
	size_t len, size;
	bool heap, failed;
	char small[512];
};

static void line_reserve(struct line *l, size_t more)
{
	size_t size;
	char *grown;

	if (l->failed || l->len + more + 1 <= l->size)
		return;
	size = l->size * 2 > l->len + more + 1 ? l->size * 2 : l->len + more + 1;
	grown = l->heap ? realloc(l->text, size) : malloc(size);
	if (!grown) {
		l->failed = true;
		return;
	}
	if (!l->heap)
		memcpy(grown, l->text, l->len);
	l->text = grown;
	l->size = size;
	l->heap = true;
}

static void line_append(struct line *l, const char *text, size_t len)
{
	line_reserve(l, len);
	if (l->failed)
		return;
	memcpy(l->text + l->len, text, len);
	l->len += len;
}

static void line_puts(struct line *l, const char *text)
{
	line_append(l, text, strlen(text));
}

/* The JSON string of text (sized on a first pass, so long tracebacks are
 * not cut). */
static void line_json_string(struct line *l, const char *text)
{
	size_t need = log_json_string(NULL, 0, text);

	line_reserve(l, need);
	if (l->failed)
		return;
	log_json_string(l->text + l->len, need + 1, text);
	l->len += need;
}

void log_line(enum log_level level, const char *msg, ...)
{
	FILE *stream = log_stream ? log_stream : stderr;
	struct output *out = output_agent();
	struct line l = {.size = sizeof(l.small)};
	struct timespec now;
	struct tm tm;
	char stamp[40], head[128];
	const char *key, *value;
	va_list ap;

	if (level < log_threshold)
		return;
	l.text = l.small;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

	/* the whole line in memory first: the running agent's output takes it
	 * or refuses it whole, and a reader of a pipe sees it at once */
	snprintf(head, sizeof(head), "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":", stamp,
		 now.tv_nsec / 1000000, log_level_name(level));
	line_puts(&l, head);
	line_json_string(&l, msg);

	va_start(ap, msg);
	while ((key = va_arg(ap, const char *)) != NULL) {
		value = va_arg(ap, const char *);
		line_puts(&l, ",");
		line_json_string(&l, key);
		line_puts(&l, ":");
		if (value)
			line_json_string(&l, value);
		else
			line_puts(&l, "null");
	}
	va_end(ap);
	line_puts(&l, "}\n");

	if (l.failed) {
		/* what is certain to fit: the message is lost, the fact is not */
		l.len = (size_t)snprintf(l.small, sizeof(l.small),
					 "%s\"(log line too long for memory)\"}\n", head);
		if (l.heap)
			free(l.text);
		l.text = l.small;
		l.heap = false;
	}
	if (out) {
		output_write_log_line(out, l.text, l.len);
	} else {
		fwrite(l.text, 1, l.len, stream);
		fflush(stream);
	}
	if (l.heap)
		free(l.text);
}
