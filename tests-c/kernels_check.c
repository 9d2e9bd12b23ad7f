/* Every CKernels and CHalf entry point against a plain scalar reference written here (double
 * accumulation, loops straight from the header's definitions). Built twice by scripts/kernels-test.sh:
 * natively (x86-64: the AVX2+FMA and the portable kernels in turn) and for aarch64 with clang
 * --target=aarch64-linux-gnu, run under qemu-aarch64, where the portable kernels are the NEON code a
 * Raspberry Pi runs. Exit status 0 when every check passed; the first mismatches of each check are
 * printed with their index. */
#include "ckernels.h"
#include "chalf.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

/* --- deterministic data ------------------------------------------------------------------------ */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static float uniform(void) { return (float)((next_u64() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static float *floats(long n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!p) { perror("malloc"); exit(2); }
    return p;
}
static float *randoms(long n) { float *p = floats(n); for (long i = 0; i < n; i++) p[i] = uniform(); return p; }
/* Mostly zeros: about `dense` of the entries are nonzero. */
static float *sparse_randoms(long n, double dense) {
    float *p = floats(n);
    for (long i = 0; i < n; i++) p[i] = (next_u64() >> 11) * (1.0 / 9007199254740992.0) < dense ? uniform() : 0.0f;
    return p;
}
static void fill(float *p, long n, float v) { for (long i = 0; i < n; i++) p[i] = v; }

/* got[i] against want[i] within tol·(1 + scale[i]), scale the sum of the magnitudes of the terms */
static void expect_close(const char *what, const float *got, const double *want, const double *scale, long n, double tol) {
    long bad = 0;
    checks++;
    for (long i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]), limit = tol * (1.0 + (scale ? scale[i] : fabs(want[i])));
        if (!(err <= limit)) {  /* NaN fails */
            if (bad < 3) fprintf(stderr, "FAIL %s [%ld]: got %.9g, want %.9g (limit %.3g)\n", what, i, got[i], want[i], limit);
            bad++;
        }
    }
    if (bad) { failures++; fprintf(stderr, "FAIL %s: %ld of %ld differ\n", what, bad, n); }
}
static void expect_equal_bytes(const char *what, const void *got, const void *want, size_t n) {
    checks++;
    if (memcmp(got, want, n) != 0) {
        const unsigned char *g = got, *w = want;
        size_t i = 0;
        while (g[i] == w[i]) i++;
        fprintf(stderr, "FAIL %s: byte %zu of %zu differs (%u, want %u)\n", what, i, n, g[i], w[i]);
        failures++;
    }
}
static void expect(const char *what, int ok) {
    checks++;
    if (!ok) { fprintf(stderr, "FAIL %s\n", what); failures++; }
}

/* --- GEMM ------------------------------------------------------------------------------------ */
static void check_gemm(int portable_entry) {
    static const long ms[] = {1, 5, 6, 7, 13, 40}, ns[] = {1, 7, 8, 15, 16, 17, 33, 70}, ks[] = {1, 3, 16, 37};
    char what[160];
    for (unsigned mi = 0; mi < sizeof ms / sizeof *ms; mi++)
    for (unsigned ni = 0; ni < sizeof ns / sizeof *ns; ni++)
    for (unsigned ki = 0; ki < sizeof ks / sizeof *ks; ki++)
    for (int transposed = 0; transposed < 2; transposed++)
    for (int beta_one = 0; beta_one < 2; beta_one++) {
        long m = ms[mi], n = ns[ni], k = ks[ki], ldb = n + 3, ldc = n + 5;
        long rsa = transposed ? 1 : k, csa = transposed ? m : 1;
        float alpha = 0.75f, beta = beta_one ? 1.0f : 0.0f;
        float *a = randoms(m * k), *b = randoms(k * ldb), *c = randoms(m * ldc);
        double *want = malloc(sizeof(double) * (size_t)(m * ldc)), *scale = malloc(sizeof(double) * (size_t)(m * ldc));
        for (long i = 0; i < m; i++)
            for (long j = 0; j < ldc; j++) {
                double s = 0, abs = 0;
                if (j < n) {
                    for (long p = 0; p < k; p++) {
                        double t = (double)a[i * rsa + p * csa] * b[p * ldb + j];
                        s += t; abs += fabs(t);
                    }
                    s = alpha * s + (beta_one ? c[i * ldc + j] : 0);
                    abs = alpha * abs + (beta_one ? fabs(c[i * ldc + j]) : 0);
                } else {
                    s = c[i * ldc + j];  /* past n: the padding of each row stays */
                }
                want[i * ldc + j] = s; scale[i * ldc + j] = abs;
            }
        if (!beta_one)  /* beta 0 never reads C: NaN there must not show */
            for (long i = 0; i < m; i++) fill(c + i * ldc, n, NAN);
        (portable_entry ? fedpi_gemm_portable : fedpi_gemm)(m, n, k, alpha, a, rsa, csa, b, ldb, beta, c, ldc);
        snprintf(what, sizeof what, "%s m=%ld n=%ld k=%ld %s beta=%g", portable_entry ? "gemm_portable" : "gemm", m, n, k,
                 transposed ? "Aᵀ" : "A", beta);
        expect_close(what, c, want, scale, m * ldc, 1e-5);
        free(a); free(b); free(c); free(want); free(scale);
    }
}

