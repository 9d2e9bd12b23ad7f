#include "ckernels.h"
#include <string.h>

/* The hot kernels are written once, with clang's vector extensions, and compiled twice: portable
 * (SSE2 on x86-64, NEON on arm64) and, on x86-64, for AVX2+FMA behind a runtime CPU check. */
#pragma clang diagnostic ignored "-Wpsabi"  /* 32-byte vectors passed between always-inline helpers */

typedef float v8 __attribute__((vector_size(32)));
/* the same vector with 4-byte alignment, for loads and stores at any float address */
typedef float v8u __attribute__((vector_size(32), aligned(4)));
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* For the sparse backward pass's AVX2 compress: the lanes set in an 8-bit mask, in order */
#if defined(__x86_64__)
static const uint8_t sparse_compress_lut[256][8] = {
    {0,0,0,0,0,0,0,0}, {0,0,0,0,0,0,0,0}, {1,0,0,0,0,0,0,0}, {0,1,0,0,0,0,0,0}, {2,0,0,0,0,0,0,0}, {0,2,0,0,0,0,0,0}, {1,2,0,0,0,0,0,0}, {0,1,2,0,0,0,0,0},
    {3,0,0,0,0,0,0,0}, {0,3,0,0,0,0,0,0}, {1,3,0,0,0,0,0,0}, {0,1,3,0,0,0,0,0}, {2,3,0,0,0,0,0,0}, {0,2,3,0,0,0,0,0}, {1,2,3,0,0,0,0,0}, {0,1,2,3,0,0,0,0},
    {4,0,0,0,0,0,0,0}, {0,4,0,0,0,0,0,0}, {1,4,0,0,0,0,0,0}, {0,1,4,0,0,0,0,0}, {2,4,0,0,0,0,0,0}, {0,2,4,0,0,0,0,0}, {1,2,4,0,0,0,0,0}, {0,1,2,4,0,0,0,0},
    {3,4,0,0,0,0,0,0}, {0,3,4,0,0,0,0,0}, {1,3,4,0,0,0,0,0}, {0,1,3,4,0,0,0,0}, {2,3,4,0,0,0,0,0}, {0,2,3,4,0,0,0,0}, {1,2,3,4,0,0,0,0}, {0,1,2,3,4,0,0,0},
    {5,0,0,0,0,0,0,0}, {0,5,0,0,0,0,0,0}, {1,5,0,0,0,0,0,0}, {0,1,5,0,0,0,0,0}, {2,5,0,0,0,0,0,0}, {0,2,5,0,0,0,0,0}, {1,2,5,0,0,0,0,0}, {0,1,2,5,0,0,0,0},
    {3,5,0,0,0,0,0,0}, {0,3,5,0,0,0,0,0}, {1,3,5,0,0,0,0,0}, {0,1,3,5,0,0,0,0}, {2,3,5,0,0,0,0,0}, {0,2,3,5,0,0,0,0}, {1,2,3,5,0,0,0,0}, {0,1,2,3,5,0,0,0},
    {4,5,0,0,0,0,0,0}, {0,4,5,0,0,0,0,0}, {1,4,5,0,0,0,0,0}, {0,1,4,5,0,0,0,0}, {2,4,5,0,0,0,0,0}, {0,2,4,5,0,0,0,0}, {1,2,4,5,0,0,0,0}, {0,1,2,4,5,0,0,0},
    {3,4,5,0,0,0,0,0}, {0,3,4,5,0,0,0,0}, {1,3,4,5,0,0,0,0}, {0,1,3,4,5,0,0,0}, {2,3,4,5,0,0,0,0}, {0,2,3,4,5,0,0,0}, {1,2,3,4,5,0,0,0}, {0,1,2,3,4,5,0,0},
    {6,0,0,0,0,0,0,0}, {0,6,0,0,0,0,0,0}, {1,6,0,0,0,0,0,0}, {0,1,6,0,0,0,0,0}, {2,6,0,0,0,0,0,0}, {0,2,6,0,0,0,0,0}, {1,2,6,0,0,0,0,0}, {0,1,2,6,0,0,0,0},
    {3,6,0,0,0,0,0,0}, {0,3,6,0,0,0,0,0}, {1,3,6,0,0,0,0,0}, {0,1,3,6,0,0,0,0}, {2,3,6,0,0,0,0,0}, {0,2,3,6,0,0,0,0}, {1,2,3,6,0,0,0,0}, {0,1,2,3,6,0,0,0},
    {4,6,0,0,0,0,0,0}, {0,4,6,0,0,0,0,0}, {1,4,6,0,0,0,0,0}, {0,1,4,6,0,0,0,0}, {2,4,6,0,0,0,0,0}, {0,2,4,6,0,0,0,0}, {1,2,4,6,0,0,0,0}, {0,1,2,4,6,0,0,0},
    {3,4,6,0,0,0,0,0}, {0,3,4,6,0,0,0,0}, {1,3,4,6,0,0,0,0}, {0,1,3,4,6,0,0,0}, {2,3,4,6,0,0,0,0}, {0,2,3,4,6,0,0,0}, {1,2,3,4,6,0,0,0}, {0,1,2,3,4,6,0,0},
    {5,6,0,0,0,0,0,0}, {0,5,6,0,0,0,0,0}, {1,5,6,0,0,0,0,0}, {0,1,5,6,0,0,0,0}, {2,5,6,0,0,0,0,0}, {0,2,5,6,0,0,0,0}, {1,2,5,6,0,0,0,0}, {0,1,2,5,6,0,0,0},
    {3,5,6,0,0,0,0,0}, {0,3,5,6,0,0,0,0}, {1,3,5,6,0,0,0,0}, {0,1,3,5,6,0,0,0}, {2,3,5,6,0,0,0,0}, {0,2,3,5,6,0,0,0}, {1,2,3,5,6,0,0,0}, {0,1,2,3,5,6,0,0},
    {4,5,6,0,0,0,0,0}, {0,4,5,6,0,0,0,0}, {1,4,5,6,0,0,0,0}, {0,1,4,5,6,0,0,0}, {2,4,5,6,0,0,0,0}, {0,2,4,5,6,0,0,0}, {1,2,4,5,6,0,0,0}, {0,1,2,4,5,6,0,0},
    {3,4,5,6,0,0,0,0}, {0,3,4,5,6,0,0,0}, {1,3,4,5,6,0,0,0}, {0,1,3,4,5,6,0,0}, {2,3,4,5,6,0,0,0}, {0,2,3,4,5,6,0,0}, {1,2,3,4,5,6,0,0}, {0,1,2,3,4,5,6,0},
    {7,0,0,0,0,0,0,0}, {0,7,0,0,0,0,0,0}, {1,7,0,0,0,0,0,0}, {0,1,7,0,0,0,0,0}, {2,7,0,0,0,0,0,0}, {0,2,7,0,0,0,0,0}, {1,2,7,0,0,0,0,0}, {0,1,2,7,0,0,0,0},
    {3,7,0,0,0,0,0,0}, {0,3,7,0,0,0,0,0}, {1,3,7,0,0,0,0,0}, {0,1,3,7,0,0,0,0}, {2,3,7,0,0,0,0,0}, {0,2,3,7,0,0,0,0}, {1,2,3,7,0,0,0,0}, {0,1,2,3,7,0,0,0},
    {4,7,0,0,0,0,0,0}, {0,4,7,0,0,0,0,0}, {1,4,7,0,0,0,0,0}, {0,1,4,7,0,0,0,0}, {2,4,7,0,0,0,0,0}, {0,2,4,7,0,0,0,0}, {1,2,4,7,0,0,0,0}, {0,1,2,4,7,0,0,0},
    {3,4,7,0,0,0,0,0}, {0,3,4,7,0,0,0,0}, {1,3,4,7,0,0,0,0}, {0,1,3,4,7,0,0,0}, {2,3,4,7,0,0,0,0}, {0,2,3,4,7,0,0,0}, {1,2,3,4,7,0,0,0}, {0,1,2,3,4,7,0,0},
    {5,7,0,0,0,0,0,0}, {0,5,7,0,0,0,0,0}, {1,5,7,0,0,0,0,0}, {0,1,5,7,0,0,0,0}, {2,5,7,0,0,0,0,0}, {0,2,5,7,0,0,0,0}, {1,2,5,7,0,0,0,0}, {0,1,2,5,7,0,0,0},
    {3,5,7,0,0,0,0,0}, {0,3,5,7,0,0,0,0}, {1,3,5,7,0,0,0,0}, {0,1,3,5,7,0,0,0}, {2,3,5,7,0,0,0,0}, {0,2,3,5,7,0,0,0}, {1,2,3,5,7,0,0,0}, {0,1,2,3,5,7,0,0},
    {4,5,7,0,0,0,0,0}, {0,4,5,7,0,0,0,0}, {1,4,5,7,0,0,0,0}, {0,1,4,5,7,0,0,0}, {2,4,5,7,0,0,0,0}, {0,2,4,5,7,0,0,0}, {1,2,4,5,7,0,0,0}, {0,1,2,4,5,7,0,0},
    {3,4,5,7,0,0,0,0}, {0,3,4,5,7,0,0,0}, {1,3,4,5,7,0,0,0}, {0,1,3,4,5,7,0,0}, {2,3,4,5,7,0,0,0}, {0,2,3,4,5,7,0,0}, {1,2,3,4,5,7,0,0}, {0,1,2,3,4,5,7,0},
    {6,7,0,0,0,0,0,0}, {0,6,7,0,0,0,0,0}, {1,6,7,0,0,0,0,0}, {0,1,6,7,0,0,0,0}, {2,6,7,0,0,0,0,0}, {0,2,6,7,0,0,0,0}, {1,2,6,7,0,0,0,0}, {0,1,2,6,7,0,0,0},
    {3,6,7,0,0,0,0,0}, {0,3,6,7,0,0,0,0}, {1,3,6,7,0,0,0,0}, {0,1,3,6,7,0,0,0}, {2,3,6,7,0,0,0,0}, {0,2,3,6,7,0,0,0}, {1,2,3,6,7,0,0,0}, {0,1,2,3,6,7,0,0},
    {4,6,7,0,0,0,0,0}, {0,4,6,7,0,0,0,0}, {1,4,6,7,0,0,0,0}, {0,1,4,6,7,0,0,0}, {2,4,6,7,0,0,0,0}, {0,2,4,6,7,0,0,0}, {1,2,4,6,7,0,0,0}, {0,1,2,4,6,7,0,0},
    {3,4,6,7,0,0,0,0}, {0,3,4,6,7,0,0,0}, {1,3,4,6,7,0,0,0}, {0,1,3,4,6,7,0,0}, {2,3,4,6,7,0,0,0}, {0,2,3,4,6,7,0,0}, {1,2,3,4,6,7,0,0}, {0,1,2,3,4,6,7,0},
    {5,6,7,0,0,0,0,0}, {0,5,6,7,0,0,0,0}, {1,5,6,7,0,0,0,0}, {0,1,5,6,7,0,0,0}, {2,5,6,7,0,0,0,0}, {0,2,5,6,7,0,0,0}, {1,2,5,6,7,0,0,0}, {0,1,2,5,6,7,0,0},
    {3,5,6,7,0,0,0,0}, {0,3,5,6,7,0,0,0}, {1,3,5,6,7,0,0,0}, {0,1,3,5,6,7,0,0}, {2,3,5,6,7,0,0,0}, {0,2,3,5,6,7,0,0}, {1,2,3,5,6,7,0,0}, {0,1,2,3,5,6,7,0},
    {4,5,6,7,0,0,0,0}, {0,4,5,6,7,0,0,0}, {1,4,5,6,7,0,0,0}, {0,1,4,5,6,7,0,0}, {2,4,5,6,7,0,0,0}, {0,2,4,5,6,7,0,0}, {1,2,4,5,6,7,0,0}, {0,1,2,4,5,6,7,0},
    {3,4,5,6,7,0,0,0}, {0,3,4,5,6,7,0,0}, {1,3,4,5,6,7,0,0}, {0,1,3,4,5,6,7,0}, {2,3,4,5,6,7,0,0}, {0,2,3,4,5,6,7,0}, {1,2,3,4,5,6,7,0}, {0,1,2,3,4,5,6,7},
};
#endif

