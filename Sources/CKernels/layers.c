#include "ckernels.h"
#include <string.h>

/* The layer kernels that are not products: max pooling and ReLU backward. Portable C; the selects
 * are bit masks (SSE on x86, NEON on arm64), eight floats at a time, with a scalar loop for the rest.
 *
 * Max pooling over NHWC tensors: each output pixel folds its window's positions in order, eight
 * channels at a time; strict ">" keeps the first maximum, as PyTorch does. */

typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef int v8i __attribute__((vector_size(32), aligned(4)));
typedef unsigned char b8 __attribute__((vector_size(8), aligned(1)));

void fedpi_maxpool_forward(const float *x, long n, long h, long w, long c, long size, float *y, uint8_t *argmax) {
    long oh = h / size, ow = w / size, cv = c - c % 8;
    for (long b = 0; b < n; b++) {
        for (long i = 0; i < oh; i++) {
            for (long j = 0; j < ow; j++) {
                const float *base = x + ((b * h + i * size) * w + j * size) * c;
                long o = ((b * oh + i) * ow + j) * c;
                for (long ch = 0; ch < cv; ch += 8) {
                    v8 best = *(const v8 *)(base + ch);
                    v8i code = {0};
                    for (long pos = 1; pos < size * size; pos++) {
                        v8 v = *(const v8 *)(base + ((pos / size) * w + pos % size) * c + ch);
                        v8i better = v > best;
                        best = (v8)(((v8i)v & better) | ((v8i)best & ~better));
                        code = (code & ~better) | ((v8i){0} + (int)pos & better);
                    }
                    *(v8 *)(y + o + ch) = best;
                    *(b8 *)(argmax + o + ch) = __builtin_convertvector(code, b8);
                }
                for (long ch = cv; ch < c; ch++) {
                    float best = base[ch];
                    uint8_t code = 0;
                    for (long pos = 1; pos < size * size; pos++) {
                        float v = base[((pos / size) * w + pos % size) * c + ch];
                        if (v > best) { best = v; code = (uint8_t)pos; }
                    }
                    y[o + ch] = best;
                    argmax[o + ch] = code;
                }
            }
        }
    }
}

void fedpi_maxpool_backward(const float *dy, const uint8_t *argmax, long n, long h, long w, long c, long size, float *dx) {
    long oh = h / size, ow = w / size, cv = c - c % 8;
    for (long b = 0; b < n; b++) {
        float *image = dx + b * h * w * c;
        for (long i = 0; i < oh; i++) {
            for (long j = 0; j < ow; j++) {
                float *base = image + (i * size * w + j * size) * c;
                long o = ((b * oh + i) * ow + j) * c;
                for (long ch = 0; ch < cv; ch += 8) {
                    v8i code = __builtin_convertvector(*(const b8 *)(argmax + o + ch), v8i);
                    v8i g = (v8i)(*(const v8 *)(dy + o + ch));
                    for (long pos = 0; pos < size * size; pos++) {
                        v8i hit = code == ((v8i){0} + (int)pos);
                        *(v8 *)(base + ((pos / size) * w + pos % size) * c + ch) = (v8)(g & hit);
                    }
                }
                for (long ch = cv; ch < c; ch++) {
                    for (long pos = 0; pos < size * size; pos++)
                        base[((pos / size) * w + pos % size) * c + ch] = argmax[o + ch] == pos ? dy[o + ch] : 0.0f;
                }
            }
        }
        /* floor mode leaves the last rows/columns outside every window: their gradient is zero */
        for (long i = 0; i < h; i++) {
            for (long j = (i < oh * size ? ow * size : 0); j < w; j++) memset(image + (i * w + j) * c, 0, (size_t)c * sizeof(float));
        }
    }
}

/* ReLU backward in place: dy[i] = y[i] > 0 ? dy[i] : 0, eight at a time with a bit mask (the Swift loop
 * over two pointers that might alias was not vectorised: 6% of a training step). */
void fedpi_relu_backward(const float *y, float *dy, long n) {
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8i keep = *(const v8 *)(y + i) > (v8){0};
        *(v8 *)(dy + i) = (v8)((v8i)(*(const v8 *)(dy + i)) & keep);
    }
    for (; i < n; i++) dy[i] = y[i] > 0 ? dy[i] : 0.0f;
}