static void check_sparse_gemm(void) {
    static const long ms[] = {1, 6, 9, 32}, ns[] = {1, 8, 17, 64}, ks[] = {1, 10, 50};
    char what[160];
    for (unsigned mi = 0; mi < 4; mi++)
    for (unsigned ni = 0; ni < 4; ni++)
    for (unsigned ki = 0; ki < 3; ki++)
    for (int transposed = 0; transposed < 2; transposed++)
    for (int beta_one = 0; beta_one < 2; beta_one++) {
        long m = ms[mi], n = ns[ni], k = ks[ki], ldb = n + 1, ldc = n + 2;
        long rsa = transposed ? 1 : k, csa = transposed ? m : 1;
        float *a = sparse_randoms(m * k, 0.1), *b = randoms(k * ldb), *c = randoms(m * ldc);
        double *want = malloc(sizeof(double) * (size_t)(m * ldc)), *scale = malloc(sizeof(double) * (size_t)(m * ldc));
        for (long i = 0; i < m; i++)
            for (long j = 0; j < ldc; j++) {
                double s = 0, abs = 0;
                if (j < n) {
                    for (long p = 0; p < k; p++) { double t = (double)a[i * rsa + p * csa] * b[p * ldb + j]; s += t; abs += fabs(t); }
                    if (beta_one) { s += c[i * ldc + j]; abs += fabs(c[i * ldc + j]); }
                } else s = c[i * ldc + j];
                want[i * ldc + j] = s; scale[i * ldc + j] = abs;
            }
        if (!beta_one) for (long i = 0; i < m; i++) fill(c + i * ldc, n, NAN);
        void *scratch = malloc(fedpi_sparse_gemm_scratch_bytes(m, k));
        fedpi_sparse_gemm(m, n, k, a, rsa, csa, b, ldb, beta_one ? 1.0f : 0.0f, c, ldc, scratch);
        snprintf(what, sizeof what, "sparse_gemm m=%ld n=%ld k=%ld %s beta=%d", m, n, k, transposed ? "Aᵀ" : "A", beta_one);
        expect_close(what, c, want, scale, m * ldc, 1e-5);
        free(a); free(b); free(c); free(want); free(scale); free(scratch);
    }
}

