/* Convolution of one-channel images (mnist-cnn's conv1: 1 → 32 channels, 3×3) computed directly,
 * included twice by kernels.c like the GEMM. im2col would give a GEMM only k = 9 deep, which is all
 * packing and no arithmetic. Valid padding, stride 1, NHWC; the weight is tap-major, wt[tap][o] with
 * tap = ky·ks + kx. Eight output channels per vector, the last oc % 8 one at a time. The bodies are
 * inlined with ks = 3 spelled out, so the 3×3 loops unroll and the nine gradient sums stay in registers. */

static inline __attribute__((always_inline)) void KS(conv1ch_forward_body)(
    const float *x, long n, long h, long w, const long ks, long oc, const float *wt, const float *bias, float *y) {
    long oh = h - ks + 1, ow = w - ks + 1, ov = oc - oc % 8;
    for (long b = 0; b < n; b++) {
        for (long oy = 0; oy < oh; oy++) {
            for (long ox = 0; ox < ow; ox++) {
                const float *corner = x + (b * h + oy) * w + ox;
                float *out = y + ((b * oh + oy) * ow + ox) * oc;
                for (long o = 0; o < ov; o += 8) {
                    v8 acc = *(const v8u *)(bias + o);
                    for (long ky = 0; ky < ks; ky++) {
                        for (long kx = 0; kx < ks; kx++) {
                            float s = corner[ky * w + kx];
                            v8 sv = {s, s, s, s, s, s, s, s};
                            acc = acc + sv * *(const v8u *)(wt + (ky * ks + kx) * oc + o);
                        }
                    }
                    *(v8u *)(out + o) = acc;
                }
                for (long o = ov; o < oc; o++) {
                    float acc = bias[o];
                    for (long ky = 0; ky < ks; ky++)
                        for (long kx = 0; kx < ks; kx++) acc += corner[ky * w + kx] * wt[(ky * ks + kx) * oc + o];
                    out[o] = acc;
                }
            }
        }
    }
}

static void KS(conv1ch_forward)(const float *x, long n, long h, long w, long ks, long oc, const float *wt, const float *bias, float *y) {
    if (ks == 3) KS(conv1ch_forward_body)(x, n, h, w, 3, oc, wt, bias, y);
    else KS(conv1ch_forward_body)(x, n, h, w, ks, oc, wt, bias, y);
}

/* at most 7×7 taps (the caller checks) */
static inline __attribute__((always_inline)) void KS(conv1ch_gradient_body)(
    const float *x, const float *dy, long n, long h, long w, const long ks, long oc, float *dwt, float *db) {
    long oh = h - ks + 1, ow = w - ks + 1, ov = oc - oc % 8, taps = ks * ks;
    for (long b = 0; b < n; b++) {
        const float *image = x + b * h * w, *grad = dy + b * oh * ow * oc;
        for (long o = 0; o < ov; o += 8) {
            v8 acc[49], bias = *(const v8u *)(db + o);
            for (long t = 0; t < taps; t++) acc[t] = *(const v8u *)(dwt + t * oc + o);
            for (long oy = 0; oy < oh; oy++) {
                for (long ox = 0; ox < ow; ox++) {
                    v8 g = *(const v8u *)(grad + (oy * ow + ox) * oc + o);
                    const float *corner = image + oy * w + ox;
                    bias = bias + g;
                    for (long ky = 0; ky < ks; ky++) {
                        for (long kx = 0; kx < ks; kx++) {
                            float s = corner[ky * w + kx];
                            v8 sv = {s, s, s, s, s, s, s, s};
                            acc[ky * ks + kx] = acc[ky * ks + kx] + sv * g;
                        }
                    }
                }
            }
            for (long t = 0; t < taps; t++) *(v8u *)(dwt + t * oc + o) = acc[t];
            *(v8u *)(db + o) = bias;
        }
        for (long o = ov; o < oc; o++) {
            for (long oy = 0; oy < oh; oy++) {
                for (long ox = 0; ox < ow; ox++) {
                    float g = grad[(oy * ow + ox) * oc + o];
                    db[o] += g;
                    for (long ky = 0; ky < ks; ky++)
                        for (long kx = 0; kx < ks; kx++) dwt[(ky * ks + kx) * oc + o] += image[(oy + ky) * w + ox + kx] * g;
                }
            }
        }
    }
}

static void KS(conv1ch_gradient)(const float *x, const float *dy, long n, long h, long w, long ks, long oc, float *dwt, float *db) {
    if (ks == 3) KS(conv1ch_gradient_body)(x, dy, n, h, w, 3, oc, dwt, db);
    else KS(conv1ch_gradient_body)(x, dy, n, h, w, ks, oc, dwt, db);
}
