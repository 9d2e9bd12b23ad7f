#include "chalf.h"
#include <string.h>

static inline uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline uint16_t to_half(float f) {
    uint32_t x = bits_of(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t abs = x & 0x7FFFFFFFu;
    if (abs >= 0x7F800000u) {                         /* inf or NaN */
        return (uint16_t)(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u | ((abs >> 13) & 0x3FFu) : 0));
    }
    if (abs >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);   /* rounds to >= 65520: inf */
    if (abs < 0x38800000u) {                          /* half subnormal or zero */
        /* add 0.5 (as float) so the FPU does round-to-nearest-even at the subnormal step */
        float m = float_of(abs) + 0.5f;
        return (uint16_t)(sign | (bits_of(m) - 0x3F000000u));
    }
    uint32_t mant_odd = (abs >> 13) & 1u;
    abs += 0xC8000FFFu + mant_odd;                    /* rebias exponent (-112 << 23) and round */
    return (uint16_t)(sign | (abs >> 13));
}

static inline float to_float(uint16_t h) {
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    if (exp == 0x1F) return float_of(sign | 0x7F800000u | (mant << 13));
    if (exp == 0) {                                   /* zero or subnormal: mant * 2^-24 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return float_of(sign | bits_of(v));
    }
    return float_of(sign | ((exp + 112) << 23) | (mant << 13));
}

void fedpi_f32_to_f16_portable(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = to_half(src[i]);
}

void fedpi_f16_to_f32_portable(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = to_float(src[i]);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx,f16c")))
static void f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    fedpi_f32_to_f16_portable(src + i, dst + i, n - i);
}

__attribute__((target("avx,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    }
    fedpi_f16_to_f32_portable(src + i, dst + i, n - i);
}

int fedpi_f16_hardware(void) { return __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx"); }

void fedpi_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    if (fedpi_f16_hardware()) f32_to_f16_f16c(src, dst, n); else fedpi_f32_to_f16_portable(src, dst, n);
}
void fedpi_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (fedpi_f16_hardware()) f16_to_f32_f16c(src, dst, n); else fedpi_f16_to_f32_portable(src, dst, n);
}

#elif defined(__aarch64__)
/* fp16 conversion is baseline on arm64 (the Pi); the compiler vectorises these loops with fcvtn/fcvtl. */
int fedpi_f16_hardware(void) { return 1; }
void fedpi_f32_to_f16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) { __fp16 h = (__fp16)src[i]; memcpy(dst + i, &h, 2); }
}
void fedpi_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) { __fp16 h; memcpy(&h, src + i, 2); dst[i] = (float)h; }
}

#else
int fedpi_f16_hardware(void) { return 0; }
void fedpi_f32_to_f16(const float *src, uint16_t *dst, size_t n) { fedpi_f32_to_f16_portable(src, dst, n); }
void fedpi_f16_to_f32(const uint16_t *src, float *dst, size_t n) { fedpi_f16_to_f32_portable(src, dst, n); }
#endif
