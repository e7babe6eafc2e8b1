/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include "text_arena.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Holes are left alone below this: compacting a small buffer buys nothing. */
#define MIN_HOLES_TO_COMPACT (1u << 20)
#define MIN_CAPACITY (64u << 10)

struct slot {
	size_t offset;
	uint32_t len;
	bool live;
	uint32_t next_free; /* (free slots) the next free slot's index + 1, or 0 */
};

struct text_arena {
	char *buf;
	size_t capacity, used, live_bytes;
	struct slot *slots;
	uint32_t slot_count, slot_capacity;
	uint32_t free_head; /* a free slot's index + 1, or 0 */
	size_t texts, compactions;
};

struct text_arena *text_arena_new(void)
{
	return calloc(1, sizeof(struct text_arena));
}

void text_arena_free(struct text_arena *arena)
{
	if (!arena)
		return;
	free(arena->buf);
	free(arena->slots);
	free(arena);
}

/* The live texts copied end to end into a new buffer with room for extra
 * bytes more (and half as much again, so that the next puts fit). */
static int compact(struct text_arena *arena, size_t extra)
{
	size_t capacity = (arena->live_bytes + extra) / 2 * 3 + MIN_CAPACITY;
	char *buf = malloc(capacity);
	size_t at = 0;

	if (!buf)
		return -1;
	for (uint32_t i = 0; i < arena->slot_count; i++) {
		struct slot *s = &arena->slots[i];

		if (!s->live)
			continue;
		memcpy(buf + at, arena->buf + s->offset, s->len);
		s->offset = at;
		at += s->len;
	}
	free(arena->buf);
	arena->buf = buf;
	arena->capacity = capacity;
	arena->used = at;
	arena->compactions++;
	return 0;
}

static bool holes_outweigh_live(const struct text_arena *arena)
{
	size_t holes = arena->used - arena->live_bytes;

	return holes >= MIN_HOLES_TO_COMPACT && holes > arena->live_bytes;
}

/* Room for len more bytes at the end of the buffer. */
static int make_room(struct text_arena *arena, size_t len)
{
	size_t capacity;
	char *buf;

	if (arena->used + len <= arena->capacity)
		return 0;
	if (holes_outweigh_live(arena))
		return compact(arena, len);
	capacity = arena->capacity ? arena->capacity * 2 : MIN_CAPACITY;
	if (capacity < arena->used + len)
		capacity = arena->used + len;
	buf = realloc(arena->buf, capacity);
	if (!buf)
		return -1;
	arena->buf = buf;
	arena->capacity = capacity;
	return 0;
}

static struct slot *new_slot(struct text_arena *arena, uint32_t *ref)
{
	if (arena->free_head) {
		uint32_t index = arena->free_head - 1;

		arena->free_head = arena->slots[index].next_free;
		*ref = index + 1;
		return &arena->slots[index];
	}
	if (arena->slot_count == arena->slot_capacity) {
		uint32_t capacity = arena->slot_capacity ? arena->slot_capacity * 2 : 1024;
		struct slot *slots;

		if (capacity <= arena->slot_capacity) /* 2^32 texts */
			return NULL;
		slots = realloc(arena->slots, (size_t)capacity * sizeof(*slots));
		if (!slots)
			return NULL;
		arena->slots = slots;
		arena->slot_capacity = capacity;
	}
	*ref = ++arena->slot_count;
	return &arena->slots[*ref - 1];
}

uint32_t text_arena_put(struct text_arena *arena, const char *text, size_t len)
{
	struct slot *slot;
	uint32_t ref;

	if (len > UINT32_MAX || make_room(arena, len) != 0)
		return 0;
	slot = new_slot(arena, &ref);
	if (!slot)
		return 0;
	memcpy(arena->buf + arena->used, text, len);
	*slot = (struct slot){.offset = arena->used, .len = (uint32_t)len, .live = true};
	arena->used += len;
	arena->live_bytes += len;
	arena->texts++;
	return ref;
}

static struct slot *live_slot(const struct text_arena *arena, uint32_t ref)
{
	if (ref == 0 || ref > arena->slot_count || !arena->slots[ref - 1].live)
		return NULL;
	return &arena->slots[ref - 1];
}

const char *text_arena_get(const struct text_arena *arena, uint32_t ref, size_t *len)
{
	const struct slot *slot = live_slot(arena, ref);

	if (!slot)
		return NULL;
	*len = slot->len;
	return arena->buf ? arena->buf + slot->offset : ""; /* (empty texts in an empty buffer) */
}

int text_arena_drop(struct text_arena *arena, uint32_t ref)
{
	struct slot *slot = live_slot(arena, ref);

	if (!slot)
		return -1;
	arena->live_bytes -= slot->len;
	arena->texts--;
	if (slot->offset + slot->len == arena->used)
		arena->used = slot->offset; /* the last text: no hole */
	slot->live = false;
	slot->next_free = arena->free_head;
	arena->free_head = ref;
	/* (a failed compaction leaves the buffer as it was: still correct) */
	if (holes_outweigh_live(arena))
		compact(arena, 0);
	return 0;
}

void text_arena_stats(const struct text_arena *arena, struct text_arena_stats *out)
{
	*out = (struct text_arena_stats){
	    .texts = arena->texts,
	    .live_bytes = arena->live_bytes,
	    .used_bytes = arena->used,
	    .capacity = arena->capacity,
	    .compactions = arena->compactions,
	};
}
