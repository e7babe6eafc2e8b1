/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include "text_arena.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text_codec.h"

/*
 * Texts are appended to blocks of BLOCK_SIZE (a longer text gets a block of
 * its own), never to one buffer that grows: growing by copying meant
 * writing megabytes of fresh memory in one put, ~100 ms on a VM where
 * first writes cost ~3 ms/MB. A block other than the one being filled
 * whose live texts fall under half of what it holds is evacuated — its live
 * texts appended anew, the block freed — so at most about twice the live
 * bytes are ever held, and no one drop copies more than half a block.
 */
#define BLOCK_SIZE (1u << 20)

struct block {
	char *data; /* NULL: a free entry of blocks[] */
	size_t size, used, live;
};

struct slot {
	uint32_t block;
	uint32_t offset;
	uint32_t len;	  /* bytes held in the block */
	uint32_t raw_len; /* bytes of the text: more than len when it is held deflated */
	bool live;
	uint32_t next_free; /* (free slots) the next free slot's index + 1, or 0 */
};

struct text_arena {
	struct block *blocks;
	uint32_t block_count, block_capacity;
	uint32_t tail; /* the block being filled (valid when block_count > 0) */
	struct slot *slots;
	uint32_t slot_count, slot_capacity;
	uint32_t free_head; /* a free slot's index + 1, or 0 */
	size_t texts, live_bytes, text_bytes, evacuations;
	struct text_codec *codec; /* NULL: texts are held as they are */
};

struct text_arena *text_arena_new(const char *dictionary, size_t len)
{
	struct text_arena *arena = calloc(1, sizeof(struct text_arena));

	if (arena && dictionary) {
		arena->codec = text_codec_new(dictionary, len);
		if (!arena->codec) {
			free(arena);
			return NULL;
		}
	}
	return arena;
}

void text_arena_free(struct text_arena *arena)
{
	if (!arena)
		return;
	for (uint32_t i = 0; i < arena->block_count; i++)
		free(arena->blocks[i].data);
	free(arena->blocks);
	free(arena->slots);
	text_codec_free(arena->codec);
	free(arena);
}

/* Doubles an array's capacity (at least to first): 0 or -1. */
static int grow_array(void **array, uint32_t *capacity, uint32_t first, size_t item_size)
{
	uint32_t wanted = *capacity ? *capacity * 2 : first;
	void *grown;

	if (wanted <= *capacity) /* 2^32 items */
		return -1;
	grown = realloc(*array, (size_t)wanted * item_size);
	if (!grown)
		return -1;
	*array = grown;
	*capacity = wanted;
	return 0;
}

/* A new empty block of size bytes (a free entry reused): its index, or -1. */
static int64_t new_block(struct text_arena *arena, size_t size)
{
	uint32_t index = 0;
	char *data = malloc(size ? size : 1);

	if (!data)
		return -1;
	while (index < arena->block_count && arena->blocks[index].data)
		index++;
	if (index == arena->block_count) {
		if (arena->block_count == arena->block_capacity &&
		    grow_array((void **)&arena->blocks, &arena->block_capacity, 16, sizeof(struct block))) {
			free(data);
			return -1;
		}
		arena->block_count++;
	}
	arena->blocks[index] = (struct block){.data = data, .size = size};
	return index;
}

/* Where len more bytes go: the tail block, or a new one. -1 when out of
 * memory. */
static int64_t block_with_room(struct text_arena *arena, size_t len)
{
	int64_t index;

	if (arena->block_count && arena->blocks[arena->tail].data &&
	    arena->blocks[arena->tail].used + len <= arena->blocks[arena->tail].size)
		return arena->tail;
	if (len > BLOCK_SIZE)
		return new_block(arena, len); /* its own block; the tail stays the tail */
	index = new_block(arena, BLOCK_SIZE);
	if (index >= 0)
		arena->tail = (uint32_t)index;
	return index;
}