/* --- Winograd: the transforms composed into a convolution, against direct convolution ------------ */
static void check_winograd(void) {
    static const long hs[][2] = {{3, 3}, {5, 5}, {8, 8}, {9, 11}, {14, 14}};
    static const long cs[] = {1, 3, 8, 13}, ocs[] = {1, 8, 19}, pads[] = {0, 1};
    char what[200];
    for (unsigned hi = 0; hi < 5; hi++)
    for (unsigned ci = 0; ci < 4; ci++)
    for (unsigned oi = 0; oi < 3; oi++)
    for (unsigned pi = 0; pi < 2; pi++)
    for (int chunk = 0; chunk < 2; chunk++) {
        const long N = 3, h = hs[hi][0], w = hs[hi][1], c = cs[ci], oc = ocs[oi], pad = pads[pi];
        const long oh = h + 2 * pad - 2, ow = w + 2 * pad - 2;
        if (oh < 1 || ow < 1) continue;
        const long n0 = chunk ? 1 : 0, n1 = chunk ? 3 : 3, ns = n1 - n0;  /* a chunk that does not start at 0 */
        fedpi_winograd_shape s = {h, w, c, oc, pad, oh, ow};
        const long tiles = ((oh + 3) / 4) * ((ow + 3) / 4), T = ns * tiles;
        float *x = randoms(N * h * w * c), *wt = randoms(oc * c * 9), *bias = randoms(oc), *dy = randoms(N * oh * ow * oc);
        float *u = floats(36 * c * oc), *v = floats(36 * T * c), *m = floats(36 * T * oc), *y = floats(N * oh * ow * oc);
        float *zeros = floats(c);
        fill(zeros, c, 0);
        fedpi_winograd_filters(wt, oc, c, u);
        fedpi_winograd_input(x, n0, n1, &s, zeros, v);
        for (long xi = 0; xi < 36; xi++)  /* M_ξ = V_ξ · U_ξ */
            for (long t = 0; t < T; t++)
                for (long o = 0; o < oc; o++) {
                    double acc = 0;
                    for (long i = 0; i < c; i++) acc += (double)v[(xi * T + t) * c + i] * u[(xi * c + i) * oc + o];
                    m[(xi * T + t) * oc + o] = (float)acc;
                }
        fill(y, N * oh * ow * oc, NAN);
        fedpi_winograd_output(m, n0, n1, &s, bias, y);
        long out = ns * oh * ow * oc, in = ns * h * w * c;
        double *want = malloc(sizeof(double) * (size_t)(out + in + oc * c * 9)), *scale = malloc(sizeof(double) * (size_t)(out + in + oc * c * 9));
        for (long b = n0; b < n1; b++)
            for (long oy = 0; oy < oh; oy++)
                for (long ox = 0; ox < ow; ox++)
                    for (long o = 0; o < oc; o++) {
                        double acc = bias[o], abs = fabs(bias[o]);
                        for (long i = 0; i < c; i++)
                            for (long ky = 0; ky < 3; ky++)
                                for (long kx = 0; kx < 3; kx++) {
                                    long iy = oy + ky - pad, ix = ox + kx - pad;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    double t = (double)wt[((o * c + i) * 3 + ky) * 3 + kx] * x[((b * h + iy) * w + ix) * c + i];
                                    acc += t; abs += fabs(t);
                                }
                        long at = (((b - n0) * oh + oy) * ow + ox) * oc + o;
                        want[at] = acc; scale[at] = abs;
                    }
        snprintf(what, sizeof what, "winograd forward h=%ld w=%ld c=%ld oc=%ld pad=%ld n=%ld..<%ld", h, w, c, oc, pad, n0, n1);
        expect_close(what, y + n0 * oh * ow * oc, want, scale, out, 1e-4);
        if (n0 > 0) {  /* samples outside the chunk are not written */
            long untouched = 0;
            for (long i = 0; i < n0 * oh * ow * oc; i++) untouched += isnan(y[i]);
            expect("winograd forward leaves other samples alone", untouched == n0 * oh * ow * oc);
        }

        /* input gradient: dV_ξ = dM_ξ · U_ξᵀ, then the adjoint input transform */
        float *dm = floats(36 * T * oc), *dv = floats(36 * T * c), *dx = floats(N * h * w * c), *du = floats(36 * oc * c), *gw = floats(oc * c * 9);
        fedpi_winograd_output_gradient(dy, n0, n1, &s, dm);
        for (long xi = 0; xi < 36; xi++)
            for (long t = 0; t < T; t++)
                for (long i = 0; i < c; i++) {
                    double acc = 0;
                    for (long o = 0; o < oc; o++) acc += (double)dm[(xi * T + t) * oc + o] * u[(xi * c + i) * oc + o];
                    dv[(xi * T + t) * c + i] = (float)acc;
                }
        fill(dx, N * h * w * c, 0);
        fedpi_winograd_input_gradient(dv, n0, n1, &s, dx);
        double *wx = want + out, *sx = scale + out;
        for (long i = 0; i < in; i++) wx[i] = sx[i] = 0;
        for (long b = n0; b < n1; b++)
            for (long oy = 0; oy < oh; oy++)
                for (long ox = 0; ox < ow; ox++)
                    for (long o = 0; o < oc; o++)
                        for (long i = 0; i < c; i++)
                            for (long ky = 0; ky < 3; ky++)
                                for (long kx = 0; kx < 3; kx++) {
                                    long iy = oy + ky - pad, ix = ox + kx - pad;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    double t = (double)wt[((o * c + i) * 3 + ky) * 3 + kx] * dy[((b * oh + oy) * ow + ox) * oc + o];
                                    long at = (((b - n0) * h + iy) * w + ix) * c + i;
                                    wx[at] += t; sx[at] += fabs(t);
                                }
        snprintf(what, sizeof what, "winograd input gradient h=%ld w=%ld c=%ld oc=%ld pad=%ld n=%ld..<%ld", h, w, c, oc, pad, n0, n1);
        expect_close(what, dx + n0 * h * w * c, wx, sx, in, 1e-4);

        /* filter gradient: dU_ξ[out][in] = Σ_t dM_ξ[t][out] · V_ξ[t][in], then Gᵀ·dU·G added to gw */
        for (long xi = 0; xi < 36; xi++)
            for (long o = 0; o < oc; o++)
                for (long i = 0; i < c; i++) {
                    double acc = 0;
                    for (long t = 0; t < T; t++) acc += (double)dm[(xi * T + t) * oc + o] * v[(xi * T + t) * c + i];
                    du[(xi * oc + o) * c + i] = (float)acc;
                }
        float *gw0 = randoms(oc * c * 9);
        memcpy(gw, gw0, sizeof(float) * (size_t)(oc * c * 9));
        fedpi_winograd_add_filter_gradient(du, c, oc, gw);
        double *ww = wx + in, *sw = sx + in;
        for (long o = 0; o < oc; o++)
            for (long i = 0; i < c; i++)
                for (long ky = 0; ky < 3; ky++)
                    for (long kx = 0; kx < 3; kx++) {
                        long at = ((o * c + i) * 3 + ky) * 3 + kx;
                        double acc = gw0[at], abs = fabs(gw0[at]);
                        for (long b = n0; b < n1; b++)
                            for (long oy = 0; oy < oh; oy++)
                                for (long ox = 0; ox < ow; ox++) {
                                    long iy = oy + ky - pad, ix = ox + kx - pad;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                    double t = (double)dy[((b * oh + oy) * ow + ox) * oc + o] * x[((b * h + iy) * w + ix) * c + i];
                                    acc += t; abs += fabs(t);
                                }
                        ww[at] = acc; sw[at] = abs;
                    }
        snprintf(what, sizeof what, "winograd filter gradient h=%ld w=%ld c=%ld oc=%ld pad=%ld n=%ld..<%ld", h, w, c, oc, pad, n0, n1);
        expect_close(what, gw, ww, sw, oc * c * 9, 1e-4);
        free(x); free(wt); free(bias); free(dy); free(u); free(v); free(m); free(y); free(zeros);
        free(want); free(scale); free(dm); free(dv); free(dx); free(du); free(gw); free(gw0);
    }
}

