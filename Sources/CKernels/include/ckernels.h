#ifndef FEDPI_CKERNELS_H
#define FEDPI_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// C (m×n, row stride ldc) = alpha · A·B + beta · C, with a(i,p) = a[i·rsa + p·csa] (so A may be stored
/// transposed) and B row-major k×n with row stride ldb. No packing: meant for the small products of
/// the Winograd convolution, where B fits in L1/L2. beta == 0 never reads C.
void fedpi_gemm(long m, long n, long k, float alpha, const float *a, long rsa, long csa,
                const float *b, long ldb, float beta, float *c, long ldc);
/// The same with the portable kernel only (the fallback, and what tests compare the fast path with).
void fedpi_gemm_portable(long m, long n, long k, float alpha, const float *a, long rsa, long csa,
                         const float *b, long ldb, float beta, float *c, long ldc);

/// Max pooling, square window `size`, stride `size`, floor mode, NHWC. y is (n, h/size, w/size, c);
/// argmax[i] is the window position (row-major, 0..size²−1) of y[i]'s first maximum.
void fedpi_maxpool_forward(const float *x, long n, long h, long w, long c, long size, float *y, uint8_t *argmax);
/// dx (n, h, w, c) = dy routed to each window's argmax, 0 elsewhere (including floor-mode leftovers).
/// dx may be the forward input itself.
void fedpi_maxpool_backward(const float *dy, const uint8_t *argmax, long n, long h, long w, long c, long size, float *dx);

/// 1 when the AVX2+FMA kernels are in use on this CPU (always 0 off x86-64; arm64 runs the portable
/// kernels, which the compiler maps to NEON).
int fedpi_kernels_avx2(void);

#endif
