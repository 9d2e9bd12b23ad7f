/* Winograd F(4×4, 3×3) tile transforms (Lavin & Gray 2015, points 0, ±1, ±2, ∞), included twice by
 * kernels.c: once under target("avx2,fma"), once portable. KS(name) gives the variant's name.
 * Eight channels at a time (NHWC: channels are contiguous); the last c % 8 channels go one at a time
 * through the same code with the value in lane 0. Arrays of tile data are [ξ][tile][channel], ξ = the
 * 36 positions of a 6×6 tile, with `stride` floats between positions. */

#ifndef WG_FOR_EACH_OUTPUT_TILE
/* 4×4 output tiles per sample */
#define WG_TILES(s) ((((s)->oh + 3) / 4) * (((s)->ow + 3) / 4))
/* Runs the block for every 4×4 output tile of samples n0..<n1 in tile order, with `tile` (its index in
 * the chunk), `n`, `oy`, `ox` (its sample and top-left output pixel), `pixel` (that pixel's float offset
 * in (n, oh, ow, outputs)) and `rows`, `cols` (how many of its 4×4 pixels exist: oh and ow need not be
 * multiples of 4). */
#define WG_FOR_EACH_OUTPUT_TILE(s, n0, n1, ...) do { \
    long tile = 0; \
    for (long n = (n0); n < (n1); n++) \
        for (long oy = 0; oy < (s)->oh; oy += 4) \
            for (long ox = 0; ox < (s)->ow; ox += 4, tile++) { \
                long rows = (s)->oh - oy < 4 ? (s)->oh - oy : 4; \
                long cols = (s)->ow - ox < 4 ? (s)->ow - ox : 4; \
                long pixel = ((n * (s)->oh + oy) * (s)->ow + ox) * (s)->outputs; \
                (void)rows; (void)cols; (void)pixel; \
                __VA_ARGS__ \
            } \
    } while (0)
#endif

static inline __attribute__((always_inline)) v8 KS(load)(const float *p, int full) {
    if (full) return *(const v8u *)p;
    float s = *p;
    return (v8){s, s, s, s, s, s, s, s};
}

static inline __attribute__((always_inline)) void KS(store)(float *p, v8 x, int full) {
    if (full) *(v8u *)p = x; else *p = x[0];
}

/* Bᵀ·d for one 6-vector: Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1] */
#define WG_BT(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5) do { \
    v8 a_ = d4 - 4.0f * d2, b_ = d3 - 4.0f * d1, e_ = d4 - d2, f_ = 2.0f * (d3 - d1); \
    o0 = 4.0f * (d0 - d2) + e_; o1 = a_ + b_; o2 = a_ - b_; o3 = e_ + f_; o4 = e_ - f_; \
    o5 = 4.0f * (d1 - d3) + (d5 - d3); } while (0)

/* B·o for one 6-vector (the adjoint of Bᵀ): columns of Bᵀ above, read as rows */
#define WG_B(o0, o1, o2, o3, o4, o5, d0, d1, d2, d3, d4, d5) do { \
    v8 p_ = o1 + o2, q_ = o1 - o2, s_ = o3 + o4, t_ = o3 - o4; \
    d0 = 4.0f * o0; d1 = 4.0f * (o5 - q_) - 2.0f * t_; d2 = -5.0f * o0 - 4.0f * p_ - s_; \
    d3 = q_ + 2.0f * t_ - 5.0f * o5; d4 = o0 + p_ + s_; d5 = o5; } while (0)

/* Aᵀ·m for one 6-vector: Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1] */
#define WG_AT(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3) do { \
    v8 s12_ = m1 + m2, d12_ = m1 - m2, s34_ = m3 + m4, d34_ = m3 - m4; \
    o0 = m0 + s12_ + s34_; o1 = d12_ + 2.0f * d34_; o2 = s12_ + 4.0f * s34_; o3 = d12_ + 8.0f * d34_ + m5; } while (0)

/* A·e for one 4-vector (the adjoint of Aᵀ): rows of A are (1 0 0 0), (1 1 1 1), (1 −1 1 −1), (1 2 4 8), (1 −2 4 −8), (0 0 0 1) */
#define WG_A(e0, e1, e2, e3, o0, o1, o2, o3, o4, o5) do { \
    v8 p_ = e0 + e2, q_ = e1 + e3, r_ = e0 + 4.0f * e2, s_ = 2.0f * (e1 + 4.0f * e3); \
    o0 = e0; o1 = p_ + q_; o2 = p_ - q_; o3 = r_ + s_; o4 = r_ - s_; o5 = e3; } while (0)