/* --- the sparse backward pass of a stride-1 convolution --------------------------------------- */
static void check_conv_sparse(void) {
    static const long cs[] = {1, 3, 8, 10, 40}, ocs[] = {4, 9, 16}, kss[] = {3, 5}, pads[] = {0, 1, 2};
    char what[200];
    for (unsigned ci = 0; ci < 5; ci++)
    for (unsigned oi = 0; oi < 3; oi++)
    for (unsigned ki = 0; ki < 2; ki++)
    for (unsigned pi = 0; pi < 3; pi++)
    for (int with_dx = 0; with_dx < 2; with_dx++) {
        const long n = 2, h = 9, w = 11, c = cs[ci], oc = ocs[oi], ks = kss[ki], pad = pads[pi];
        const long oh = h + 2 * pad - ks + 1, ow = w + 2 * pad - ks + 1;
        fedpi_conv_shape s = {n, h, w, c, oh, ow, oc, ks, pad};
        float *x = randoms(n * h * w * c), *dy = sparse_randoms(n * oh * ow * oc, 0.1), *wp = randoms(oc * ks * ks * c);
        float *dwp = randoms(oc * ks * ks * c), *dx = floats(n * h * w * c);
        long nw = oc * ks * ks * c, nx = n * h * w * c, nonzeros = 0;
        for (long i = 0; i < n * oh * ow * oc; i++) nonzeros += dy[i] != 0;
        double *want = calloc((size_t)(nw + nx), sizeof(double)), *scale = calloc((size_t)(nw + nx), sizeof(double));
        for (long i = 0; i < nw; i++) { want[i] = dwp[i]; scale[i] = fabs(dwp[i]); }
        for (long b = 0; b < n; b++)
            for (long oy = 0; oy < oh; oy++)
                for (long ox = 0; ox < ow; ox++)
                    for (long o = 0; o < oc; o++) {
                        double g = dy[((b * oh + oy) * ow + ox) * oc + o];
                        if (g == 0) continue;
                        for (long ky = 0; ky < ks; ky++)
                            for (long kx = 0; kx < ks; kx++) {
                                long iy = oy + ky - pad, ix = ox + kx - pad;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                for (long i = 0; i < c; i++) {
                                    long wi = ((o * ks + ky) * ks + kx) * c + i, xi = ((b * h + iy) * w + ix) * c + i;
                                    want[wi] += g * x[xi]; scale[wi] += fabs(g * x[xi]);
                                    want[nw + xi] += g * wp[wi]; scale[nw + xi] += fabs(g * wp[wi]);
                                }
                            }
                    }
        void *scratch = malloc(fedpi_conv_sparse_scratch_bytes(&s));
        float *dwp0 = floats(nw);
        memcpy(dwp0, dwp, sizeof(float) * (size_t)nw);
        fill(dx, nx, NAN);  /* overwritten, never read */
        snprintf(what, sizeof what, "conv_sparse_backward c=%ld oc=%ld ks=%ld pad=%ld%s", c, oc, ks, pad, with_dx ? " +dx" : "");
        /* over the limit: -1, and nothing changes */
        if (nonzeros > 0) {
            long r = fedpi_conv_sparse_backward(x, dy, &s, wp, dwp, with_dx ? dx : NULL, nonzeros - 1, scratch);
            int untouched = memcmp(dwp, dwp0, sizeof(float) * (size_t)nw) == 0;
            for (long i = 0; i < nx && untouched; i++) untouched = isnan(dx[i]);
            char limit[240];
            snprintf(limit, sizeof limit, "%s: over max_nonzeros returns -1 and changes nothing", what);
            expect(limit, r == -1 && untouched);
        }
        long r = fedpi_conv_sparse_backward(x, dy, &s, wp, dwp, with_dx ? dx : NULL, nonzeros, scratch);
        char count[240];
        snprintf(count, sizeof count, "%s returns the nonzero count (%ld, want %ld)", what, r, nonzeros);
        expect(count, r == nonzeros);
        expect_close(what, dwp, want, scale, nw, 1e-5);
        if (with_dx) expect_close(what, dx, want + nw, scale + nw, nx, 1e-5);
        free(x); free(dy); free(wp); free(dwp); free(dx); free(want); free(scale); free(scratch); free(dwp0);
    }
}

