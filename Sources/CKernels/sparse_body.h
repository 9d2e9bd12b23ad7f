/* The backward pass of a stride-1 convolution for an output gradient that is mostly zeros, included
 * twice by kernels.c (AVX2+FMA and portable; KS(name) gives the variant's name). After max pooling,
 * ReLU and dropout, 7–11% of conv2's output gradient in mnist-cnn is nonzero, so products over the
 * nonzeros alone beat dense Winograd: each nonzero g at output pixel (b, y, x), channel o adds
 *   g · (the ks×ks×c input patch under that pixel)   to the weight gradient of o, and
 *   g · (o's ks×ks×c filter)                          to the input gradient under that pixel.
 * Both are runs of ks·c contiguous floats per kernel row, in NHWC with the weight packed (oc, ks, ks,
 * c). One sample at a time, so that its input and input gradient stay in cache: its nonzeros are
 * listed pixel by pixel, then again channel by channel. The weight gradient goes channel by channel
 * (a kernel row of its gradient held in registers), the input gradient pixel by pixel (a kernel row
 * of the patch held in registers). Patches that cross the zero padding take a plain path that skips
 * the pixels outside. */

#define SP_BLOCK 96 /* floats held in twelve 8-float registers */
#define SP_BAND 8   /* output rows per band of the weight gradient (2–4 and whole samples measured slower) */

/* d[0..len) += g · s[0..len) */
static inline __attribute__((always_inline)) void KS(sp_axpy)(float *d, const float *s, float g, long len) {
    v8 gv = {g, g, g, g, g, g, g, g};
    long i = 0;
    for (; i + 8 <= len; i += 8) *(v8u *)(d + i) = *(v8u *)(d + i) + gv * *(const v8u *)(s + i);
    for (; i < len; i++) d[i] += g * s[i];
}

/* dst[0..len) += Σ_e val[e] · (src(e))[0..len) over the entries e that are not SKIP, in blocks of
 * SP_BLOCK floats held in registers */
#define SP_SUM(dst, len, count, val, SRC, SKIP) do { \
    long off_ = 0; \
    for (; off_ + SP_BLOCK <= (len); off_ += SP_BLOCK) { \
        v8 acc_[12]; \
        for (int v_ = 0; v_ < 12; v_++) acc_[v_] = *(const v8u *)((dst) + off_ + 8 * v_); \
        for (long e_ = 0; e_ < (count); e_++) { \
            if (SKIP) continue; \
            float g_ = (val)[e_]; \
            const float *s_ = (SRC) + off_; \
            v8 gv_ = {g_, g_, g_, g_, g_, g_, g_, g_}; \
            for (int v_ = 0; v_ < 12; v_++) acc_[v_] = acc_[v_] + gv_ * *(const v8u *)(s_ + 8 * v_); \
        } \
        for (int v_ = 0; v_ < 12; v_++) *(v8u *)((dst) + off_ + 8 * v_) = acc_[v_]; \
    } \
    if (off_ < (len)) \
        for (long e_ = 0; e_ < (count); e_++) \
            if (!(SKIP)) KS(sp_axpy)((dst) + off_, (SRC) + off_, (val)[e_], (len) - off_); \
    } while (0)

/* Appends the nonzeros of row[0..oc) as (channel, value) to ch/val; returns how many. */
static inline __attribute__((always_inline)) long KS(sp_compress)(const float *row, long oc, int32_t *ch, float *val) {
    long nz = 0, o = 0;
#if SP_AVX2
    for (; o + 8 <= oc; o += 8) {
        __m256 v = _mm256_loadu_ps(row + o);
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
        __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sparse_compress_lut[mask]));
        _mm256_storeu_ps(val + nz, _mm256_permutevar8x32_ps(v, idx));
        _mm256_storeu_si256((__m256i *)(ch + nz), _mm256_add_epi32(idx, _mm256_set1_epi32((int)o)));
        nz += __builtin_popcount((unsigned)mask);
    }
