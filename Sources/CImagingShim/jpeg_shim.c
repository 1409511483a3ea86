// libjpeg behind setjmp: see imaging_shim.h for why this lives in C.
#include "imaging_shim.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#define SDR_MAX_PIXEL_BYTES ((size_t)16384 * 16384 * 3)

// libjpeg's default error_exit prints and calls exit(); ours formats the message and jumps back
// to the setjmp in the calling function. State to clean up lives in the heap-allocated context,
// whose pointer is fixed before setjmp (so it is well defined after the longjmp).
typedef struct {
    struct jpeg_error_mgr pub;  // first: libjpeg casts cinfo->err to this
    jmp_buf jump;
    char *err;
    size_t err_cap;
    // writing: our own growable destination (jpeg_mem_dest's buffer may be freed mid-error)
    struct jpeg_destination_mgr dest;
    uint8_t *out;
    size_t out_cap;
    size_t out_len;
    // reading
    JSAMPROW *rows;
    uint8_t *cmyk_row;
    int truncated;
    sdr_jpeg_image *image;
} jpeg_ctx;

static void error_exit(j_common_ptr cinfo) {
    jpeg_ctx *ctx = (jpeg_ctx *)cinfo->err;
    char message[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, message);
    snprintf(ctx->err, ctx->err_cap, "%s", message);
    longjmp(ctx->jump, 1);
}

// Warnings are recoverable; a library stays quiet.
static void output_nothing(j_common_ptr cinfo) { (void)cinfo; }

// One warning is not: a file cut short, whose missing part libjpeg fills with grey. Pillow refuses
// such a file ("image file is truncated"), and an init image half grey would be a silent wrong result.
static void note_truncation(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) ((jpeg_ctx *)cinfo->err)->truncated = 1;
}

// Pillow's CMYK-to-RGB conversion (Convert.c's cmyk2rgb) of Adobe's inverted CMYK, which Pillow
// assumes for every CMYK JPEG.
static void cmyk_row_to_rgb(const uint8_t *stored, uint8_t *rgb, size_t width) {
    for (size_t x = 0; x < width; x++, stored += 4, rgb += 3) {
        int nk = stored[3];  // 255 - K, K being the inverted stored value
        for (int c = 0; c < 3; c++) {
            int t = (255 - stored[c]) * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            rgb[c] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
}

static jpeg_ctx *ctx_of(j_compress_ptr cinfo) { return (jpeg_ctx *)cinfo->err; }

static void dest_init(j_compress_ptr cinfo) {
    jpeg_ctx *ctx = ctx_of(cinfo);
    ctx->out_cap = 65536;
    ctx->out = malloc(ctx->out_cap);
    if (!ctx->out) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 0);
    ctx->dest.next_output_byte = ctx->out;
    ctx->dest.free_in_buffer = ctx->out_cap;
}

static boolean dest_empty(j_compress_ptr cinfo) {
    jpeg_ctx *ctx = ctx_of(cinfo);
    size_t cap = ctx->out_cap * 2;
    uint8_t *grown = realloc(ctx->out, cap);
    if (!grown) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 1);
    ctx->out = grown;
    // empty_output_buffer is only called with the buffer full.
    ctx->dest.next_output_byte = grown + ctx->out_cap;
    ctx->dest.free_in_buffer = cap - ctx->out_cap;
    ctx->out_cap = cap;
    return TRUE;
}

static void dest_term(j_compress_ptr cinfo) {
    jpeg_ctx *ctx = ctx_of(cinfo);
    ctx->out_len = ctx->out_cap - ctx->dest.free_in_buffer;
}

int sdr_jpeg_encode(const uint8_t *rgb, uint32_t width, uint32_t height, int quality,
                    const sdr_jpeg_marker *markers, int marker_count,
                    uint8_t **out, size_t *out_len, char *err, size_t err_cap) {
    jpeg_ctx *ctx = calloc(1, sizeof(jpeg_ctx));
    if (!ctx) {
        snprintf(err, err_cap, "out of memory");
        return -1;
    }
    ctx->err = err;
    ctx->err_cap = err_cap;
    struct jpeg_compress_struct *cinfo = calloc(1, sizeof(struct jpeg_compress_struct));
    if (!cinfo) {
        free(ctx);
        snprintf(err, err_cap, "out of memory");
        return -1;
    }
    cinfo->err = jpeg_std_error(&ctx->pub);
    ctx->pub.error_exit = error_exit;
    ctx->pub.output_message = output_nothing;
    if (setjmp(ctx->jump)) {
        jpeg_destroy_compress(cinfo);
        free(cinfo);
        free(ctx->out);
        free(ctx);
        return -1;
    }
    jpeg_create_compress(cinfo);
    ctx->dest.init_destination = dest_init;
    ctx->dest.empty_output_buffer = dest_empty;
    ctx->dest.term_destination = dest_term;
    cinfo->dest = &ctx->dest;
    cinfo->image_width = width;
    cinfo->image_height = height;
    cinfo->input_components = 3;
    cinfo->in_color_space = JCS_RGB;
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, quality, TRUE);
    jpeg_start_compress(cinfo, TRUE);
    for (int i = 0; i < marker_count; i++) {
        jpeg_write_marker(cinfo, markers[i].marker, markers[i].data, markers[i].length);
    }
    while (cinfo->next_scanline < cinfo->image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo->next_scanline * width * 3);
        jpeg_write_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_compress(cinfo);
    jpeg_destroy_compress(cinfo);
    free(cinfo);
    *out = ctx->out;
    *out_len = ctx->out_len;
    free(ctx);
    return 0;
}

