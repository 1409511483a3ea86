#include "sd_bf16.h"

#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static inline uint32_t rounded_bits(float value) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (bits | 0x00400000u) & 0xffff0000u; // quiet NaN
    return (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
}

void sd_bf16_pack(const float *src, long rows, long cols, long ld, uint16_t *dst) {
    for (long r = 0; r < rows; r++) {
        const float *row = src + r * ld;
        uint16_t *out = dst + r * cols;
        for (long c = 0; c < cols; c++) out[c] = (uint16_t)(rounded_bits(row[c]) >> 16);
    }
}

void sd_bf16_round(const float *src, long rows, long cols, long ld, float *dst) {
    for (long r = 0; r < rows; r++) {
        const float *row = src + r * ld;
        float *out = dst + r * cols;
        for (long c = 0; c < cols; c++) {
            uint32_t bits = rounded_bits(row[c]);
            memcpy(out + c, &bits, sizeof bits);
        }
    }
}

// oneDNN's functions, typed by its own header and found with dlsym.
#define DNNL_FUNCTIONS(X) \
    X(dnnl_engine_create) X(dnnl_get_effective_cpu_isa) X(dnnl_memory_desc_init_by_strides) \
    X(dnnl_matmul_desc_init) X(dnnl_primitive_attr_create) X(dnnl_primitive_attr_destroy) \
    X(dnnl_primitive_attr_set_scratchpad_mode) X(dnnl_primitive_attr_set_output_scales) \
    X(dnnl_primitive_attr_set_post_ops) X(dnnl_post_ops_create) X(dnnl_post_ops_destroy) \
    X(dnnl_post_ops_append_sum) X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_destroy) \
    X(dnnl_primitive_desc_query) X(dnnl_primitive_desc_query_md) X(dnnl_memory_desc_get_size) \
    X(dnnl_primitive_create) X(dnnl_primitive_destroy) X(dnnl_primitive_execute) \
    X(dnnl_memory_create) X(dnnl_memory_destroy) X(dnnl_stream_create) X(dnnl_stream_wait)

#define DECLARE(name) static __typeof__(&name) p_##name;
DNNL_FUNCTIONS(DECLARE)
#undef DECLARE

static void (*p_omp_set_num_threads)(int);
static dnnl_engine_t engine;
static const char *open_failure;
static pthread_once_t open_once = PTHREAD_ONCE_INIT;

static void open_dnnl(void) {
    void *lib = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) { open_failure = "oneDNN (libdnnl.so.2, Debian's libdnnl2) is not installed"; return; }