#endif
    for (; o < oc; o++) {
        float g = row[o];
        ch[nz] = (int32_t)o;
        val[nz] = g;
        nz += g != 0;
    }
    return nz;
}

static long KS(conv_sparse_backward)(const float *x, const float *dy, const fedpi_conv_shape *s, const float *wp,
                                     float *dwp, float *dx, long max_nonzeros, void *scratch) {
    long oc = s->oc, c = s->c, ks = s->ks, run = ks * c, rowStride = s->w * c, perSample = s->oh * s->ow;
    /* the budget first, before anything is changed */
    long total = fedpi_nonzeros(dy, s->n * perSample * oc);
    if (total > max_nonzeros) return -1;
    if (dx) memset(dx, 0, (size_t)(s->n * s->h * s->w * c) * sizeof(float));

    /* scratch: one sample's nonzeros pixel by pixel as (channel, value), with 8 floats of slack, and
     * where each pixel's run ends; the same channel by channel as (base, value) in a bucket of
     * `perSample` per channel, with each bucket's count and a cursor */
    long cap = perSample;
    int32_t *pch = scratch;
    float *pval = (float *)(pch + cap * oc + 8);
    int32_t *pixelEnd = (int32_t *)(pval + cap * oc + 8);
    int32_t *cbase = pixelEnd + cap;
    float *cval = (float *)(cbase + oc * cap);
    int32_t *filled = (int32_t *)(cval + oc * cap), *cursor = filled + oc;

    for (long b = 0; b < s->n; b++) {
        const float *dys = dy + b * perSample * oc;
        long nz = 0;
        for (long p = 0; p < perSample; p++) {
            nz += KS(sp_compress)(dys + p * oc, oc, pch + nz, pval + nz);
            pixelEnd[p] = (int32_t)nz;
        }
        if (nz == 0) continue;
        /* channel by channel, in pixel order; base = the patch's first float in x, or -1 - pixel where
         * the patch crosses the padding */
        memset(filled, 0, (size_t)oc * sizeof(int32_t));
        long e = 0;
        for (long p = 0, y = -s->pad; y < s->oh - s->pad; y++) {
            for (long xx = -s->pad; xx < s->ow - s->pad; xx++, p++) {
                int inside = y >= 0 && y + ks <= s->h && xx >= 0 && xx + ks <= s->w;
                int32_t base = inside ? (int32_t)(((b * s->h + y) * s->w + xx) * c) : (int32_t)(-1 - p);
                for (; e < pixelEnd[p]; e++) {
                    long slot = pch[e] * cap + filled[pch[e]]++;
                    cbase[slot] = base;
                    cval[slot] = pval[e];
                }
            }
        }
        /* weight gradient, channel by channel within bands of SP_BAND output rows, so that the band's
         * input rows (33 KB for conv2) stay in cache while all channels use them: each band takes the
         * next run of every bucket (interior bases grow with the pixel) */
        memset(cursor, 0, (size_t)oc * sizeof(int32_t));
        for (long y0 = 0; y0 < s->oh; y0 += SP_BAND) {
            long y1 = y0 + SP_BAND < s->oh ? y0 + SP_BAND : s->oh;
            /* interior bases of rows below y1 are smaller than this (and padding entries negative) */
            long limit = ((b * s->h + y1 - s->pad) * s->w - s->pad) * c;
            for (long o = 0; o < oc; o++) {
                const int32_t *bases = cbase + o * cap;
                long e0 = cursor[o], e1 = e0;
                while (e1 < filled[o] && bases[e1] < limit) e1++;
                cursor[o] = (int32_t)e1;
                for (long ky = 0; ky < ks && e1 > e0; ky++) {
                    float *dst = dwp + (o * ks + ky) * run;
                    const float *vals = cval + o * cap + e0, *src = x + ky * rowStride;
                    if (s->pad == 0)
                        SP_SUM(dst, run, e1 - e0, vals, src + bases[e0 + e_], 0);
                    else
                        SP_SUM(dst, run, e1 - e0, vals, src + bases[e0 + e_], bases[e0 + e_] < 0);
                }
            }
        }
        for (long o = 0; o < oc && s->pad > 0; o++) {  /* patches crossing the padding: pixel by pixel */
            for (long k = 0; k < filled[o]; k++) {
                if (cbase[o * cap + k] >= 0) continue;
                long p = -1 - cbase[o * cap + k], y = p / s->ow - s->pad, xx = p % s->ow - s->pad;
                for (long ky = 0; ky < ks; ky++)
                    for (long kx = 0; kx < ks; kx++) {
                        long iy = y + ky, ix = xx + kx;
                        if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                        KS(sp_axpy)(dwp + ((o * ks + ky) * ks + kx) * c, x + ((b * s->h + iy) * s->w + ix) * c, cval[o * cap + k], c);
                    }
            }
        }
        if (!dx) continue;
        /* input gradient, pixel by pixel: a kernel row of the patch in registers, the filters' rows
         * (oc·ks·ks·c floats, 74 KB for conv2) from L2 */
        long start = 0;
        for (long p = 0, y = -s->pad; y < s->oh - s->pad; y++) {
            for (long xx = -s->pad; xx < s->ow - s->pad; xx++, p++) {
                long n = pixelEnd[p] - start;
                const int32_t *chs = pch + start;
                const float *vals = pval + start;
                start = pixelEnd[p];
                if (n == 0) continue;
                if (y >= 0 && y + ks <= s->h && xx >= 0 && xx + ks <= s->w) {
                    float *patch = dx + ((b * s->h + y) * s->w + xx) * c;
                    for (long ky = 0; ky < ks; ky++) SP_SUM(patch + ky * rowStride, run, n, vals, wp + (chs[e_] * ks + ky) * run, 0);
                } else {
                    for (long e = 0; e < n; e++)
                        for (long ky = 0; ky < ks; ky++)
                            for (long kx = 0; kx < ks; kx++) {
                                long iy = y + ky, ix = xx + kx;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                KS(sp_axpy)(dx + ((b * s->h + iy) * s->w + ix) * c, wp + ((chs[e] * ks + ky) * ks + kx) * c, vals[e], c);
                            }
                }
            }
        }
    }
    return total;
}

