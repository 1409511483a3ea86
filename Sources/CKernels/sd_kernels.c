#include "sd_kernels.h"

#include <math.h>

// k is cut into blocks of this many, so that a block of B's panel (16 KB) stays in L1 while the
// rows of A stream past it; each block's chain starts from zero and is added to C, which also
// keeps the rounding of long sums (1280 channels, 2560 in the up blocks) near a 256-term chain's.
enum { KC = 256 };

#if defined(__x86_64__)
#include <immintrin.h>

// `rows` (1 … 6) rows of C × one 16-column panel, over `kc` values of k. `add`: C += the block's
// chain (later k blocks); else C = it. With `rows` a constant the accumulators stay in registers.
__attribute__((target("avx2,fma"), always_inline)) static inline void
kernel(int rows, int kc, const float *a, int lda, const float *b, float *c, int ldc, int add) {
    __m256 lo[6], hi[6];
    for (int r = 0; r < rows; r++) lo[r] = hi[r] = _mm256_setzero_ps();
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b + 16 * k), b1 = _mm256_loadu_ps(b + 16 * k + 8);
        for (int r = 0; r < rows; r++) {
            __m256 x = _mm256_broadcast_ss(a + r * lda + k);
            lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
        }
    }
    for (int r = 0; r < rows; r++) {
        if (add) {
            lo[r] = _mm256_add_ps(_mm256_loadu_ps(c + r * ldc), lo[r]);
            hi[r] = _mm256_add_ps(_mm256_loadu_ps(c + r * ldc + 8), hi[r]);
        }
        _mm256_storeu_ps(c + r * ldc, lo[r]);
        _mm256_storeu_ps(c + r * ldc + 8, hi[r]);
    }
}

#define KERNEL(rows) kernel(rows, kc, a + (long)i * lda + k0, lda, b + (long)j * 16 * k + 16 * k0, c + (long)i * ldc + 16 * j, ldc, k0 > 0)

__attribute__((target("avx2,fma")))
static void sgemm_panels_avx2(int m, int n, int k, const float *a, int lda, const float *b, float *c, int ldc) {
    const int panels = (n + 15) / 16;
    for (int k0 = 0; k0 < k; k0 += KC) {
        const int kc = k - k0 < KC ? k - k0 : KC;
        int i = 0;
        for (; i + 6 <= m; i += 6) {
            for (int j = 0; j < panels; j++) KERNEL(6);
        }
        for (int j = 0; j < panels && i < m; j++) {
            switch (m - i) {
            case 1: KERNEL(1); break;
            case 2: KERNEL(2); break;
            case 3: KERNEL(3); break;
            case 4: KERNEL(4); break;
            default: KERNEL(5); break;
            }
        }
    }
}

#endif

void sd_sgemm_panels_portable(int m, int n, int k, const float *a, int lda, const float *b, float *c, int ldc) {
    const int panels = (n + 15) / 16;
    for (int i = 0; i < m; i++) {
        for (int col = 0; col < 16 * panels; col++) {
            const float *column = b + (long)(col / 16) * 16 * k + col % 16;
            float total = 0;
            for (int k0 = 0; k0 < k; k0 += KC) {
                const int end = k - k0 < KC ? k : k0 + KC;
                float chain = 0;
                for (int kk = k0; kk < end; kk++) chain = fmaf(a[(long)i * lda + kk], column[16 * kk], chain);
                total = k0 > 0 ? total + chain : chain;
            }
            c[(long)i * ldc + col] = total;
        }
    }
}

void sd_sgemm_panels(int m, int n, int k, const float *a, int lda, const float *b, float *c, int ldc) {
#if defined(__x86_64__)
    // Release builds of the engine need AVX2 anyway (HostCheck); a debug build runs on any x86-64.
    static int avx2 = -1;
    if (avx2 < 0) avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2) {
        sgemm_panels_avx2(m, n, k, a, lda, b, c, ldc);
        return;
    }
#endif
    sd_sgemm_panels_portable(m, n, k, a, lda, b, c, ldc);
}