/* Appends len bytes to a block with room; the slot's place, or -1. */
static int place(struct text_arena *arena, const char *text, size_t len, struct slot *slot)
{
	int64_t index = block_with_room(arena, len);
	struct block *b;

	if (index < 0)
		return -1;
	b = &arena->blocks[index];
	memcpy(b->data + b->used, text, len);
	slot->block = (uint32_t)index;
	slot->offset = (uint32_t)b->used;
	slot->len = (uint32_t)len;
	b->used += len;
	b->live += len;
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
	if (arena->slot_count == arena->slot_capacity &&
	    grow_array((void **)&arena->slots, &arena->slot_capacity, 1024, sizeof(struct slot)))
		return NULL;
	*ref = ++arena->slot_count;
	return &arena->slots[*ref - 1];
}

uint32_t text_arena_put(struct text_arena *arena, const char *text, size_t len)
{
	const char *held = text;
	size_t held_len = len;
	struct slot *slot;
	uint32_t ref;

	if (len > UINT32_MAX)
		return 0;
	if (arena->codec) {
		const char *deflated;
		size_t deflated_len = text_codec_pack(arena->codec, text, len, &deflated);

		if (deflated_len) { /* else it did not get smaller: held as it is */
			held = deflated;
			held_len = deflated_len;
		}
	}
	slot = new_slot(arena, &ref);
	if (!slot)
		return 0;
	slot->raw_len = (uint32_t)len;
	if (place(arena, held, held_len, slot) != 0) {
		slot->live = false;
		slot->next_free = arena->free_head;
		arena->free_head = ref;
		return 0;
	}
	slot->live = true;
	arena->live_bytes += held_len;
	arena->text_bytes += len;
	arena->texts++;
	return ref;
}

static struct slot *live_slot(const struct text_arena *arena, uint32_t ref)
{
	if (ref == 0 || ref > arena->slot_count || !arena->slots[ref - 1].live)
		return NULL;
	return &arena->slots[ref - 1];
}

bool text_arena_holds(const struct text_arena *arena, uint32_t ref)
{
	return live_slot(arena, ref) != NULL;
}

const char *text_arena_get(struct text_arena *arena, uint32_t ref, size_t *len)
{
	const struct slot *slot = live_slot(arena, ref);
	const char *held;

	if (!slot)
		return NULL;
	held = arena->blocks[slot->block].data + slot->offset;
	*len = slot->raw_len;
	if (slot->len == slot->raw_len)
		return held;
	return text_codec_unpack(arena->codec, held, slot->len, slot->raw_len);
}

static void free_block(struct text_arena *arena, uint32_t index)
{
	free(arena->blocks[index].data);
	arena->blocks[index] = (struct block){0};
}

/* The live texts of block index appended anew, then the block freed. A
 * text that finds no memory stays where it is, and so does the block. */
static void evacuate(struct text_arena *arena, uint32_t index)
{
	for (uint32_t i = 0; i < arena->slot_count; i++) {
		struct slot *s = &arena->slots[i];
		struct slot moved;
		const struct block *from;

		if (!s->live || s->block != index)
			continue;
		from = &arena->blocks[index];
		if (place(arena, from->data + s->offset, s->len, &moved) != 0)
			return;
		arena->blocks[index].live -= s->len;
		s->block = moved.block;
		s->offset = moved.offset;
	}
	free_block(arena, index);
	arena->evacuations++;
}

int text_arena_drop(struct text_arena *arena, uint32_t ref)
{
	struct slot *slot = live_slot(arena, ref);
	uint32_t index;
	struct block *b;

	if (!slot)
		return -1;
	index = slot->block;
	b = &arena->blocks[index];
	b->live -= slot->len;
	arena->live_bytes -= slot->len;
	arena->text_bytes -= slot->raw_len;
	arena->texts--;
	slot->live = false;
	slot->next_free = arena->free_head;
	arena->free_head = ref;
	if (index == arena->tail) {
		if (b->live == 0)
			b->used = 0; /* the block being filled, empty: filled again */
	} else if (b->live == 0) {
		free_block(arena, index);
	} else if (b->live * 2 < b->used) {
		evacuate(arena, index);
	}
	return 0;
}

void text_arena_stats(const struct text_arena *arena, struct text_arena_stats *out)
{
	*out = (struct text_arena_stats){
	    .texts = arena->texts,
	    .live_bytes = arena->live_bytes,
	    .text_bytes = arena->text_bytes,
	    .compactions = arena->evacuations,
	};
	for (uint32_t i = 0; i < arena->block_count; i++) {
		out->used_bytes += arena->blocks[i].used;
		out->capacity += arena->blocks[i].size;
	}
}
