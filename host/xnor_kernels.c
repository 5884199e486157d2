/* Native kernels of the cpu engine (host/cpu_engine.py), compiled on first use.
 *
 * Same arithmetic as the numpy path, which stays the reference: the tests require both to
 * give identical integers. Tensors are NHWC int32, weights laid out as the plan stores them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline int popcount64(uint64_t v) { return __builtin_popcountll(v); }

/* Threshold one accumulator: count of thresholds reached, then FINN's output bias.
 * The plan stores each channel's thresholds sorted, so counting stops at the first miss. */
static inline int32_t threshold(int32_t acc, const int32_t *t, int steps, int bipolar,
                                int act_val) {
    int32_t y = 0;
    while (y < steps && acc >= t[y]) y++;
    return bipolar ? 2 * y - 1 : y + act_val;
}

/* Binary convolution by XNOR-popcount.
 *
 * x: [n, h, w, c] values; bit = (x >= in_thr[ch]) when in_thr is given (a fused binarising
 * threshold), else x itself (0/1). Channels are packed 8 per byte, little bit order, and a
 * window is the concatenation of its taps' bytes in (kh, kw) order, zero-filled to whole
 * 64-bit words: exactly the rows the weights were packed into. Out-of-image taps stay 0
 * bits, i.e. -1, FINN's padding value for binary streams.
 * words: [mh, nwords]. acc = k_bits - popcount(window ^ weights) (the matches).
 * thr: [mh or 1, steps] or NULL for no activation. out: [n, oh, ow, mh].
 */
int xnor_conv(const int32_t *x, int n, int h, int w, int c, const int32_t *in_thr,
              int kh, int kw, int sh, int sw, int dh, int dw, int pad_top, int pad_left,
              int oh, int ow, const uint64_t *words, int mh, int nwords, int k_bits,
              const int32_t *thr, int steps, int thr_per_channel, int bipolar, int act_val,
              int32_t *out) {
    int cb = (c + 7) / 8;
    uint8_t *packed = calloc((size_t)h * w * cb, 1);
    uint64_t *row = malloc((size_t)nwords * 8);
    if (!packed || !row) { free(packed); free(row); return -1; }
    for (int b = 0; b < n; b++) {
        const int32_t *xb = x + (size_t)b * h * w * c;
        for (int p = 0; p < h * w; p++) {
            const int32_t *v = xb + (size_t)p * c;
            for (int byte = 0; byte < cb; byte++) {
                int lo = byte * 8, hi = lo + 8 < c ? lo + 8 : c;
                uint8_t bits = 0;
                if (in_thr)
                    for (int ch = lo; ch < hi; ch++) bits |= (uint8_t)((v[ch] >= in_thr[ch]) << (ch - lo));
                else
                    for (int ch = lo; ch < hi; ch++) bits |= (uint8_t)((v[ch] != 0) << (ch - lo));
                packed[(size_t)p * cb + byte] = bits;
            }
        }
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                uint8_t *bytes = (uint8_t *)row;
                memset(row, 0, (size_t)nwords * 8);
                for (int i = 0; i < kh; i++) {
                    int y = oy * sh + i * dh - pad_top;
                    for (int j = 0; j < kw; j++) {
                        int xx = ox * sw + j * dw - pad_left;
                        if (y >= 0 && y < h && xx >= 0 && xx < w)
                            memcpy(bytes + (size_t)(i * kw + j) * cb,
                                   packed + ((size_t)y * w + xx) * cb, cb);
                    }
                }
                int32_t *o = out + (((size_t)b * oh + oy) * ow + ox) * mh;
                for (int m = 0; m < mh; m++) {
                    const uint64_t *wm = words + (size_t)m * nwords;
                    int mismatches = 0;
                    for (int k = 0; k < nwords; k++) mismatches += popcount64(row[k] ^ wm[k]);
                    int32_t acc = k_bits - mismatches;
                    o[m] = thr ? threshold(acc, thr + (thr_per_channel ? m * steps : 0), steps,
                                           bipolar, act_val)
                               : acc;
                }
            }
    }
    free(packed);
    free(row);
    return 0;
}

/* Integer convolution (k-bit streams or 8-bit pixels times narrow integer weights).
 * weight: [kh * kw * c, mh] in (kh, kw, c) row order; out-of-image taps read 0 (FINN's
 * FMPadding value). The caller guarantees every partial sum fits int32, so the inner loop
 * over output channels vectorises. */
int int_conv(const int32_t *x, int n, int h, int w, int c, int kh, int kw, int sh, int sw,
             int dh, int dw, int pad_top, int pad_left, int oh, int ow,
             const int32_t *weight, int mh, const int32_t *thr, int steps, int thr_per_channel,
             int bipolar, int act_val, int32_t *out) {
    int32_t *restrict acc = malloc((size_t)mh * sizeof(int32_t));
    if (!acc) return -1;
    for (int b = 0; b < n; b++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                memset(acc, 0, (size_t)mh * sizeof(int32_t));
                for (int i = 0; i < kh; i++) {
                    int y = oy * sh + i * dh - pad_top;
                    if (y < 0 || y >= h) continue;
                    for (int j = 0; j < kw; j++) {
                        int xx = ox * sw + j * dw - pad_left;
                        if (xx < 0 || xx >= w) continue;
                        const int32_t *px = x + (((size_t)b * h + y) * w + xx) * c;
                        const int32_t *wt = weight + (size_t)(i * kw + j) * c * mh;
                        for (int ch = 0; ch < c; ch++) {
                            int32_t v = px[ch];
                            const int32_t *restrict wr = wt + (size_t)ch * mh;
                            for (int m = 0; m < mh; m++) acc[m] += v * wr[m];
                        }
                    }
                }
                int32_t *o = out + (((size_t)b * oh + oy) * ow + ox) * mh;
                if (thr)
                    for (int m = 0; m < mh; m++)
                        o[m] = threshold(acc[m], thr + (thr_per_channel ? m * steps : 0), steps,
                                         bipolar, act_val);
                else
                    memcpy(o, acc, (size_t)mh * sizeof(int32_t));
            }
    free(acc);
    return 0;
}