#define RESOLVE(name) \
    if (!(p_##name = (__typeof__(&name))dlsym(lib, #name))) { open_failure = "libdnnl.so.2 lacks " #name; return; }
    DNNL_FUNCTIONS(RESOLVE)
#undef RESOLVE
    p_omp_set_num_threads = (void (*)(int))dlsym(lib, "omp_set_num_threads");
    if (p_dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
        engine = NULL;
        open_failure = "oneDNN could not make a CPU engine";
    }
}

int sd_dnnl_open(const char **reason) {
    pthread_once(&open_once, open_dnnl);
    if (open_failure) { if (reason) *reason = open_failure; return 0; }
    return 1;
}

int sd_dnnl_bf16_available(const char **reason) {
    if (!sd_dnnl_open(reason)) return 0;
    dnnl_cpu_isa_t isa = p_dnnl_get_effective_cpu_isa();
    if ((isa & dnnl_cpu_isa_avx512_core_bf16) != dnnl_cpu_isa_avx512_core_bf16) {
        if (reason) *reason = "this CPU has no bf16 instructions (AVX512_BF16 or AMX)";
        return 0;
    }
    sd_dnnl_matmul *probe = sd_dnnl_matmul_create(16, 16, 16, 0, 1, 16, 1, 0, 1, reason);
    if (!probe) return 0;
    sd_dnnl_matmul_destroy(probe);
    return 1;
}

const char *sd_dnnl_bf16_isa(void) {
    if (!sd_dnnl_open(NULL)) return "none";
    dnnl_cpu_isa_t isa = p_dnnl_get_effective_cpu_isa();
    return (isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx ? "AMX" : "AVX512_BF16";
}

struct sd_dnnl_matmul {
    dnnl_primitive_t primitive;
    dnnl_memory_desc_t a, b, c, scratchpad;
    size_t scratchpad_size;
    const char *impl;
};

sd_dnnl_matmul *sd_dnnl_matmul_create(long m, long n, long k, int trans_a, int trans_b, long ldc,
                                      float alpha, float beta, int bf16, const char **reason) {
    if (!sd_dnnl_open(reason)) return NULL;
    sd_dnnl_matmul *mm = calloc(1, sizeof *mm);
    if (!mm) { if (reason) *reason = "out of memory"; return NULL; }
    dnnl_data_type_t input = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t a_dims = {m, k}, b_dims = {k, n}, c_dims = {m, n};
    dnnl_dims_t a_strides = {trans_a ? 1 : k, trans_a ? m : 1};
    dnnl_dims_t b_strides = {trans_b ? 1 : n, trans_b ? k : 1};
    dnnl_dims_t c_strides = {ldc, 1};
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post_ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_matmul_desc_t desc;
    int ok = p_dnnl_memory_desc_init_by_strides(&mm->a, 2, a_dims, input, a_strides) == dnnl_success
        && p_dnnl_memory_desc_init_by_strides(&mm->b, 2, b_dims, input, b_strides) == dnnl_success
        && p_dnnl_memory_desc_init_by_strides(&mm->c, 2, c_dims, dnnl_f32, c_strides) == dnnl_success
        && p_dnnl_matmul_desc_init(&desc, &mm->a, &mm->b, NULL, &mm->c) == dnnl_success
        && p_dnnl_primitive_attr_create(&attr) == dnnl_success
        && p_dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success
        && (alpha == 1 || p_dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha) == dnnl_success)
        && (beta == 0 || (p_dnnl_post_ops_create(&post_ops) == dnnl_success
                          && p_dnnl_post_ops_append_sum(post_ops, beta) == dnnl_success
                          && p_dnnl_primitive_attr_set_post_ops(attr, post_ops) == dnnl_success));
    if (ok && p_dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL) != dnnl_success) {
        ok = 0;
        if (reason) *reason = bf16 ? "oneDNN has no bf16 matmul for this CPU" : "oneDNN has no matmul for this shape";
    } else if (!ok && reason) {
        *reason = "oneDNN refused the matmul's description";
    }
    if (ok) {
        const dnnl_memory_desc_t *scratchpad = p_dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        if (scratchpad) mm->scratchpad = *scratchpad;
        mm->scratchpad_size = scratchpad ? p_dnnl_memory_desc_get_size(scratchpad) : 0;
        if (p_dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &mm->impl) != dnnl_success) mm->impl = "?";
        if (p_dnnl_primitive_create(&mm->primitive, pd) != dnnl_success) {
            ok = 0;
            if (reason) *reason = "oneDNN could not make the matmul";
        }
    }
    // The implementation's name lives in the primitive descriptor: keep a copy past its end.
    if (ok && mm->impl) mm->impl = strdup(mm->impl);
    if (pd) p_dnnl_primitive_desc_destroy(pd);
    if (post_ops) p_dnnl_post_ops_destroy(post_ops);
    if (attr) p_dnnl_primitive_attr_destroy(attr);
    if (!ok) { free(mm); return NULL; }
    return mm;
}

static __thread dnnl_stream_t thread_stream;

int sd_dnnl_matmul_run(const sd_dnnl_matmul *mm, const void *a, const void *b, float *c, int threads) {
    if (!thread_stream) {
        dnnl_status_t status = p_dnnl_stream_create(&thread_stream, engine, dnnl_stream_default_flags);
        if (status != dnnl_success) { thread_stream = NULL; return (int)status; }
    }
    if (p_omp_set_num_threads) p_omp_set_num_threads(threads < 1 ? 1 : threads);
    void *scratch = NULL;
    if (mm->scratchpad_size > 0 && posix_memalign(&scratch, 64, mm->scratchpad_size) != 0) return (int)dnnl_out_of_memory;
    dnnl_memory_t am = NULL, bm = NULL, cm = NULL, sm = NULL;
    dnnl_status_t status = p_dnnl_memory_create(&am, &mm->a, engine, (void *)a);
    if (status == dnnl_success) status = p_dnnl_memory_create(&bm, &mm->b, engine, (void *)b);
    if (status == dnnl_success) status = p_dnnl_memory_create(&cm, &mm->c, engine, c);
    if (status == dnnl_success && scratch) status = p_dnnl_memory_create(&sm, &mm->scratchpad, engine, scratch);
    if (status == dnnl_success) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, sm}};
        status = p_dnnl_primitive_execute(mm->primitive, thread_stream, sm ? 4 : 3, args);
        if (status == dnnl_success) status = p_dnnl_stream_wait(thread_stream);
    }
    if (am) p_dnnl_memory_destroy(am);
    if (bm) p_dnnl_memory_destroy(bm);
    if (cm) p_dnnl_memory_destroy(cm);
    if (sm) p_dnnl_memory_destroy(sm);
    free(scratch);
    return (int)status;
}

const char *sd_dnnl_matmul_impl(const sd_dnnl_matmul *mm) { return mm->impl ? mm->impl : "?"; }

void sd_dnnl_matmul_destroy(sd_dnnl_matmul *mm) {
    if (!mm) return;
    if (mm->primitive) p_dnnl_primitive_destroy(mm->primitive);
    free((void *)mm->impl);
    free(mm);
}
