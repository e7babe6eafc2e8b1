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
 * freed). Texts are appended to blocks of 1 MiB; freed texts leave holes,
 * and a block whose live texts fall under half of what it holds has them
 * moved to the block being filled and is freed, so the arena never holds
 * much more than twice what lives (text_arena.c says why blocks).
 *
 * An arena made with a dictionary holds each text deflated against it
 * (text_codec.h) when that makes it smaller, and inflates it when read.
 */
#ifndef BALANCING_TEXT_ARENA_H
#define BALANCING_TEXT_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct text_arena;

struct text_arena_stats {
	size_t texts;	   /* live texts */
	size_t live_bytes; /* the bytes they take in the blocks (deflated or not) */
	size_t text_bytes; /* their bytes as texts */
	size_t used_bytes; /* bytes of the blocks written (live and holes) */
	size_t capacity;   /* bytes of the blocks */
	size_t compactions; /* blocks emptied by moving their live texts */
};

/* An arena; with a dictionary (not NULL), one whose texts are held
 * deflated against it. NULL when out of memory. */
struct text_arena *text_arena_new(const char *dictionary, size_t dictionary_len);
void text_arena_free(struct text_arena *arena);

/* Copies len bytes in; returns the text's ref, or 0 when out of memory. */
uint32_t text_arena_put(struct text_arena *arena, const char *text, size_t len);

/* The text of ref (valid until the arena's next put, get or drop), or NULL
 * for a ref that is not live or a held text that does not inflate. */
const char *text_arena_get(struct text_arena *arena, uint32_t ref, size_t *len);

/* Whether ref is a live text. */
bool text_arena_holds(const struct text_arena *arena, uint32_t ref);

/* Frees ref's text; returns 0, or -1 for a ref that is not live. */
int text_arena_drop(struct text_arena *arena, uint32_t ref);

void text_arena_stats(const struct text_arena *arena, struct text_arena_stats *out);

#endif /* BALANCING_TEXT_ARENA_H */