/* --- one-channel convolution (conv1) ----------------------------------------------------------- */
static void check_conv1ch(void) {
    static const long kss[] = {1, 3, 5, 7}, ocs[] = {1, 7, 8, 10, 32}, sizes[][2] = {{7, 7}, {11, 9}, {28, 28}};
    char what[160];
    for (unsigned ki = 0; ki < 4; ki++)
    for (unsigned oi = 0; oi < 5; oi++)
    for (unsigned si = 0; si < 3; si++) {
        const long n = 3, h = sizes[si][0], w = sizes[si][1], ks = kss[ki], oc = ocs[oi], oh = h - ks + 1, ow = w - ks + 1;
        float *x = randoms(n * h * w), *wt = randoms(ks * ks * oc), *bias = randoms(oc), *dy = randoms(n * oh * ow * oc);
        float *y = floats(n * oh * ow * oc), *dwt = randoms(ks * ks * oc), *db = randoms(oc), *dx = floats(n * h * w);
        long ny = n * oh * ow * oc, nw = ks * ks * oc, nx = n * h * w;
        double *want = calloc((size_t)(ny + nw + oc + nx), sizeof(double)), *scale = calloc((size_t)(ny + nw + oc + nx), sizeof(double));
        double *wy = want, *ww = want + ny, *wb = ww + nw, *wx = wb + oc, *sy = scale, *sw = scale + ny, *sb = sw + nw, *sx = sb + oc;
        for (long i = 0; i < nw; i++) { ww[i] = dwt[i]; sw[i] = fabs(dwt[i]); }
        for (long o = 0; o < oc; o++) { wb[o] = db[o]; sb[o] = fabs(db[o]); }
        for (long b = 0; b < n; b++)
            for (long oy = 0; oy < oh; oy++)
                for (long ox = 0; ox < ow; ox++)
                    for (long o = 0; o < oc; o++) {
                        long yi = ((b * oh + oy) * ow + ox) * oc + o;
                        double g = dy[yi], acc = bias[o], abs = fabs(bias[o]);
                        wb[o] += g; sb[o] += fabs(g);
                        for (long ky = 0; ky < ks; ky++)
                            for (long kx = 0; kx < ks; kx++) {
                                long xi = (b * h + oy + ky) * w + ox + kx, ti = (ky * ks + kx) * oc + o;
                                acc += (double)x[xi] * wt[ti]; abs += fabs((double)x[xi] * wt[ti]);
                                ww[ti] += g * x[xi]; sw[ti] += fabs(g * x[xi]);
                                wx[xi] += g * wt[ti]; sx[xi] += fabs(g * wt[ti]);
                            }
                        wy[yi] = acc; sy[yi] = abs;
                    }
        fedpi_conv1ch_forward(x, n, h, w, ks, oc, wt, bias, y);
        snprintf(what, sizeof what, "conv1ch forward h=%ld w=%ld ks=%ld oc=%ld", h, w, ks, oc);
        expect_close(what, y, wy, sy, ny, 1e-5);
        fedpi_conv1ch_gradient(x, dy, n, h, w, ks, oc, dwt, db);
        snprintf(what, sizeof what, "conv1ch weight gradient h=%ld w=%ld ks=%ld oc=%ld", h, w, ks, oc);
        expect_close(what, dwt, ww, sw, nw, 1e-5);
        snprintf(what, sizeof what, "conv1ch bias gradient h=%ld w=%ld ks=%ld oc=%ld", h, w, ks, oc);
        expect_close(what, db, wb, sb, oc, 1e-5);
        fill(dx, nx, NAN);
        fedpi_conv1ch_input_gradient(dy, n, h, w, ks, oc, wt, dx);
        snprintf(what, sizeof what, "conv1ch input gradient h=%ld w=%ld ks=%ld oc=%ld", h, w, ks, oc);
        expect_close(what, dx, wx, sx, nx, 1e-5);
        free(x); free(wt); free(bias); free(dy); free(y); free(dwt); free(db); free(dx); free(want); free(scale);
    }
}

