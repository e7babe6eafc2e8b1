/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
#include "text_codec.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* A 4 KiB window holds the dictionary and a kilobyte-sized text behind it;
 * zlib's default 32 KiB would cost 8 times the stream memory for nothing,
 * and every text's dictionary is set again, so a shorter one is cheaper. */
#define WINDOW_BITS 12
#define MEM_LEVEL 8
#define LEVEL 6
#define MAX_DICTIONARY (1u << WINDOW_BITS)

struct text_codec {
	z_stream deflater, inflater;
	bool deflater_ready, inflater_ready;
	char *dictionary;
	size_t dictionary_len;
	char *buffer;
	size_t buffer_size;
};

struct text_codec *text_codec_new(const char *dictionary, size_t len)
{
	struct text_codec *codec = calloc(1, sizeof(*codec));

	if (!codec)
		return NULL;
	if (len > MAX_DICTIONARY) { /* deflate uses the window's worth at its end */
		dictionary += len - MAX_DICTIONARY;
		len = MAX_DICTIONARY;
	}
	codec->dictionary = malloc(len ? len : 1);
	if (!codec->dictionary) {
		free(codec);
		return NULL;
	}
	memcpy(codec->dictionary, dictionary, len);
	codec->dictionary_len = len;
	codec->deflater_ready = deflateInit2(&codec->deflater, LEVEL, Z_DEFLATED, -WINDOW_BITS, MEM_LEVEL,
					     Z_DEFAULT_STRATEGY) == Z_OK;
	codec->inflater_ready = inflateInit2(&codec->inflater, -WINDOW_BITS) == Z_OK;
	if (!codec->deflater_ready || !codec->inflater_ready) {
		text_codec_free(codec);
		return NULL;
	}
	return codec;
}

void text_codec_free(struct text_codec *codec)
{
	if (!codec)
		return;
	if (codec->deflater_ready)
		deflateEnd(&codec->deflater);
	if (codec->inflater_ready)
		inflateEnd(&codec->inflater);
	free(codec->dictionary);
	free(codec->buffer);
	free(codec);
}

/* The codec's buffer with room for size bytes, or NULL. */
static char *buffer_of(struct text_codec *codec, size_t size)
{
	if (size > codec->buffer_size) {
		char *grown = realloc(codec->buffer, size);

		if (!grown)
			return NULL;
		codec->buffer = grown;
		codec->buffer_size = size;
	}
	return codec->buffer;
}

size_t text_codec_pack(struct text_codec *codec, const char *text, size_t len, const char **out)
{
	z_stream *z = &codec->deflater;
	char *buffer;
	size_t bound;

	if (len == 0 || len > UINT32_MAX || deflateReset(z) != Z_OK ||
	    deflateSetDictionary(z, (const Bytef *)codec->dictionary, (uInt)codec->dictionary_len) != Z_OK)
		return 0;
	bound = deflateBound(z, (uLong)len);
	buffer = buffer_of(codec, bound);
	if (!buffer)
		return 0;
	z->next_in = (Bytef *)(uintptr_t)text; /* zlib's next_in is not const */
	z->avail_in = (uInt)len;
	z->next_out = (Bytef *)buffer;
	z->avail_out = (uInt)bound;
	if (deflate(z, Z_FINISH) != Z_STREAM_END || z->total_out >= len)
		return 0;
	*out = buffer;
	return z->total_out;
}

const char *text_codec_unpack(struct text_codec *codec, const char *packed, size_t packed_len,
			      size_t raw_len)
{
	z_stream *z = &codec->inflater;
	char *buffer;

	if (packed_len > UINT32_MAX || raw_len > UINT32_MAX || inflateReset(z) != Z_OK ||
	    inflateSetDictionary(z, (const Bytef *)codec->dictionary, (uInt)codec->dictionary_len) != Z_OK)
		return NULL;
	buffer = buffer_of(codec, raw_len ? raw_len : 1);
	if (!buffer)
		return NULL;
	z->next_in = (Bytef *)(uintptr_t)packed;
	z->avail_in = (uInt)packed_len;
	z->next_out = (Bytef *)buffer;
	z->avail_out = (uInt)raw_len;
	if (inflate(z, Z_FINISH) != Z_STREAM_END || z->total_out != raw_len)
		return NULL;
	return buffer;
}
