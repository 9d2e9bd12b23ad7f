/* The GEMM kernel, included twice by kernels.c: once under target("avx2,fma"),
 * once portable. KS(name) gives the variant's name. Register tile: 6 rows × 16 columns
 * (12 vector accumulators of 8 floats, 2 B loads and 6 broadcasts per step of k). */

static inline __attribute__((always_inline)) void KS(tile)(
    long rows, long vecs, long k, float alpha, const float *a, long rsa, long csa,
    const float *b, long ldb, float beta, float *c, long ldc) {
    v8 acc[6][2];
    for (long r = 0; r < 6; r++) { acc[r][0] = (v8){0}; acc[r][1] = (v8){0}; }
    for (long p = 0; p < k; p++) {
        const float *bp = b + p * ldb;
        v8 b0 = *(const v8u *)bp;
        v8 b1 = vecs > 1 ? *(const v8u *)(bp + 8) : (v8){0};
        const float *ap = a + p * csa;
        for (long r = 0; r < 6; r++) {
            if (r < rows) {
                float s = ap[r * rsa];
                v8 av = {s, s, s, s, s, s, s, s};
                acc[r][0] = acc[r][0] + av * b0;
                if (vecs > 1) acc[r][1] = acc[r][1] + av * b1;
            }
        }
    }
    for (long r = 0; r < 6; r++) {
        if (r >= rows) break;
        for (long v = 0; v < vecs; v++) {
            v8u *dst = (v8u *)(c + r * ldc + 8 * v);
            v8 out = acc[r][v] * alpha;
            if (beta != 0) out = out + *dst * beta;
            *dst = out;
        }
    }
}

static void KS(gemm)(long m, long n, long k, float alpha, const float *a, long rsa, long csa,
                      const float *b, long ldb, float beta, float *c, long ldc) {
    long nv = n - n % 8;
    for (long j = 0; j < nv; j += 16) {
        long vecs = nv - j >= 16 ? 2 : 1;
        long i = 0;
        /* full 6-row tiles with constant trip counts, so the compiler keeps all 12 accumulators in registers */
        if (vecs == 2) {
            for (; i + 6 <= m; i += 6)
                KS(tile)(6, 2, k, alpha, a + i * rsa, rsa, csa, b + j, ldb, beta, c + i * ldc + j, ldc);
        } else {
            for (; i + 6 <= m; i += 6)
                KS(tile)(6, 1, k, alpha, a + i * rsa, rsa, csa, b + j, ldb, beta, c + i * ldc + j, ldc);
        }
        /* the last rows: one specialised copy per count, so none of them falls back to a generic loop */
        const float *ai = a + i * rsa;
        float *ci = c + i * ldc + j;
#define REST(R) (vecs == 2 ? KS(tile)(R, 2, k, alpha, ai, rsa, csa, b + j, ldb, beta, ci, ldc) \
                           : KS(tile)(R, 1, k, alpha, ai, rsa, csa, b + j, ldb, beta, ci, ldc))
        switch (m - i) {
        case 1: REST(1); break;
        case 2: REST(2); break;
        case 3: REST(3); break;
        case 4: REST(4); break;
        case 5: REST(5); break;
        default: break;
        }
#undef REST
    }
    /* columns past the last multiple of 8: plain loops */
    for (long i = 0; i < m; i++) {
        for (long j = nv; j < n; j++) {
            float s = 0;
            for (long p = 0; p < k; p++) s += a[i * rsa + p * csa] * b[p * ldb + j];
            float *dst = c + i * ldc + j;
            *dst = alpha * s + (beta != 0 ? beta * *dst : 0);
        }
    }
}