/* --- max pooling, ReLU, dropout, transpose, nonzeros ------------------------------------------- */
static void check_maxpool(void) {
    static const long hs[] = {4, 9, 13}, cs[] = {1, 8, 13, 32}, sizes[] = {2, 3};
    char what[160];
    for (unsigned hi = 0; hi < 3; hi++)
    for (unsigned ci = 0; ci < 4; ci++)
    for (unsigned si = 0; si < 2; si++) {
        const long n = 2, h = hs[hi], w = hs[hi] + 1, c = cs[ci], size = sizes[si], oh = h / size, ow = w / size;
        long nx = n * h * w * c, ny = n * oh * ow * c;
        float *x = floats(nx), *y = floats(ny), *dy = randoms(ny), *dx = floats(nx);
        for (long i = 0; i < nx; i++) x[i] = (float)(next_u64() % 5) - 2.0f;  /* five levels: many ties */
        uint8_t *arg = malloc((size_t)ny), *want_arg = malloc((size_t)ny);
        double *want = calloc((size_t)ny, sizeof(double)), *want_dx = calloc((size_t)nx, sizeof(double));
        for (long b = 0; b < n; b++)
            for (long i = 0; i < oh; i++)
                for (long j = 0; j < ow; j++)
                    for (long ch = 0; ch < c; ch++) {
                        float best = -INFINITY;
                        int at = 0;
                        for (long pos = 0; pos < size * size; pos++) {
                            float v = x[((b * h + i * size + pos / size) * w + j * size + pos % size) * c + ch];
                            if (v > best) { best = v; at = (int)pos; }  /* the first maximum */
                        }
                        long o = ((b * oh + i) * ow + j) * c + ch;
                        want[o] = best; want_arg[o] = (uint8_t)at;
                        want_dx[((b * h + i * size + at / size) * w + j * size + at % size) * c + ch] = dy[o];
                    }
        fedpi_maxpool_forward(x, n, h, w, c, size, y, arg);
        snprintf(what, sizeof what, "maxpool forward h=%ld w=%ld c=%ld size=%ld", h, w, c, size);
        expect_close(what, y, want, NULL, ny, 0);
        snprintf(what, sizeof what, "maxpool argmax h=%ld w=%ld c=%ld size=%ld", h, w, c, size);
        expect_equal_bytes(what, arg, want_arg, (size_t)ny);
        fill(dx, nx, NAN);
        fedpi_maxpool_backward(dy, arg, n, h, w, c, size, dx);
        snprintf(what, sizeof what, "maxpool backward h=%ld w=%ld c=%ld size=%ld", h, w, c, size);
        expect_close(what, dx, want_dx, NULL, nx, 0);
        memcpy(dx, x, sizeof(float) * (size_t)nx);  /* in place: dx is the forward input */
        fedpi_maxpool_backward(dy, arg, n, h, w, c, size, dx);
        snprintf(what, sizeof what, "maxpool backward in place h=%ld w=%ld c=%ld size=%ld", h, w, c, size);
        expect_close(what, dx, want_dx, NULL, nx, 0);
        free(x); free(y); free(dy); free(dx); free(arg); free(want_arg); free(want); free(want_dx);
    }
}

static void check_relu_transpose_nonzeros(void) {
    char what[120];
    for (long n = 0; n < 40; n += 3) {
        float *y = randoms(n + 1), *dy = randoms(n + 1);
        double *want = malloc(sizeof(double) * (size_t)(n + 1));
        if (n > 2) { y[1] = 0.0f; y[2] = -0.0f; }
        for (long i = 0; i < n; i++) want[i] = y[i] > 0 ? dy[i] : 0.0;
        want[n] = dy[n];  /* past n: untouched */
        fedpi_relu_backward(y, dy, n);
        snprintf(what, sizeof what, "relu backward n=%ld", n);
        expect_close(what, dy, want, NULL, n + 1, 0);
        free(y); free(dy); free(want);
    }
    static const long dims[] = {1, 3, 4, 5, 8, 17};
    for (unsigned ri = 0; ri < 6; ri++)
        for (unsigned ci = 0; ci < 6; ci++) {
            long rows = dims[ri], cols = dims[ci];
            float *src = randoms(rows * cols), *dst = floats(rows * cols);
            double *want = malloc(sizeof(double) * (size_t)(rows * cols));
            for (long r = 0; r < rows; r++)
                for (long c = 0; c < cols; c++) want[c * rows + r] = src[r * cols + c];
            fedpi_transpose(src, rows, cols, dst);
            snprintf(what, sizeof what, "transpose %ld×%ld", rows, cols);
            expect_close(what, dst, want, NULL, rows * cols, 0);
            free(src); free(dst); free(want);
        }
    for (long n = 0; n < 70; n += 7) {
        float *x = sparse_randoms(n + 1, 0.3);
        if (n > 3) { x[0] = -0.0f; x[1] = NAN; x[3] = INFINITY; }
        long want = 0;
        for (long i = 0; i < n; i++) want += x[i] != 0;
        snprintf(what, sizeof what, "nonzeros n=%ld (%ld)", n, want);
        expect(what, fedpi_nonzeros(x, n) == want);
        free(x);
    }
}

