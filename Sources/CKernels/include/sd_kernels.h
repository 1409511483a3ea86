#ifndef SD_KERNELS_H
#define SD_KERNELS_H

/// The engine's own matrix product for Winograd convolutions: `C = A·B` with `A` `[m, k]` row-major
/// (row stride `lda`) and `B` packed in panels of 16 columns: panel `j` holds columns `16j … 16j+15`
/// as `[k][16]`, contiguous, panels `16·k` floats apart. Every panel is computed whole, so `C`
/// (row stride `ldc`) gets `16·⌈n/16⌉` columns per row; the columns past `n` are the products of
/// whatever `B`'s last panel holds there.
///
/// Each element is the sum, in order, of chains of fused multiply-adds over blocks of 256 values of
/// `k`, each in order: the result does not depend on the thread count or the caller's tiling.
///
/// Runs on AVX2 and FMA where the CPU has them, else on `sd_sgemm_panels_portable`.
void sd_sgemm_panels(int m, int n, int k, const float *a, int lda, const float *b, float *c, int ldc);

/// The same product in plain C, one element at a time, with the same bits.
void sd_sgemm_panels_portable(int m, int n, int k, const float *a, int lda, const float *b, float *c, int ldc);

#endif
