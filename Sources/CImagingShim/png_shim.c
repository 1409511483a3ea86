// libpng behind setjmp: see imaging_shim.h for why this lives in C.
#include "imaging_shim.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Decoded images larger than this are refused rather than allocated (a 16k x 16k RGB image).
#define SDR_MAX_PIXEL_BYTES ((size_t)16384 * 16384 * 3)

void sdr_free(void *buffer) { free(buffer); }

// Everything a failing call must clean up lives behind one pointer that is set before setjmp and
// never reassigned, so its contents are well defined after the longjmp (C11 7.13.2.1).
typedef struct {
    char *err;
    size_t err_cap;
    // writing
    uint8_t *out;
    size_t out_len, out_cap;
    png_text *texts;
    // reading
    const uint8_t *in;
    size_t in_len, in_pos;
    png_bytep *rows;
    sdr_png_image *image;
} png_ctx;

static void on_error(png_structp png, png_const_charp message) {
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->err, ctx->err_cap, "%s", message);
    png_longjmp(png, 1);
}

// libpng's default prints warnings to stderr; a library stays quiet. Warnings are recoverable by
// definition (e.g. a known-bad sRGB profile), so they are dropped.
static void on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void write_bytes(png_structp png, png_bytep data, size_t length) {
    png_ctx *ctx = png_get_io_ptr(png);
    if (ctx->out_len + length > ctx->out_cap) {
        size_t cap = ctx->out_cap ? ctx->out_cap : 65536;
        while (cap < ctx->out_len + length) cap *= 2;
        uint8_t *grown = realloc(ctx->out, cap);
        if (!grown) png_error(png, "out of memory while encoding PNG");
        ctx->out = grown;
        ctx->out_cap = cap;
    }
    memcpy(ctx->out + ctx->out_len, data, length);
    ctx->out_len += length;
}

static void flush_nothing(png_structp png) { (void)png; }

int sdr_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height,
                   const sdr_png_text *texts, int text_count,
                   uint8_t **out, size_t *out_len, char *err, size_t err_cap) {
    png_ctx *ctx = calloc(1, sizeof(png_ctx));
    if (!ctx) {
        snprintf(err, err_cap, "out of memory");
        return -1;
    }
    ctx->err = err;
    ctx->err_cap = err_cap;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        snprintf(err, err_cap, "could not create a libpng write structure");
        png_destroy_write_struct(&png, NULL);
        free(ctx);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(ctx->texts);
        free(ctx->out);
        free(ctx);
        return -1;
    }
    png_set_write_fn(png, ctx, write_bytes, flush_nothing);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (text_count > 0) {
        ctx->texts = calloc((size_t)text_count, sizeof(png_text));
        if (!ctx->texts) png_error(png, "out of memory");
        for (int i = 0; i < text_count; i++) {
            ctx->texts[i].compression = texts[i].compression;
            ctx->texts[i].key = (png_charp)texts[i].key;
            ctx->texts[i].text = (png_charp)texts[i].text;
            ctx->texts[i].text_length = strlen(texts[i].text);
            ctx->texts[i].lang = (png_charp)texts[i].lang;
            ctx->texts[i].lang_key = (png_charp)texts[i].translated_key;
        }
        png_set_text(png, info, ctx->texts, text_count);  // copies the strings
    }
    png_write_info(png, info);
    for (uint32_t y = 0; y < height; y++) {
        png_write_row(png, rgb + (size_t)y * width * 3);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(ctx->texts);
    *out = ctx->out;
    *out_len = ctx->out_len;
    free(ctx);
    return 0;
}

static void read_bytes(png_structp png, png_bytep data, size_t length) {
    png_ctx *ctx = png_get_io_ptr(png);
    if (length > ctx->in_len - ctx->in_pos) png_error(png, "unexpected end of file");
    memcpy(data, ctx->in + ctx->in_pos, length);
    ctx->in_pos += length;
}

static char *copy_string(const char *s) {
    return strdup(s ? s : "");
}

// Appends the text chunks of one info structure to the image (libpng keeps those before IDAT in
// `info` and those after it in `end_info`).
static void collect_texts(png_structp png, png_infop info, sdr_png_image *image) {
    png_textp texts = NULL;
    int count = 0;
    png_get_text(png, info, &texts, &count);
    if (count <= 0) return;
    sdr_png_text_out *grown = realloc(image->texts, sizeof(sdr_png_text_out) * (size_t)(image->text_count + count));
    if (!grown) png_error(png, "out of memory");
    image->texts = grown;
    for (int i = 0; i < count; i++) {
        sdr_png_text_out *t = &image->texts[image->text_count];
        memset(t, 0, sizeof(*t));
        image->text_count++;  // counted before filling so that a failure still frees it
        t->compression = texts[i].compression;
        t->key = copy_string(texts[i].key);
        t->text = copy_string(texts[i].text);
        t->lang = copy_string(texts[i].lang);
        t->translated_key = copy_string(texts[i].lang_key);
        if (!t->key || !t->text || !t->lang || !t->translated_key) png_error(png, "out of memory");
        t->text_length = strlen(t->text);
    }
}