static inline __attribute__((always_inline)) void KS(input_tile)(const float *const *src, long ch, float *out, long stride, int full) {
    v8 r[6][6];
    for (int i = 0; i < 6; i++) {
        const float *const *row = src + 6 * i;
        v8 d0 = KS(load)(row[0] + ch, full), d1 = KS(load)(row[1] + ch, full), d2 = KS(load)(row[2] + ch, full);
        v8 d3 = KS(load)(row[3] + ch, full), d4 = KS(load)(row[4] + ch, full), d5 = KS(load)(row[5] + ch, full);
        WG_BT(d0, d1, d2, d3, d4, d5, r[i][0], r[i][1], r[i][2], r[i][3], r[i][4], r[i][5]);
    }
    for (int l = 0; l < 6; l++) {
        v8 o[6];
        WG_BT(r[0][l], r[1][l], r[2][l], r[3][l], r[4][l], r[5][l], o[0], o[1], o[2], o[3], o[4], o[5]);
        for (int k = 0; k < 6; k++) KS(store)(out + (k * 6 + l) * stride, o[k], full);
    }
}

static void KS(winograd_input)(const float *x, long n0, long n1, const fedpi_winograd_shape *s, const float *zeros, float *v) {
    long c = s->inputs, stride = (n1 - n0) * WG_TILES(s) * c, cv = c - c % 8;
    const float *src[36];
    WG_FOR_EACH_OUTPUT_TILE(s, n0, n1, {
        const float *image = x + n * s->h * s->w * c;
        long y0 = oy - s->pad, x0 = ox - s->pad;
        for (long i = 0; i < 6; i++) {
            for (long j = 0; j < 6; j++) {
                long yy = y0 + i, xx = x0 + j;
                src[i * 6 + j] = yy >= 0 && yy < s->h && xx >= 0 && xx < s->w ? image + (yy * s->w + xx) * c : zeros;
            }
        }
        float *out = v + tile * c;
        long ch = 0;
        for (; ch < cv; ch += 8) KS(input_tile)(src, ch, out + ch, stride, 1);
        for (; ch < c; ch++) KS(input_tile)(src, ch, out + ch, stride, 0);
    });
}

/* The adjoint of input_tile: adds B·dv·Bᵀ (6×6 positions of dv, `stride` apart) to the 36 pixels at
 * dst[i·6+j] + ch; a null pointer is a pixel outside the image, whose gradient is dropped. */
static inline __attribute__((always_inline)) void KS(input_gradient_tile)(const float *dv, long stride, float *const *dst, long ch, int full) {
    v8 r[6][6];
    for (int l = 0; l < 6; l++) {
        const float *p = dv + l * stride;
        v8 o0 = KS(load)(p, full), o1 = KS(load)(p + 6 * stride, full), o2 = KS(load)(p + 12 * stride, full);
        v8 o3 = KS(load)(p + 18 * stride, full), o4 = KS(load)(p + 24 * stride, full), o5 = KS(load)(p + 30 * stride, full);
        WG_B(o0, o1, o2, o3, o4, o5, r[0][l], r[1][l], r[2][l], r[3][l], r[4][l], r[5][l]);
    }
    for (int i = 0; i < 6; i++) {
        v8 d[6];
        WG_B(r[i][0], r[i][1], r[i][2], r[i][3], r[i][4], r[i][5], d[0], d[1], d[2], d[3], d[4], d[5]);
        for (int j = 0; j < 6; j++) {
            float *q = dst[i * 6 + j];
            if (q) KS(store)(q + ch, KS(load)(q + ch, full) + d[j], full);
        }
    }
}

static void KS(winograd_input_gradient)(const float *dv, long n0, long n1, const fedpi_winograd_shape *s, float *dx) {
    long c = s->inputs, stride = (n1 - n0) * WG_TILES(s) * c, cv = c - c % 8;
    float *dst[36];
    WG_FOR_EACH_OUTPUT_TILE(s, n0, n1, {
        float *image = dx + n * s->h * s->w * c;
        long y0 = oy - s->pad, x0 = ox - s->pad;
        for (long i = 0; i < 6; i++) {
            for (long j = 0; j < 6; j++) {
                long yy = y0 + i, xx = x0 + j;
                dst[i * 6 + j] = yy >= 0 && yy < s->h && xx >= 0 && xx < s->w ? image + (yy * s->w + xx) * c : 0;
            }
        }
        const float *src = dv + tile * c;
        long ch = 0;
        for (; ch < cv; ch += 8) KS(input_gradient_tile)(src + ch, stride, dst, ch, 1);
        for (; ch < c; ch++) KS(input_gradient_tile)(src + ch, stride, dst, ch, 0);
    });
}