/* Inverted dropout with the engine's xoshiro256** stream (SeededGenerator), so masks are the same as
 * the Swift loop drew them: each 64-bit draw gives 64/bits fields, lowest first; an element is kept
 * (and scaled) when its field is below `threshold`. Eight-bit fields go eight at a time through a
 * byte-to-lane compare; sixteen-bit fields one at a time. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "dropout reads a draw's bytes in memory order");

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t xoshiro_next(uint64_t *s) {
    uint64_t result = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

void fedpi_dropout(const float *x, float *y, long n, uint64_t state[4], int bits, uint64_t threshold, float scale) {
    uint64_t s[4] = {state[0], state[1], state[2], state[3]};
    long i = 0;
    if (bits == 8) {
        v8i limit = {0};
        limit += (int)threshold;
        v8 sv = {scale, scale, scale, scale, scale, scale, scale, scale};
        for (; i + 8 <= n; i += 8) {
            uint64_t draw = xoshiro_next(s);
            b8 bytes;
            memcpy(&bytes, &draw, 8);  /* little-endian: byte j is bits 8j..8j+7, the order the fields are used in */
            v8i keep = __builtin_convertvector(bytes, v8i) < limit;
            *(v8 *)(y + i) = (v8)((v8i)(*(const v8 *)(x + i) * sv) & keep);
        }
    }
    uint64_t mask = bits >= 64 ? ~0ull : (1ull << bits) - 1;
    while (i < n) {
        uint64_t draw = xoshiro_next(s);
        for (int f = 0; f < 64 / bits && i < n; f++, i++) {
            y[i] = (draw & mask) < threshold ? x[i] * scale : 0.0f;
            draw >>= bits;
        }
    }
    memcpy(state, s, sizeof s);
}

/* dst (cols × rows) = srcᵀ, in 4×4 blocks of vector shuffles (SSE on x86, NEON on arm64); the edges
 * that do not fill a block go one float at a time. */
typedef float v4 __attribute__((vector_size(16), aligned(4)));

void fedpi_transpose(const float *src, long rows, long cols, float *dst) {
    long rv = rows - rows % 4, cv = cols - cols % 4;
    for (long r = 0; r < rv; r += 4) {
        for (long c = 0; c < cv; c += 4) {
            v4 a = *(const v4 *)(src + r * cols + c), b = *(const v4 *)(src + (r + 1) * cols + c);
            v4 e = *(const v4 *)(src + (r + 2) * cols + c), f = *(const v4 *)(src + (r + 3) * cols + c);
            v4 ab0 = __builtin_shufflevector(a, b, 0, 4, 1, 5), ab1 = __builtin_shufflevector(a, b, 2, 6, 3, 7);
            v4 ef0 = __builtin_shufflevector(e, f, 0, 4, 1, 5), ef1 = __builtin_shufflevector(e, f, 2, 6, 3, 7);
            *(v4 *)(dst + c * rows + r) = __builtin_shufflevector(ab0, ef0, 0, 1, 4, 5);
            *(v4 *)(dst + (c + 1) * rows + r) = __builtin_shufflevector(ab0, ef0, 2, 3, 6, 7);
            *(v4 *)(dst + (c + 2) * rows + r) = __builtin_shufflevector(ab1, ef1, 0, 1, 4, 5);
            *(v4 *)(dst + (c + 3) * rows + r) = __builtin_shufflevector(ab1, ef1, 2, 3, 6, 7);
        }
        for (long c = cv; c < cols; c++)
            for (long i = r; i < r + 4; i++) dst[c * rows + i] = src[i * cols + c];
    }
    for (long r = rv; r < rows; r++)
        for (long c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c];
}

long fedpi_nonzeros(const float *x, long n) {
    long count = 0, i = 0;
    for (; i + 8 <= n; i += 8) count -= __builtin_reduce_add((v8i)(*(const v8 *)(x + i) != (v8){0}));
    for (; i < n; i++) count += x[i] != 0;
    return count;
}