/* xoshiro256**, from its published definition */
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t xoshiro(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return r;
}

/* fedpi_dropout over n elements (out of place, then in place) against the reference loop */
static void check_dropout_case(int b, long n) {
    char what[120];
    uint64_t threshold = b == 8 ? 179 : 45875, state[4], ref[4], mask = (1ull << b) - 1;
    float scale = 1.0f / 0.7f, *x = randoms(n + 1), *y = floats(n + 1);
    double *want = malloc(sizeof(double) * (size_t)(n + 1));
    for (int in_place = 0; in_place < 2; in_place++) {
        for (int i = 0; i < 4; i++) state[i] = ref[i] = next_u64();
        for (long i = 0; i < n;) {
            uint64_t draw = xoshiro(ref);
            for (int f = 0; f < 64 / b && i < n; f++, i++, draw >>= b)
                want[i] = (draw & mask) < threshold ? (double)(x[i] * scale) : 0.0;
        }
        if (in_place) {
            memcpy(y, x, sizeof(float) * (size_t)(n + 1));
            want[n] = x[n];  /* past n: untouched */
        } else {
            y[n] = 7.0f;
            want[n] = 7.0;
        }
        fedpi_dropout(in_place ? y : x, y, n, state, b, threshold, scale);
        snprintf(what, sizeof what, "dropout%s bits=%d n=%ld", in_place ? " in place" : "", b, n);
        expect_close(what, y, want, NULL, n + 1, 0);
        snprintf(what, sizeof what, "dropout%s bits=%d n=%ld advances the stream as the reference", in_place ? " in place" : "", b, n);
        expect_equal_bytes(what, state, ref, sizeof state);
    }
    free(x); free(y); free(want);
}

static void check_dropout(void) {
    uint64_t known[4] = {1, 2, 3, 4};
    uint64_t first = xoshiro(known), second = xoshiro(known);
    expect("xoshiro256** reference: first outputs from state 1,2,3,4 are 11520, 0", first == 11520 && second == 0);
    /* every length below 600 for 8-bit fields (the vector loop and its remainders), a long run for
     * 16-bit ones, so fields equal to the threshold (1 in 256, 1 in 65,536) come up and must drop */
    for (long n = 0; n < 600; n++) check_dropout_case(8, n);
    for (long n = 0; n < 100; n += 9) check_dropout_case(16, n);
    check_dropout_case(16, 300001);
}

/* --- f16: all 65,536 halves, every rounding midpoint, a million random floats ------------------- */
static uint32_t bits32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static int half_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF); }

