/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Small texts deflated one by one against a preset dictionary (zlib, raw
 * deflate with a 4 KiB window). The store's texts are a kilobyte or so of
 * JSON each; alone, deflate finds little to share within one, but most of
 * one is field names and values every object of its kind repeats, which a
 * dictionary of such text gives it (balancing.packed's DICTIONARY): about
 * 4x on the benchmark cluster against 2x without.
 *
 * One codec keeps one deflate and one inflate stream and reuses them, and
 * one buffer that what it returns points into.
 */
#ifndef BALANCING_TEXT_CODEC_H
#define BALANCING_TEXT_CODEC_H

#include <stddef.h>

struct text_codec;

/* A codec for the dictionary (copied; at most 4 KiB are used, its end
 * nearest to the text); NULL when out of memory. */
struct text_codec *text_codec_new(const char *dictionary, size_t len);
void text_codec_free(struct text_codec *codec);

/* Deflates len bytes of text. Returns the deflated length and points *out
 * at it (valid until the codec's next call), or 0 when the text does not
 * get smaller or memory runs out: then keep the text as it is. */
size_t text_codec_pack(struct text_codec *codec, const char *text, size_t len, const char **out);

/* Inflates what text_codec_pack gave back into text of raw_len bytes: a
 * pointer valid until the codec's next call, or NULL when it is not such
 * a text or memory runs out. */
const char *text_codec_unpack(struct text_codec *codec, const char *packed, size_t packed_len,
			      size_t raw_len);

#endif /* BALANCING_TEXT_CODEC_H */