#define KS(x) x##_portable
#define SP_AVX2 0
#include "gemm_body.h"
#include "winograd_body.h"
#include "conv1ch_body.h"
#include "sparse_body.h"
#undef KS

#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define KS(x) x##_avx2
#undef SP_AVX2
#define SP_AVX2 1
#include "gemm_body.h"
#include "winograd_body.h"
#include "conv1ch_body.h"
#include "sparse_body.h"
#undef KS
#pragma clang attribute pop

/* -1: not decided yet. Training lanes call the kernels from several threads, so the flag is read and
 * written atomically (every thread that decides decides the same). */
static int use_avx2 = -1;

int fedpi_kernels_avx2(void) {
    int v = __atomic_load_n(&use_avx2, __ATOMIC_RELAXED);
    if (v < 0) {
        v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        __atomic_store_n(&use_avx2, v, __ATOMIC_RELAXED);
    }
    return v;
}

void fedpi_kernels_prefer_portable(int portable) { __atomic_store_n(&use_avx2, portable ? 0 : -1, __ATOMIC_RELAXED); }
#define DISPATCH(name, args) do { if (fedpi_kernels_avx2()) name##_avx2 args; else name##_portable args; } while (0)
#else
int fedpi_kernels_avx2(void) { return 0; }
void fedpi_kernels_prefer_portable(int portable) { (void)portable; }
#define DISPATCH(name, args) name##_portable args
#endif

