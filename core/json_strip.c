// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
#include "json_strip.h"

#include <stdbool.h>
#include <string.h>

const char *const JSON_STRIP_UNREAD[] = {
    "managedFields",
    "kubectl.kubernetes.io/last-applied-configuration",
    NULL,
};

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_space(const char *text, size_t len, size_t i)
{
	while (i < len && is_space(text[i]))
		i++;
	return i;
}

/* text[i] is '"': the index just after its closing quote, or 0 when the
 * string does not end. */
static size_t string_end(const char *text, size_t len, size_t i)
{
	for (i++; i < len; i++) {
		if (text[i] == '\\')
			i++;
		else if (text[i] == '"')
			return i + 1;
	}
	return 0;
}

/* The index just after the value that starts at text[i], or 0 when it
 * does not end (or i is past the text). */
static size_t value_end(const char *text, size_t len, size_t i)
{
	size_t depth = 0;

	if (i >= len)
		return 0;
	if (text[i] == '"')
		return string_end(text, len, i);
	if (text[i] != '{' && text[i] != '[') {
		/* a number, true, false, null: up to what ends a value */
		while (i < len && !is_space(text[i]) && text[i] != ',' && text[i] != '}' && text[i] != ']')
			i++;
		return i;
	}
	for (; i < len; i++) {
		if (text[i] == '"') {
			i = string_end(text, len, i);
			if (!i)
				return 0;
			i--; /* the loop's i++ steps past the closing quote */
		} else if (text[i] == '{' || text[i] == '[') {
			depth++;
		} else if (text[i] == '}' || text[i] == ']') {
			if (--depth == 0)
				return i + 1;
		}
	}
	return 0;
}

/* key (as written between its quotes) is name: "\/" reads as "/", the one
 * escape an encoder may put in these names (lua-cjson does; Go does not). */
static bool same_key(const char *key, size_t key_len, const char *name)
{
	size_t i = 0;

	for (; *name; name++) {
		if (i + 1 < key_len && key[i] == '\\' && key[i + 1] == '/' && *name == '/')
			i += 2;
		else if (i < key_len && key[i] == *name)
			i++;
		else
			return false;
	}
	return i == key_len;
}

static bool listed(const char *key, size_t key_len, const char *const *names)
{
	for (; *names; names++)
		if (same_key(key, key_len, *names))
			return true;
	return false;
}

size_t json_strip_members(char *text, size_t len, const char *const *names)
{
	size_t in = 0, out = 0; /* out never passes in: the copy is in place */

	while (in < len) {
		size_t end, colon, value, after, kept;

		if (text[in] != '"') {
			text[out++] = text[in++];
			continue;
		}
		end = string_end(text, len, in);
		if (!end)
			break; /* an unterminated string: left as it is */
		colon = skip_space(text, len, end);
		value = colon < len && text[colon] == ':' ? skip_space(text, len, colon + 1) : len;
		after = value < len && listed(text + in + 1, end - in - 2, names) ? value_end(text, len, value) : 0;
		if (!after) {
			/* not a key, another key, or a value that does not end: kept */
			memmove(text + out, text + in, end - in);
			out += end - in;
			in = end;
			continue;
		}
		/* the member goes, with the comma before it, or (the first one)
		 * the comma after it */
		kept = out;
		while (kept > 0 && is_space(text[kept - 1]))
			kept--;
		if (kept > 0 && text[kept - 1] == ',') {
			out = kept - 1;
			in = after;
		} else {
			size_t next = skip_space(text, len, after);

			in = next < len && text[next] == ',' ? next + 1 : after;
		}
	}
	if (in < len) {
		memmove(text + out, text + in, len - in);
		out += len - in;
	}
	return out;
}