/* C (m × n) = op(A) · B + beta·C for an A that is mostly zeros: each row of op(A) (element (i, p) at
 * a[i·rsa + p·csa]) is listed as (p, value) pairs, then C is made SP_BLOCK columns at a time, each row
 * of the block summed in registers over its row's pairs (SP_SUM; C is zeroed first when beta is 0). The block of B (k rows) is used by every row
 * of C, so it is read from memory once; the next block is prefetched while this one is used. */
static void KS(sparse_gemm)(long m, long n, long k, const float *a, long rsa, long csa, const float *b, long ldb,
                            float beta, float *c, long ldc, void *scratch) {
    int32_t *cols = scratch, *rowEnd = cols + m * k;
    float *vals = (float *)(rowEnd + m);
    long nz = 0;
    for (long i = 0; i < m; i++) {
        for (long p = 0; p < k; p++) {
            float g = a[i * rsa + p * csa];
            cols[nz] = (int32_t)p;
            vals[nz] = g;
            nz += g != 0;
        }
        rowEnd[i] = (int32_t)nz;
    }
    for (long j = 0; j < n; j += SP_BLOCK) {
        long width = n - j < SP_BLOCK ? n - j : SP_BLOCK;
        if (j + 2 * SP_BLOCK <= n)
            for (long p = 0; p < k; p++)
                for (int l = 0; l < SP_BLOCK; l += 16) __builtin_prefetch(b + p * ldb + j + SP_BLOCK + l);
        long start = 0;
        for (long i = 0; i < m; i++) {
            const int32_t *ps = cols + start;
            float *dst = c + i * ldc + j;
            if (beta == 0) memset(dst, 0, (size_t)width * sizeof(float));
            SP_SUM(dst, width, rowEnd[i] - start, vals + start, b + ps[e_] * ldb + j, 0);
            start = rowEnd[i];
        }
    }
}
