#ifndef FEDPI_CKERNELS_H
#define FEDPI_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// C (m×n, row stride ldc) = alpha · A·B + beta · C, with a(i,p) = a[i·rsa + p·csa] (so A may be stored
/// transposed) and B row-major k×n with row stride ldb. No packing: meant for the small products of
/// the Winograd convolution, where B fits in L1/L2. beta == 0 never reads C. Register tile 6×16.
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

/// Geometry of a 3×3 convolution by Winograd F(4×4, 3×3): input (h, w, inputs) NHWC with `pad` zero
/// pixels on each side, output (oh, ow, outputs). Each sample has ceil(oh/4)·ceil(ow/4) tiles; tile
/// data is laid out [ξ][tile][channel] for the 36 positions ξ of a 6×6 tile, so each position is one
/// GEMM: M_ξ (tiles × outputs) = V_ξ (tiles × inputs) · U_ξ (inputs × outputs).
typedef struct { long h, w, inputs, outputs, pad, oh, ow; } fedpi_winograd_shape;

/// U[ξ][in][out] = G·g·Gᵀ for every filter of a PyTorch (oc, c, 3, 3) weight.
void fedpi_winograd_filters(const float *w, long oc, long c, float *u);
/// V[ξ][tile][in] = Bᵀ·d·B for the tiles of samples n0..<n1 of x (n, h, w, inputs); `zeros` holds at
/// least `inputs` zeros and stands in for pixels outside the image.
void fedpi_winograd_input(const float *x, long n0, long n1, const fedpi_winograd_shape *s, const float *zeros, float *v);
/// The adjoint of fedpi_winograd_input: adds B·dV·Bᵀ of each tile of dV[ξ][tile][in] to the pixels of
/// dx (samples n0..<n1 of (n, h, w, inputs)) that tile was read from; overlapping tiles add up, and
/// pixels outside the image are dropped. dx must be zeroed (or hold a sum to add to) beforehand.
void fedpi_winograd_input_gradient(const float *dv, long n0, long n1, const fedpi_winograd_shape *s, float *dx);
/// y (samples n0..<n1 of (n, oh, ow, outputs)) = Aᵀ·M·A + bias (bias may be NULL); cut-off tile
/// pixels past oh/ow are not written.
void fedpi_winograd_output(const float *m, long n0, long n1, const fedpi_winograd_shape *s, const float *bias, float *y);
/// dM[ξ][tile][out] = A·e·Aᵀ for each 4×4 tile e of dy (samples n0..<n1 of (n, oh, ow, outputs)),
/// zeros past oh/ow: the output side of the filter gradient.
void fedpi_winograd_output_gradient(const float *dy, long n0, long n1, const fedpi_winograd_shape *s, float *dm);
/// gw (oc, c, 3, 3) += Gᵀ·dU·G, with dU laid out [ξ][out][in] (36 × oc × c).
void fedpi_winograd_add_filter_gradient(const float *du, long c, long oc, float *gw);

/// Geometry of a stride-1 convolution: input (n, h, w, c) NHWC with `pad` zero pixels on each side, a
/// ks×ks kernel, output (n, oh, ow, oc).
typedef struct { long n, h, w, c, oh, ow, oc, ks, pad; } fedpi_conv_shape;
/// Bytes of scratch `fedpi_conv_sparse_backward` needs (about 16·oh·ow·oc).
size_t fedpi_conv_sparse_scratch_bytes(const fedpi_conv_shape *s);
/// The backward pass over the nonzeros of dy (n, oh, ow, oc) alone: dwp (oc, ks, ks, c) += Σ dy·x-patch,
/// and, when dx is not NULL, dx (n, h, w, c) = Σ dy·wp (overwritten), wp the weight packed (oc, ks, ks,
/// c); the bias gradient is left to the caller. Returns the number of nonzeros, or -1 without
/// changing dwp or dx when there are more than `max_nonzeros`. n·h·w·c must be below 2³¹.
long fedpi_conv_sparse_backward(const float *x, const float *dy, const fedpi_conv_shape *s, const float *wp,
                                float *dwp, float *dx, long max_nonzeros, void *scratch);

/// Bytes of scratch `fedpi_sparse_gemm` needs for an m × k op(A).
size_t fedpi_sparse_gemm_scratch_bytes(long m, long k);
/// C (m × n) = op(A)·B + beta·C (beta 0 or 1; with 0, C is not read), op(A)'s element (i, p) at
/// a[i·rsa + p·csa], B row-major with row stride ldb. Only A's nonzeros cost anything: for A that is
/// mostly zeros, such as the output gradient of a layer followed by ReLU and dropout.
void fedpi_sparse_gemm(long m, long n, long k, const float *a, long rsa, long csa, const float *b, long ldb,
                       float beta, float *c, long ldc, void *scratch);

/// Valid ks×ks convolution (stride 1) of one-channel images, computed directly: x is (n, h, w), y is
/// (n, h−ks+1, w−ks+1, oc), wt is tap-major (ks·ks × oc, wt[ky·ks+kx][o], the transpose of PyTorch's
/// (oc, 1, ks, ks)). ks ≤ 7.
void fedpi_conv1ch_forward(const float *x, long n, long h, long w, long ks, long oc, const float *wt, const float *bias, float *y);
/// Its weight and bias gradients, added: dwt (ks·ks × oc) += Σ x·dy, db (oc) += Σ dy.
void fedpi_conv1ch_gradient(const float *x, const float *dy, long n, long h, long w, long ks, long oc, float *dwt, float *db);
/// Its input gradient: dx (n, h, w) = the adjoint applied to dy (overwritten, not added).
void fedpi_conv1ch_input_gradient(const float *dy, long n, long h, long w, long ks, long oc, const float *wt, float *dx);

/// ReLU's backward pass in place: dy[i] = y[i] > 0 ? dy[i] : 0 (y is the forward output).
void fedpi_relu_backward(const float *y, float *dy, long n);

/// Inverted dropout, y[i] = x[i]·scale or 0 (x may be y), drawing from the xoshiro256** `state` exactly as
/// the engine's SeededGenerator does and advancing it: `bits`-wide fields of each 64-bit draw, lowest
/// first (bits 8 or 16), an element kept when its field is below `threshold`.
void fedpi_dropout(const float *x, float *y, long n, uint64_t state[4], int bits, uint64_t threshold, float scale);

/// How many of x[0..n) are not zero (NaN counts as not zero).
long fedpi_nonzeros(const float *x, long n);

/// dst (cols × rows) = the transpose of src (rows × cols), both row-major; they must not overlap.
void fedpi_transpose(const float *src, long rows, long cols, float *dst);

/// 1 when the AVX2+FMA kernels are in use on this CPU (always 0 off x86-64; arm64 runs the portable
/// kernels, which the compiler maps to NEON).
int fedpi_kernels_avx2(void);
/// 1: use the portable kernels from now on even where AVX2 exists (tests run both paths this way);
/// 0: back to choosing by CPU. Not for use while kernels run on other threads.
void fedpi_kernels_prefer_portable(int portable);

#endif