void sdr_jpeg_image_free(sdr_jpeg_image *image) {
    if (!image) return;
    for (int i = 0; i < image->marker_count; i++) free(image->markers[i].data);
    free(image->markers);
    free(image->pixels);
    memset(image, 0, sizeof(*image));
}

int sdr_jpeg_decode(const uint8_t *data, size_t length, sdr_jpeg_image *image,
                    char *err, size_t err_cap) {
    memset(image, 0, sizeof(*image));
    if (length < 3 || data[0] != 0xFF || data[1] != 0xD8) {
        snprintf(err, err_cap, "not a JPEG file (no SOI marker)");
        return -1;
    }
    jpeg_ctx *ctx = calloc(1, sizeof(jpeg_ctx));
    struct jpeg_decompress_struct *cinfo = calloc(1, sizeof(struct jpeg_decompress_struct));
    if (!ctx || !cinfo) {
        free(ctx);
        free(cinfo);
        snprintf(err, err_cap, "out of memory");
        return -1;
    }
    ctx->err = err;
    ctx->err_cap = err_cap;
    ctx->image = image;
    cinfo->err = jpeg_std_error(&ctx->pub);
    ctx->pub.error_exit = error_exit;
    ctx->pub.output_message = output_nothing;
    ctx->pub.emit_message = note_truncation;
    if (setjmp(ctx->jump)) {
        jpeg_destroy_decompress(cinfo);
        free(cinfo);
        free(ctx->rows);
        free(ctx->cmyk_row);
        sdr_jpeg_image_free(ctx->image);
        free(ctx);
        return -1;
    }
    jpeg_create_decompress(cinfo);
    jpeg_mem_src(cinfo, data, (unsigned long)length);
    jpeg_save_markers(cinfo, JPEG_COM, 0xFFFF);
    for (int m = 0; m < 16; m++) jpeg_save_markers(cinfo, JPEG_APP0 + m, 0xFFFF);
    jpeg_read_header(cinfo, TRUE);
    // The size is checked before jpeg_start_decompress: for a progressive JPEG, libjpeg allocates
    // and zeroes coefficient buffers for the whole image there, so a 4 KB file declaring 65500x65500
    // took 12 GB and most of a minute before a check placed after it could refuse the image.
    if ((size_t)cinfo->image_width * cinfo->image_height * 3 > SDR_MAX_PIXEL_BYTES) {
        snprintf(err, err_cap, "the JPEG is %ux%u pixels; sdrepl reads images of up to %zu pixels (16384x16384)",
                 (unsigned)cinfo->image_width, (unsigned)cinfo->image_height, SDR_MAX_PIXEL_BYTES / 3);
        longjmp(ctx->jump, 1);
    }
    // libjpeg has no CMYK-to-RGB conversion: a print-ready (Photoshop) JPEG is read as CMYK and
    // turned into RGB here the way Pillow does for A1111, whose images these are meant to match.
    int cmyk = cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK;
    cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(cinfo);
    if (cinfo->output_components != (cmyk ? 4 : 3)) ERREXIT(cinfo, JERR_CONVERSION_NOTIMPL);
    size_t row_bytes = (size_t)cinfo->output_width * 3;
    image->width = cinfo->output_width;
    image->height = cinfo->output_height;
    image->pixels = malloc(row_bytes * cinfo->output_height + 1);
    if (!image->pixels) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 2);
    if (cmyk) {
        ctx->cmyk_row = malloc((size_t)cinfo->output_width * 4);
        if (!ctx->cmyk_row) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 5);
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = image->pixels + row_bytes * cinfo->output_scanline;
        if (!cmyk) {
            jpeg_read_scanlines(cinfo, &row, 1);
            continue;
        }
        JSAMPROW stored = ctx->cmyk_row;
        jpeg_read_scanlines(cinfo, &stored, 1);
        cmyk_row_to_rgb(stored, row, cinfo->output_width);
    }
    free(ctx->cmyk_row);
    ctx->cmyk_row = NULL;
    if (ctx->truncated) {
        snprintf(err, err_cap, "the JPEG file is cut short (its data ends before the image does); copy it again from where it came from");
        longjmp(ctx->jump, 1);
    }

    int count = 0;
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) count++;
    if (count > 0) {
        image->markers = calloc((size_t)count, sizeof(sdr_jpeg_marker_out));
        if (!image->markers) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 3);
        for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
            sdr_jpeg_marker_out *o = &image->markers[image->marker_count++];
            o->marker = m->marker;
            o->length = m->data_length;
            o->data = malloc(m->data_length + 1);
            if (!o->data) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 4);
            memcpy(o->data, m->data, m->data_length);
        }
    }
    jpeg_finish_decompress(cinfo);
    jpeg_destroy_decompress(cinfo);
    free(cinfo);
    free(ctx);
    return 0;
}