void fedpi_gemm(long m, long n, long k, float alpha, const float *a, long rsa, long csa,
                const float *b, long ldb, float beta, float *c, long ldc) {
    DISPATCH(gemm, (m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc));
}

void fedpi_gemm_portable(long m, long n, long k, float alpha, const float *a, long rsa, long csa,
                         const float *b, long ldb, float beta, float *c, long ldc) {
    gemm_portable(m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
}

void fedpi_winograd_input(const float *x, long n0, long n1, const fedpi_winograd_shape *s, const float *zeros, float *v) {
    DISPATCH(winograd_input, (x, n0, n1, s, zeros, v));
}

void fedpi_winograd_input_gradient(const float *dv, long n0, long n1, const fedpi_winograd_shape *s, float *dx) {
    DISPATCH(winograd_input_gradient, (dv, n0, n1, s, dx));
}

void fedpi_winograd_output(const float *m, long n0, long n1, const fedpi_winograd_shape *s, const float *bias, float *y) {
    DISPATCH(winograd_output, (m, n0, n1, s, bias, y));
}

void fedpi_winograd_output_gradient(const float *dy, long n0, long n1, const fedpi_winograd_shape *s, float *dm) {
    DISPATCH(winograd_output_gradient, (dy, n0, n1, s, dm));
}

void fedpi_conv1ch_forward(const float *x, long n, long h, long w, long ks, long oc, const float *wt, const float *bias, float *y) {
    DISPATCH(conv1ch_forward, (x, n, h, w, ks, oc, wt, bias, y));
}

void fedpi_conv1ch_gradient(const float *x, const float *dy, long n, long h, long w, long ks, long oc, float *dwt, float *db) {
    DISPATCH(conv1ch_gradient, (x, dy, n, h, w, ks, oc, dwt, db));
}

void fedpi_conv1ch_input_gradient(const float *dy, long n, long h, long w, long ks, long oc, const float *wt, float *dx) {
    long oh = h - ks + 1, ow = w - ks + 1;
    memset(dx, 0, (size_t)(n * h * w) * sizeof(float));
    for (long b = 0; b < n; b++)
        for (long oy = 0; oy < oh; oy++)
            for (long ox = 0; ox < ow; ox++) {
                const float *g = dy + ((b * oh + oy) * ow + ox) * oc;
                for (long ky = 0; ky < ks; ky++)
                    for (long kx = 0; kx < ks; kx++) {
                        const float *wk = wt + (ky * ks + kx) * oc;
                        float s = 0;
                        for (long o = 0; o < oc; o++) s += g[o] * wk[o];
                        dx[(b * h + oy + ky) * w + ox + kx] += s;
                    }
            }
}

/* G·g for one 3-vector: G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1⁄24 1⁄12 ⅙; 1⁄24 −1⁄12 ⅙; 0 0 1] */
static void filter_column(float g0, float g1, float g2, float *o) {
    float even = g0 + g2, p = g0 * (1.0f / 24) + g2 * (1.0f / 6), q = g1 * (1.0f / 12);
    o[0] = g0 * 0.25f;
    o[1] = (even + g1) * (-1.0f / 6);
    o[2] = (even - g1) * (-1.0f / 6);
    o[3] = p + q;
    o[4] = p - q;
    o[5] = g2;
}

void fedpi_winograd_filters(const float *w, long oc, long c, float *u) {
    for (long o = 0; o < oc; o++) {
        for (long ci = 0; ci < c; ci++) {
            const float *g = w + (o * c + ci) * 9;
            float gg[6][3], full[6][6];
            for (int j = 0; j < 3; j++) {  /* G g: transform each column of the 3×3 kernel */
                float col[6];
                filter_column(g[j], g[3 + j], g[6 + j], col);
                for (int i = 0; i < 6; i++) gg[i][j] = col[i];
            }
            for (int i = 0; i < 6; i++) filter_column(gg[i][0], gg[i][1], gg[i][2], full[i]);  /* (G g) Gᵀ */
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++) u[((i * 6 + j) * c + ci) * oc + o] = full[i][j];
        }
    }
}

