/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Texts kept in one buffer of their own: the store's Services and
 * EndpointSlices (balancing.packed), 20,000 texts of about a kilobyte in a
 * large cluster, that live as long as their objects. As Lua strings they
 * sat among the garbage of the LIST pages they were made from, one on each
 * of thousands of pages the allocator could then never give back; here they
 * are packed end to end, and the Lua heap keeps only small things.
 *
 * A text is known by a ref (a small positive integer, reused after it is
 * freed). Freed texts leave holes, and the buffer is compacted (the live
 * texts copied end to end into a new one) when the holes outweigh the live
 * bytes, so it never holds more than about twice what lives.
 */
#ifndef BALANCING_TEXT_ARENA_H
#define BALANCING_TEXT_ARENA_H

#include <stddef.h>
#include <stdint.h>

struct text_arena;

struct text_arena_stats {
	size_t texts;	   /* live texts */
	size_t live_bytes; /* their bytes */
	size_t used_bytes; /* bytes of the buffer written (live and holes) */
	size_t capacity;   /* bytes of the buffer */
	size_t compactions;
};

struct text_arena *text_arena_new(void);
void text_arena_free(struct text_arena *arena);

/* Copies len bytes in; returns the text's ref, or 0 when out of memory. */
uint32_t text_arena_put(struct text_arena *arena, const char *text, size_t len);

/* The text of ref (valid until the next put or drop), or NULL for a ref
 * that is not live. */
const char *text_arena_get(const struct text_arena *arena, uint32_t ref, size_t *len);

/* Frees ref's text; returns 0, or -1 for a ref that is not live. */
int text_arena_drop(struct text_arena *arena, uint32_t ref);

void text_arena_stats(const struct text_arena *arena, struct text_arena_stats *out);

#endif /* BALANCING_TEXT_ARENA_H */
