#ifndef SD_BF16_H
#define SD_BF16_H

#include <stdint.h>

/// bf16 matrix products for the engine: rounding to bf16, and oneDNN's matmul with bf16 inputs and
/// fp32 accumulation. oneDNN (libdnnl.so.2) is opened at run time, only when asked for, so a machine
/// without the library (or a CPU without bf16) runs the fp32 engine as before. Building needs
/// oneDNN's headers for its types and constants (Debian's libdnnl-dev, which `make deps` installs).

/// Rounds a `rows` x `cols` block of `src` (row stride `ld`) to bf16, round to nearest even, into
/// `dst`, contiguous (row stride `cols`). NaN stays NaN.
void sd_bf16_pack(const float *src, long rows, long cols, long ld, uint16_t *dst);

/// The same rounding, kept in fp32: the values a bf16 multiply sees, for an fp32 sgemm that then
/// accumulates as the hardware does (a product of two bf16 numbers is exact in fp32).
void sd_bf16_round(const float *src, long rows, long cols, long ld, float *dst);

/// Opens oneDNN. Returns 1 when bf16 matmuls run on this CPU's bf16 instructions (AVX512_BF16 or
/// AMX, as oneDNN detects them); otherwise 0, with `*reason` saying why (a static string).
int sd_dnnl_bf16_available(const char **reason);

/// The bf16 instructions oneDNN's matmuls use here ("AMX" or "AVX512_BF16"; they sum in other
/// orders), once `sd_dnnl_bf16_available` said 1.
const char *sd_dnnl_bf16_isa(void);

/// Opens oneDNN for the fp32 matmul (any x86-64 CPU). Returns 1, or 0 with `*reason`.
int sd_dnnl_open(const char **reason);

typedef struct sd_dnnl_matmul sd_dnnl_matmul;

/// A matmul `C = alpha * A·B + beta * C` for one shape, made once and run many times (from several
/// threads at once too). `A` is `[m, k]` contiguous, stored `[k, m]` when `trans_a`; `B` is `[k, n]`
/// contiguous, stored `[n, k]` when `trans_b`; `C` is `[m, n]` with row stride `ldc`. `bf16`: the
/// inputs are bf16 (`uint16_t`), else fp32. Returns NULL, with `*reason`, if oneDNN has no
/// implementation for it on this CPU.
sd_dnnl_matmul *sd_dnnl_matmul_create(long m, long n, long k, int trans_a, int trans_b, long ldc,
                                      float alpha, float beta, int bf16, const char **reason);

/// Runs `mm` on `threads` OpenMP threads. Returns 0, or a oneDNN status.
int sd_dnnl_matmul_run(const sd_dnnl_matmul *mm, const void *a, const void *b, float *c, int threads);

/// The implementation oneDNN chose (e.g. "brg:avx512_core_bf16"), for the benchmark's report.
const char *sd_dnnl_matmul_impl(const sd_dnnl_matmul *mm);

void sd_dnnl_matmul_destroy(sd_dnnl_matmul *mm);

#endif