/* y (4×4 pixels from `y`, `rowStride`/`colStride` floats apart; only the first rows×cols exist) = Aᵀ m A + bias */
static inline __attribute__((always_inline)) void KS(output_tile)(const float *m, long stride, const float *bias, float *y,
                                                                  long rowStride, long colStride, long rows, long cols, int full) {
    v8 r[6][4];
    for (int i = 0; i < 6; i++) {
        const float *p = m + i * 6 * stride;
        v8 m0 = KS(load)(p, full), m1 = KS(load)(p + stride, full), m2 = KS(load)(p + 2 * stride, full);
        v8 m3 = KS(load)(p + 3 * stride, full), m4 = KS(load)(p + 4 * stride, full), m5 = KS(load)(p + 5 * stride, full);
        WG_AT(m0, m1, m2, m3, m4, m5, r[i][0], r[i][1], r[i][2], r[i][3]);
    }
    v8 b = bias ? KS(load)(bias, full) : (v8){0};
    for (int j = 0; j < 4 && j < cols; j++) {
        v8 o[4];
        WG_AT(r[0][j], r[1][j], r[2][j], r[3][j], r[4][j], r[5][j], o[0], o[1], o[2], o[3]);
        for (int k = 0; k < 4 && k < rows; k++) KS(store)(y + k * rowStride + j * colStride, o[k] + b, full);
    }
}

static void KS(winograd_output)(const float *m, long n0, long n1, const fedpi_winograd_shape *s, const float *bias, float *y) {
    long oc = s->outputs, stride = (n1 - n0) * WG_TILES(s) * oc, cv = oc - oc % 8;
    WG_FOR_EACH_OUTPUT_TILE(s, n0, n1, {
        const float *src = m + tile * oc;
        long o = 0;
        for (; o < cv; o += 8)
            KS(output_tile)(src + o, stride, bias ? bias + o : 0, y + pixel + o, s->ow * oc, oc, rows, cols, 1);
        for (; o < oc; o++)
            KS(output_tile)(src + o, stride, bias ? bias + o : 0, y + pixel + o, s->ow * oc, oc, rows, cols, 0);
    });
}

/* dm (6×6 positions) = A e Aᵀ for the 4×4 output-gradient tile e at `dy` (zeros past rows×cols) */
static inline __attribute__((always_inline)) void KS(output_gradient_tile)(const float *dy, long rowStride, long colStride,
                                                                           long rows, long cols, float *dm, long stride, int full) {
    v8 r[4][6];
    for (int i = 0; i < 4; i++) {
        v8 e[4];
        for (int j = 0; j < 4; j++) e[j] = i < rows && j < cols ? KS(load)(dy + i * rowStride + j * colStride, full) : (v8){0};
        WG_A(e[0], e[1], e[2], e[3], r[i][0], r[i][1], r[i][2], r[i][3], r[i][4], r[i][5]);
    }
    for (int l = 0; l < 6; l++) {
        v8 o[6];
        WG_A(r[0][l], r[1][l], r[2][l], r[3][l], o[0], o[1], o[2], o[3], o[4], o[5]);
        for (int k = 0; k < 6; k++) KS(store)(dm + (k * 6 + l) * stride, o[k], full);
    }
}

static void KS(winograd_output_gradient)(const float *dy, long n0, long n1, const fedpi_winograd_shape *s, float *dm) {
    long oc = s->outputs, stride = (n1 - n0) * WG_TILES(s) * oc, cv = oc - oc % 8;
    WG_FOR_EACH_OUTPUT_TILE(s, n0, n1, {
        float *out = dm + tile * oc;
        long o = 0;
        for (; o < cv; o += 8) KS(output_gradient_tile)(dy + pixel + o, s->ow * oc, oc, rows, cols, out + o, stride, 1);
        for (; o < oc; o++) KS(output_gradient_tile)(dy + pixel + o, s->ow * oc, oc, rows, cols, out + o, stride, 0);
    });
}