/* Gᵀ·u for one 6-vector (the adjoint of filter_column) */
static void filter_gradient_column(const float *u, float *o) {
    o[0] = u[0] / 4 - (u[1] + u[2]) / 6 + (u[3] + u[4]) / 24;
    o[1] = (u[2] - u[1]) / 6 + (u[3] - u[4]) / 12;
    o[2] = (u[3] + u[4] - u[1] - u[2]) / 6 + u[5];
}

void fedpi_winograd_add_filter_gradient(const float *du, long c, long oc, float *gw) {
    for (long o = 0; o < oc; o++) {
        for (long ci = 0; ci < c; ci++) {
            float t[3][6];
            for (int j = 0; j < 6; j++) {  /* Gᵀ dU: each column of the 6×6 gradient */
                float col[6], r[3];
                for (int i = 0; i < 6; i++) col[i] = du[((i * 6 + j) * oc + o) * c + ci];
                filter_gradient_column(col, r);
                for (int i = 0; i < 3; i++) t[i][j] = r[i];
            }
            float *k = gw + (o * c + ci) * 9;
            for (int i = 0; i < 3; i++) {  /* (Gᵀ dU) G */
                float r[3];
                filter_gradient_column(t[i], r);
                for (int j = 0; j < 3; j++) k[i * 3 + j] += r[j];
            }
        }
    }
}

size_t fedpi_conv_sparse_scratch_bytes(const fedpi_conv_shape *s) {
    long perSample = s->oh * s->ow;
    return (size_t)(4 * perSample * s->oc + 16 + perSample + 2 * s->oc) * 4;
}

long fedpi_conv_sparse_backward(const float *x, const float *dy, const fedpi_conv_shape *s, const float *wp,
                                float *dwp, float *dx, long max_nonzeros, void *scratch) {
#if defined(__x86_64__)
    if (fedpi_kernels_avx2()) return conv_sparse_backward_avx2(x, dy, s, wp, dwp, dx, max_nonzeros, scratch);
#endif
    return conv_sparse_backward_portable(x, dy, s, wp, dwp, dx, max_nonzeros, scratch);
}

size_t fedpi_sparse_gemm_scratch_bytes(long m, long k) { return (size_t)(2 * m * k + m) * 4; }

void fedpi_sparse_gemm(long m, long n, long k, const float *a, long rsa, long csa, const float *b, long ldb,
                       float beta, float *c, long ldc, void *scratch) {
    DISPATCH(sparse_gemm, (m, n, k, a, rsa, csa, b, ldb, beta, c, ldc, scratch));
}
