/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* JSON log lines from C (see log.h). */
#include "log.h"

#include <errno.h>
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

/* Writes the JSON string of text to stream (sized on a first pass, so long
 * tracebacks are not cut). */
static void write_json_string(FILE *stream, const char *text)
{
	char small[256];
	size_t need;
	char *big;

	need = log_json_string(small, sizeof(small), text);
	if (need < sizeof(small)) {
		fputs(small, stream);
		return;
	}
	big = malloc(need + 1);
	if (!big) {
		fputs("\"(log field too long for memory)\"", stream);
		return;
	}
	log_json_string(big, need + 1, text);
	fputs(big, stream);
	free(big);
}

void log_line(enum log_level level, const char *msg, ...)
{
	FILE *stream = log_stream ? log_stream : stderr;
	struct timespec now;
	struct tm tm;
	char stamp[40];
	const char *key, *value;
	va_list ap;

	if (level < log_threshold)
		return;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

	/* one fprintf per piece, then one flush: lines are short and a reader
	 * (a pipe, a test) must see each one whole and at once */
	fprintf(stream, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"msg\":", stamp,
		now.tv_nsec / 1000000, log_level_name(level));
	write_json_string(stream, msg);

	va_start(ap, msg);
	while ((key = va_arg(ap, const char *)) != NULL) {
		value = va_arg(ap, const char *);
		fputc(',', stream);
		write_json_string(stream, key);
		fputc(':', stream);
		if (value)
			write_json_string(stream, value);
		else
			fputs("null", stream);
	}
	va_end(ap);

	fputs("}\n", stream);
	fflush(stream);
}
