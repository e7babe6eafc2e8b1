/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Object members removed from JSON text before it is decoded: what the
 * agent never reads and the API server sends with every object —
 * metadata.managedFields and the kubectl last-applied annotation, often
 * more than half of a Service's bytes. Dropped here they never become Lua
 * tables, so a LIST of 10,000 Services makes a third less garbage.
 * balancing.trim drops them too (and the rest it does not keep): this is
 * only the cheap half, done before decoding.
 */
#ifndef BALANCING_JSON_STRIP_H
#define BALANCING_JSON_STRIP_H

#include <stddef.h>

/* The keys json_strip_members removes by default. */
extern const char *const JSON_STRIP_UNREAD[];

/*
 * Removes, in place, every object member (at any depth) whose key is one of
 * names (a NULL-terminated list; keys are compared as written, but for
 * "\/", which reads as "/"), with the comma that separated it. Returns the
 * new length. Text that is not well-formed JSON is left as it is from where
 * it stops being so: the decoder then says what is wrong with it.
 */
size_t json_strip_members(char *text, size_t len, const char *const *names);

#endif /* BALANCING_JSON_STRIP_H */
