#include "ckernels.h"

typedef float v8 __attribute__((vector_size(32)));
/* the same vector with 4-byte alignment, for loads and stores at any float address */
typedef float v8u __attribute__((vector_size(32), aligned(4)));

#define GEMM_TILE(x) x##_portable
#define GEMM_NAME gemm_portable
#include "gemm_body.h"
#undef GEMM_TILE
#undef GEMM_NAME

void fedpi_gemm_portable(long m, long n, long k, float alpha, const float *a, long rsa, long csa,
                         const float *b, long ldb, float beta, float *c, long ldc) {
    gemm_portable(m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
}

#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define GEMM_TILE(x) x##_avx2
#define GEMM_NAME gemm_avx2
#include "gemm_body.h"
#undef GEMM_TILE
#undef GEMM_NAME
#pragma clang attribute pop

int fedpi_kernels_avx2(void) {
    static int cached = -1;
    if (cached < 0) cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return cached;
}

void fedpi_gemm(long m, long n, long k, float alpha, const float *a, long rsa, long csa,
                const float *b, long ldb, float beta, float *c, long ldc) {
    if (fedpi_kernels_avx2()) gemm_avx2(m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
    else gemm_portable(m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
}
#else
int fedpi_kernels_avx2(void) { return 0; }

void fedpi_gemm(long m, long n, long k, float alpha, const float *a, long rsa, long csa,
                const float *b, long ldb, float beta, float *c, long ldc) {
    gemm_portable(m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
}
#endif