void sdr_png_image_free(sdr_png_image *image) {
    if (!image) return;
    for (int i = 0; i < image->text_count; i++) {
        free(image->texts[i].key);
        free(image->texts[i].text);
        free(image->texts[i].lang);
        free(image->texts[i].translated_key);
    }
    free(image->texts);
    free(image->pixels);
    free(image->alpha);
    memset(image, 0, sizeof(*image));
}

// libpng allocates and zeroes a buffer of a chunk's declared length before it reads the chunk's
// data, so a file of a few dozen bytes whose tEXt chunk declares 2 GB costs 2 GB of memory and
// seconds of time before libpng finds the data missing. The whole file is in memory here, so every
// chunk up to IEND is checked to fit in what is left of it before libpng sees any. (libpng reads
// every chunk up to IEND, so a chunk that does not fit was an error anyway, only a costlier one.)
static int check_chunk_lengths(const uint8_t *data, size_t length, char *err, size_t err_cap) {
    size_t at = 8;
    while (length - at >= 8) {
        const uint8_t *p = data + at;
        uint32_t declared = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        size_t left = length - at - 8;  // after the length and the type: data and CRC
        if (left < 4 || declared > left - 4) {
            char type[5];
            for (int i = 0; i < 4; i++) type[i] = (p[4 + i] >= 0x20 && p[4 + i] < 0x7F) ? (char)p[4 + i] : '?';
            type[4] = 0;
            snprintf(err, err_cap, "the PNG chunk '%s' at byte %zu declares %u bytes of data, but the file has only %zu more "
                     "(truncated or damaged)", type, at, (unsigned)declared, left < 4 ? 0 : left - 4);
            return -1;
        }
        if (memcmp(p + 4, "IEND", 4) == 0) return 0;
        at += 12 + (size_t)declared;
    }
    return 0;  // a cut chunk header or a missing IEND: libpng reports it
}

int sdr_png_decode(const uint8_t *data, size_t length, sdr_png_image *image,
                   char *err, size_t err_cap) {
    memset(image, 0, sizeof(*image));
    if (length < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(err, err_cap, "not a PNG file (bad signature)");
        return -1;
    }
    if (check_chunk_lengths(data, length, err, err_cap) != 0) return -1;
    png_ctx *ctx = calloc(1, sizeof(png_ctx));
    if (!ctx) {
        snprintf(err, err_cap, "out of memory");
        return -1;
    }
    ctx->err = err;
    ctx->err_cap = err_cap;
    ctx->in = data;
    ctx->in_len = length;
    ctx->image = image;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_infop end_info = info ? png_create_info_struct(png) : NULL;
    if (!end_info) {
        snprintf(err, err_cap, "could not create a libpng read structure");
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        free(ctx);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, &end_info);
        free(ctx->rows);
        sdr_png_image_free(ctx->image);
        free(ctx);
        return -1;
    }
    png_set_read_fn(png, ctx, read_bytes);
    png_read_info(png, info);

    // Normalise every colour type and depth to 8-bit RGB, or RGBA when there is alpha (an alpha
    // channel or tRNS), which is then moved to its own plane (masks are read from it).
    int color_type = png_get_color_type(png, info);
    int has_alpha = (color_type & PNG_COLOR_MASK_ALPHA) != 0 || png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    png_set_expand(png);
    png_set_strip_16(png);
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA) {
        png_set_gray_to_rgb(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    png_uint_32 width = png_get_image_width(png, info);
    png_uint_32 height = png_get_image_height(png, info);
    size_t channels = has_alpha ? 4 : 3;
    if (png_get_rowbytes(png, info) != (size_t)width * channels) png_error(png, "unexpected row layout after conversion to RGB");
    if ((size_t)width * height * 3 > SDR_MAX_PIXEL_BYTES) png_error(png, "image too large");
    image->width = width;
    image->height = height;
    image->pixels = malloc((size_t)width * height * channels + 1);
    if (has_alpha) image->alpha = malloc((size_t)width * height + 1);
    ctx->rows = malloc(sizeof(png_bytep) * (height ? height : 1));
    if (!image->pixels || !ctx->rows || (has_alpha && !image->alpha)) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < height; y++) ctx->rows[y] = image->pixels + (size_t)y * width * channels;
    png_read_image(png, ctx->rows);
    if (has_alpha) {
        // RGBA to RGB in place (each pixel moves down, never past one not yet read) and alpha apart.
        size_t count = (size_t)width * height;
        for (size_t i = 0; i < count; i++) {
            uint8_t *p = image->pixels + i * 4;
            image->alpha[i] = p[3];
            memmove(image->pixels + i * 3, p, 3);
        }
    }
    png_read_end(png, end_info);

    collect_texts(png, info, image);
    collect_texts(png, end_info, image);

    png_destroy_read_struct(&png, &info, &end_info);
    free(ctx->rows);
    free(ctx);
    return 0;
}
