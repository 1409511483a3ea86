// C side of the Imaging module: libpng and libjpeg calls that may fail.
//
// Both libraries report errors by longjmp (libpng through png_jmpbuf, libjpeg through its
// error_exit hook, whose default even calls exit()). A longjmp across Swift frames is undefined
// behaviour, so every call into either library happens inside one C function here that owns the
// setjmp, frees what it allocated and returns -1 with the library's message in `err`. Swift only
// ever sees plain return codes; no Swift frame lies between a setjmp and its longjmp.
//
// Everything works on memory buffers: the encoders return a malloc'd byte buffer (free with
// sdr_free), the decoders take bytes and return malloc'd results (free with the matching *_free).
#ifndef SDREPL_IMAGING_SHIM_H
#define SDREPL_IMAGING_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// One PNG text chunk. `compression` uses libpng's values: -1 tEXt, 0 zTXt, 1 iTXt, 2 compressed iTXt.
/// `text` is NUL-terminated: Latin-1 bytes for tEXt/zTXt, UTF-8 for iTXt. `lang` and
/// `translated_key` apply to iTXt only and may be NULL.
typedef struct {
    const char *key;
    const char *text;
    int compression;
    const char *lang;
    const char *translated_key;
} sdr_png_text;

/// A decoded text chunk; all strings are NUL-terminated and owned by the sdr_png_image.
typedef struct {
    char *key;
    char *text;
    size_t text_length;
    int compression;
    char *lang;
    char *translated_key;
} sdr_png_text_out;

/// A decoded PNG: 8-bit RGB pixels, row-major, its alpha when it has any (an alpha channel or a
/// tRNS chunk; NULL otherwise), plus every tEXt, zTXt and iTXt chunk in file order.
typedef struct {
    uint8_t *pixels;
    uint8_t *alpha;
    uint32_t width;
    uint32_t height;
    sdr_png_text_out *texts;
    int text_count;
} sdr_png_image;

/// Encodes 8-bit RGB pixels as a PNG with the given text chunks (written before IDAT).
/// Returns 0 and sets *out/*out_len (free with sdr_free), or -1 with a message in err.
int sdr_png_encode(const uint8_t *rgb, uint32_t width, uint32_t height,
                   const sdr_png_text *texts, int text_count,
                   uint8_t **out, size_t *out_len, char *err, size_t err_cap);

/// Decodes a PNG of any colour type/bit depth to 8-bit RGB (palette expanded, grey widened,
/// alpha kept apart, 16-bit reduced) and collects its text chunks. Returns 0 or -1 with err set.
int sdr_png_decode(const uint8_t *data, size_t length, sdr_png_image *image,
                   char *err, size_t err_cap);
void sdr_png_image_free(sdr_png_image *image);

/// One JPEG marker segment to write (APPn or COM); `length` must be at most 65533.
typedef struct {
    int marker;
    const uint8_t *data;
    uint32_t length;
} sdr_jpeg_marker;

/// A decoded JPEG marker segment, owned by the sdr_jpeg_image.
typedef struct {
    int marker;
    uint8_t *data;
    uint32_t length;
} sdr_jpeg_marker_out;

/// A decoded JPEG: 8-bit RGB pixels plus every APPn and COM segment in file order.
typedef struct {
    uint8_t *pixels;
    uint32_t width;
    uint32_t height;
    sdr_jpeg_marker_out *markers;
    int marker_count;
} sdr_jpeg_image;

/// Encodes 8-bit RGB pixels as a baseline JPEG (4:2:0, JFIF APP0) at `quality` (1...100),
/// followed by the given marker segments right after the JFIF header.
int sdr_jpeg_encode(const uint8_t *rgb, uint32_t width, uint32_t height, int quality,
                    const sdr_jpeg_marker *markers, int marker_count,
                    uint8_t **out, size_t *out_len, char *err, size_t err_cap);

/// Decodes a JPEG to 8-bit RGB and keeps its APPn and COM segments. Returns 0 or -1 with err set.
int sdr_jpeg_decode(const uint8_t *data, size_t length, sdr_jpeg_image *image,
                    char *err, size_t err_cap);
void sdr_jpeg_image_free(sdr_jpeg_image *image);

/// Frees a buffer returned by an encoder.
void sdr_free(void *buffer);

#ifdef __cplusplus
}
#endif

#endif