static void check_f16(void) {
    uint16_t *all = malloc(65536 * 2), *back = malloc(65536 * 2), *back_portable = malloc(65536 * 2);
    float *f = floats(65536), *fp = floats(65536);
    for (long i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    fedpi_f16_to_f32(all, f, 65536);
    fedpi_f16_to_f32_portable(all, fp, 65536);
    long bad = 0, bad_ref = 0;
    for (long i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        /* the exact value from the definition: (−1)^s · 2^(e−15) · 1.m, or 2^−14 · 0.m */
        int e = (h >> 10) & 31, m = h & 1023;
        double v = e == 31 ? (m ? NAN : INFINITY) : e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
        if (h & 0x8000) v = -v;
        int ok = half_is_nan(h) ? isnan(f[i]) && isnan(fp[i]) && signbit(f[i]) == signbit(fp[i])
                                : bits32(f[i]) == bits32(fp[i]) && (double)f[i] == v && signbit(f[i]) == signbit(v);
        if (!ok && bad++ < 3) fprintf(stderr, "FAIL f16→f32 0x%04lx: %.9g, portable %.9g, want %.9g\n", i, f[i], fp[i], v);
        if (!half_is_nan(h) && (double)fp[i] != v) bad_ref++;
    }
    expect("f16→f32 of all 65,536 halves equals the portable path and the definition", bad == 0 && bad_ref == 0);
    fedpi_f32_to_f16(f, back, 65536);
    fedpi_f32_to_f16_portable(fp, back_portable, 65536);
    bad = 0;
    for (long i = 0; i < 65536; i++) {
        int ok = half_is_nan((uint16_t)i) ? half_is_nan(back[i]) && half_is_nan(back_portable[i]) && (back[i] & 0x8000) == (i & 0x8000)
                                          : back[i] == i && back_portable[i] == i;
        if (!ok && bad++ < 3) fprintf(stderr, "FAIL f16→f32→f16 0x%04lx: 0x%04x, portable 0x%04x\n", i, back[i], back_portable[i]);
    }
    expect("f32→f16 gives every half back from its float (all 65,536)", bad == 0);

    /* between each pair of neighbouring finite halves (and 65504 → infinity): the midpoint goes to the
     * even one, a float above or below it to the nearer */
    long n = 0;
    float *mid = floats(3 * 2 * 31744);
    uint16_t *want = malloc(3 * 2 * 31744 * 2), *got = malloc(3 * 2 * 31744 * 2), *got_portable = malloc(3 * 2 * 31744 * 2);
    for (uint32_t sign = 0; sign <= 0x8000; sign += 0x8000)
        for (uint32_t h = 0; h < 0x7C00; h++) {
            double lo = h < 1024 ? ldexp(h, -24) : ldexp(1024 + (h & 1023), (int)(h >> 10) - 25);
            double hi = h + 1 < 1024 ? ldexp(h + 1, -24) : h + 1 == 0x7C00 ? 65536.0 : ldexp(1024 + ((h + 1) & 1023), (int)((h + 1) >> 10) - 25);
            float m = (float)((lo + hi) / 2);  /* exact: 11 significant bits plus one */
            uint16_t even = (uint16_t)((h & 1) ? h + 1 : h);
            float below = nextafterf(m, 0), above = nextafterf(m, INFINITY);
            float vs[3] = {m, below, above};
            uint16_t ws[3] = {even, (uint16_t)h, (uint16_t)(h + 1)};
            for (int k = 0; k < 3; k++) {
                mid[n] = sign ? -vs[k] : vs[k];
                want[n] = (uint16_t)(ws[k] | sign);
                n++;
            }
        }
    fedpi_f32_to_f16(mid, got, (size_t)n);
    fedpi_f32_to_f16_portable(mid, got_portable, (size_t)n);
    bad = 0;
    for (long i = 0; i < n; i++)
        if ((got[i] != want[i] || got_portable[i] != want[i]) && bad++ < 3)
            fprintf(stderr, "FAIL f32→f16 of %.9g: 0x%04x, portable 0x%04x, want 0x%04x\n", mid[i], got[i], got_portable[i], want[i]);
    char what[120];
    snprintf(what, sizeof what, "f32→f16 rounds to nearest even at all %ld midpoints and their neighbours", n);
    expect(what, bad == 0);

    /* a million random float bit patterns (an odd count: the vector loops' remainders run too) */
    const long r = 1000003;
    float *rf = floats(r);
    uint16_t *rh = malloc((size_t)r * 2), *rh_portable = malloc((size_t)r * 2);
    for (long i = 0; i < r; i++) rf[i] = from_bits32((uint32_t)next_u64());
    fedpi_f32_to_f16(rf, rh, (size_t)r);
    fedpi_f32_to_f16_portable(rf, rh_portable, (size_t)r);
    bad = 0;
    for (long i = 0; i < r; i++) {
        int ok = isnan(rf[i]) ? half_is_nan(rh[i]) && half_is_nan(rh_portable[i]) && (rh[i] & 0x8000) == (rh_portable[i] & 0x8000)
                              : rh[i] == rh_portable[i];
        if (!ok && bad++ < 3) fprintf(stderr, "FAIL f32→f16 of 0x%08x: 0x%04x, portable 0x%04x\n", bits32(rf[i]), rh[i], rh_portable[i]);
    }
    expect("f32→f16 of 1,000,003 random floats equals the portable path", bad == 0);
    free(all); free(back); free(back_portable); free(f); free(fp); free(mid); free(want); free(got); free(got_portable);
    free(rf); free(rh); free(rh_portable);
}

int main(void) {
#if defined(__aarch64__)
    const char *arch = "aarch64";
#elif defined(__x86_64__)
    const char *arch = "x86-64";
#else
    const char *arch = "other";
#endif
    /* x86-64 with AVX2: the checks run twice, the AVX2+FMA kernels and then the portable ones. Elsewhere
     * the portable kernels are the only ones (on aarch64 the vector code is NEON). */
    int passes = fedpi_kernels_avx2() ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        fedpi_kernels_prefer_portable(pass == 1);
        const char *kernels = fedpi_kernels_avx2() ? "AVX2+FMA" : "portable";
        int before = failures, checks_before = checks;
        check_gemm(0);
        check_gemm(1);
        check_sparse_gemm();
        check_winograd();
        check_conv_sparse();
        check_conv1ch();
        check_maxpool();
        check_relu_transpose_nonzeros();
        check_dropout();
        printf("%s, %s kernels: %d checks, %d failed\n", arch, kernels, checks - checks_before, failures - before);
    }
    int before = failures, checks_before = checks;
    check_f16();
    printf("%s, f16 conversion (%s): %d checks, %d failed\n", arch, fedpi_f16_hardware() ? "hardware" : "portable",
           checks - checks_before, failures - before);
    return failures ? 1 : 0;
}
