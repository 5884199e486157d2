/* Native kernels of the cpu engine (host/cpu_engine.py), compiled on first use.
 *
 * Same arithmetic as the numpy path, which stays the reference: the tests require both to
 * give identical integers. Tensors are NHWC int32 for one frame; weights and thresholds are
 * laid out as the plan stores them. run_program() executes a whole plan in one call, so a
 * frame costs no Python per layer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

static inline int popcount64(uint64_t v) { return __builtin_popcountll(v); }

/* Threshold a row of c accumulators: the count of thresholds each reaches, then FINN's
 * output bias. thr is [steps][c] (per-channel thresholds, transposed by the plan) so every
 * pass is a contiguous, branch-free loop the compiler vectorises. */
static void threshold_row(const int32_t *restrict acc, int32_t *restrict out, int c,
                          const int32_t *restrict thr, int steps, int bipolar, int act_val) {
    for (int ch = 0; ch < c; ch++) out[ch] = 0;
    for (int k = 0; k < steps; k++) {
        const int32_t *t = thr + (size_t)k * c;
        for (int ch = 0; ch < c; ch++) out[ch] += acc[ch] >= t[ch];
    }
    if (bipolar)
        for (int ch = 0; ch < c; ch++) out[ch] = 2 * out[ch] - 1;
    else
        for (int ch = 0; ch < c; ch++) out[ch] += act_val;
}

/* One pixel's c channels as bits, 8 per byte, little bit order. */
static void pack_pixel(const int32_t *restrict v, const int32_t *restrict in_thr, int c,
                       uint8_t *restrict dst) {
    int lo = 0;
#ifdef __AVX2__
    /* Eight comparisons and their sign bits gathered into one byte per instruction pair. */
    for (; lo + 8 <= c; lo += 8) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(v + lo));
        __m256i off = in_thr ? _mm256_cmpgt_epi32(_mm256_loadu_si256((const __m256i *)(in_thr + lo)), x)
                             : _mm256_cmpeq_epi32(x, _mm256_setzero_si256());
        dst[lo / 8] = (uint8_t)~_mm256_movemask_ps(_mm256_castsi256_ps(off));
    }
#endif
    for (; lo < c; lo += 8) {
        int cnt = c - lo < 8 ? c - lo : 8;
        uint8_t bits = 0;
        if (cnt == 8 && in_thr)
            for (int k = 0; k < 8; k++) bits |= (uint8_t)((v[lo + k] >= in_thr[lo + k]) << k);
        else if (cnt == 8)
            for (int k = 0; k < 8; k++) bits |= (uint8_t)((v[lo + k] != 0) << k);
        else
            for (int k = 0; k < cnt; k++)
                bits |= (uint8_t)((in_thr ? v[lo + k] >= in_thr[lo + k] : v[lo + k] != 0) << k);
        dst[lo / 8] = bits;
    }
}

/* Mismatching bits between one window row and every output channel's weight row. The word
 * count is a compile-time constant in the common cases so the loop unrolls. */
#define MISMATCH_CASE(NW)                                                            \
    case NW:                                                                         \
        for (int m = 0; m < mh; m++) {                                               \
            const uint64_t *wm = words + (size_t)m * NW;                             \
            int s = 0;                                                               \
            for (int k = 0; k < NW; k++) s += popcount64(row[k] ^ wm[k]);            \
            mism[m] = s;                                                             \
        }                                                                            \
        break;

static void mismatches(const uint64_t *restrict row, const uint64_t *restrict words, int mh,
                       int nwords, int32_t *restrict mism) {
    switch (nwords) {
        MISMATCH_CASE(1)
        MISMATCH_CASE(2)
        MISMATCH_CASE(3)
        MISMATCH_CASE(4)
        MISMATCH_CASE(5)
        MISMATCH_CASE(6)
        MISMATCH_CASE(8)
        default:
            for (int m = 0; m < mh; m++) {
                const uint64_t *wm = words + (size_t)m * nwords;
                int s = 0;
                for (int k = 0; k < nwords; k++) s += popcount64(row[k] ^ wm[k]);
                mism[m] = s;
            }
    }
}

/* Binary convolution by XNOR-popcount, one frame.
 *
 * x: [h, w, c] values; bit = (x >= in_thr[ch]) when in_thr is given (a fused binarising
 * threshold), else x != 0. Channels are packed 8 per byte, little bit order, and a window
 * is the concatenation of its taps' bytes in (kh, kw) order, zero-filled to whole 64-bit
 * words: exactly the rows the weights were packed into. Out-of-image taps stay 0 bits,
 * i.e. -1, FINN's padding value for binary streams.
 * words: [mh, nwords]. acc = k_bits - popcount(window ^ weights) (the matches).
 * thr: [steps][mh] or NULL for no activation. out: [oh, ow, mh].
 */
static int xnor_conv(const int32_t *x, int h, int w, int c, const int32_t *in_thr,
                     int kh, int kw, int sh, int sw, int dh, int dw, int pad_top, int pad_left,
                     int oh, int ow, const uint64_t *words, int mh, int nwords, int k_bits,
                     const int32_t *thr, int steps, int bipolar, int act_val, int32_t *out) {
    int cb = (c + 7) / 8;
    uint8_t *packed = malloc((size_t)h * w * cb);
    uint64_t *row = malloc((size_t)nwords * 8);
    int32_t *acc = malloc((size_t)mh * sizeof(int32_t) * 2);
    if (!packed || !row || !acc) { free(packed); free(row); free(acc); return -1; }
    int32_t *mism = acc + mh;
    for (int p = 0; p < h * w; p++) pack_pixel(x + (size_t)p * c, in_thr, c, packed + (size_t)p * cb);
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++) {
            uint8_t *bytes = (uint8_t *)row;
            memset(row, 0, (size_t)nwords * 8);
            for (int i = 0; i < kh; i++) {
                int y = oy * sh + i * dh - pad_top;
                if (y < 0 || y >= h) continue;
                int x0 = ox * sw - pad_left;
                uint8_t *dst_row = bytes + (size_t)i * kw * cb;
                if (dw == 1 && x0 >= 0 && x0 + kw <= w) {
                    /* The kernel row's pixels are adjacent in the packed image: one copy. */
                    memcpy(dst_row, packed + ((size_t)y * w + x0) * cb, (size_t)kw * cb);
                    continue;
                }
                for (int j = 0; j < kw; j++) {
                    int xx = x0 + j * dw;
                    if (xx < 0 || xx >= w) continue;
                    memcpy(dst_row + (size_t)j * cb, packed + ((size_t)y * w + xx) * cb,
                           (size_t)cb);
                }
            }
            mismatches(row, words, mh, nwords, mism);
            int32_t *o = out + ((size_t)oy * ow + ox) * mh;
            for (int m = 0; m < mh; m++) acc[m] = k_bits - mism[m];
            if (thr) threshold_row(acc, o, mh, thr, steps, bipolar, act_val);
            else memcpy(o, acc, (size_t)mh * sizeof(int32_t));
        }
    free(packed);
    free(row);
    free(acc);
    return 0;
}

/* Integer convolution (k-bit streams or 8-bit pixels times narrow integer weights), one
 * frame. weight: [kh * kw * c, mh] in (kh, kw, c) row order; out-of-image taps read 0
 * (FINN's FMPadding value). Accumulated in float32, which is exact because the caller
 * guarantees every partial sum stays below 2**24 in magnitude, and far faster than int32
 * multiplies. PIXELS output pixels are computed together from their im2col rows, so each
 * weight row loaded feeds PIXELS accumulator rows; output channels go in blocks of a
 * compile-time width (8..64) so those rows stay in vector registers. */
#define PIXELS 4 /* spelled out in int_block */

static inline __attribute__((always_inline)) void int_block(
        const float *restrict rows, int k_len, const float *restrict wblock, const int width,
        int32_t *restrict acc_out, int mh) {
    float acc[PIXELS][64];
    for (int q = 0; q < PIXELS; q++)
        for (int m = 0; m < width; m++) acc[q][m] = 0.0f;
    const float *r0 = rows, *r1 = rows + k_len, *r2 = rows + 2 * k_len, *r3 = rows + 3 * k_len;
    for (int k = 0; k < k_len; k++) {
        const float *wr = wblock + (size_t)k * width;
        /* The four pixels spelled out: the loop over channels is then the only one the
         * compiler can vectorise, which is the one that should be. */
        float v0 = r0[k], v1 = r1[k], v2 = r2[k], v3 = r3[k];
        for (int m = 0; m < width; m++) {
            float wm = wr[m];
            acc[0][m] += v0 * wm;
            acc[1][m] += v1 * wm;
            acc[2][m] += v2 * wm;
            acc[3][m] += v3 * wm;
        }
    }
    for (int q = 0; q < PIXELS; q++)
        for (int m = 0; m < width; m++) acc_out[(size_t)q * mh + m] = (int32_t)acc[q][m];
}

static int int_conv(const int32_t *x, int h, int w, int c, int kh, int kw, int sh, int sw,
                    int dh, int dw, int pad_top, int pad_left, int oh, int ow,
                    const int32_t *weight, int mh, const int32_t *thr, int steps, int bipolar,
                    int act_val, int32_t *out) {
    int k_len = kh * kw * c, n_pix = oh * ow, mh8 = (mh + 7) / 8 * 8;
    float *rows = malloc((size_t)PIXELS * k_len * sizeof(float));
    int32_t *acc = malloc((size_t)PIXELS * mh8 * sizeof(int32_t));
    /* Weights re-laid per block of up to 64 output channels: [block][k][width]. */
    float *wblocks = calloc((size_t)k_len * mh8, sizeof(float));
    if (!rows || !acc || !wblocks) { free(rows); free(acc); free(wblocks); return -1; }
    for (int m0 = 0; m0 < mh8; m0 += 64) {
        int width = mh8 - m0 < 64 ? mh8 - m0 : 64;
        for (int k = 0; k < k_len; k++)
            for (int m = 0; m < width && m0 + m < mh; m++)
                wblocks[(size_t)m0 * k_len + (size_t)k * width + m] =
                    (float)weight[(size_t)k * mh + m0 + m];
    }
    for (int p0 = 0; p0 < n_pix; p0 += PIXELS) {
        int n = n_pix - p0 < PIXELS ? n_pix - p0 : PIXELS;
        for (int q = 0; q < PIXELS; q++) {
            float *row = rows + (size_t)q * k_len;
            int p = p0 + (q < n ? q : 0), oy = p / ow, ox = p % ow, k = 0;
            for (int i = 0; i < kh; i++) {
                int y = oy * sh + i * dh - pad_top;
                for (int j = 0; j < kw; j++) {
                    int xx = ox * sw + j * dw - pad_left;
                    const int32_t *px = x + ((size_t)y * w + xx) * c;
                    int inside = y >= 0 && y < h && xx >= 0 && xx < w;
                    for (int ch = 0; ch < c; ch++) row[k++] = inside ? (float)px[ch] : 0.0f;
                }
            }
        }
        for (int m0 = 0; m0 < mh8; m0 += 64) {
            int width = mh8 - m0 < 64 ? mh8 - m0 : 64;
            const float *wb = wblocks + (size_t)m0 * k_len;
            int32_t *ab = acc + m0;
            switch (width) {
                case 8: int_block(rows, k_len, wb, 8, ab, mh8); break;
                case 16: int_block(rows, k_len, wb, 16, ab, mh8); break;
                case 24: int_block(rows, k_len, wb, 24, ab, mh8); break;
                case 32: int_block(rows, k_len, wb, 32, ab, mh8); break;
                case 40: int_block(rows, k_len, wb, 40, ab, mh8); break;
                case 48: int_block(rows, k_len, wb, 48, ab, mh8); break;
                case 56: int_block(rows, k_len, wb, 56, ab, mh8); break;
                default: int_block(rows, k_len, wb, 64, ab, mh8); break;
            }
        }
        for (int q = 0; q < n; q++) {
            int32_t *o = out + (size_t)(p0 + q) * mh;
            if (thr) threshold_row(acc + (size_t)q * mh8, o, mh, thr, steps, bipolar, act_val);
            else memcpy(o, acc + (size_t)q * mh8, (size_t)mh * sizeof(int32_t));
        }
    }
    free(rows);
    free(acc);
    free(wblocks);
    return 0;
}

/* ---------------------------------------------------------------- whole-plan execution */

enum { OP_XNOR = 1, OP_INT = 2, OP_THRESHOLD = 3, OP_ADD = 4, OP_SUB = 5, OP_MUL = 6,
       OP_CONCAT = 7, OP_UPSAMPLE = 8, OP_MAXPOOL = 9 };

/* Every instruction is RECORD int32s; field meanings per opcode are written by
 * cpu_engine._NativeProgram, which is the only producer. bufs[] are the frame's tensors,
 * params[] the plan's weight and threshold arrays (index -1: none); thresholds come
 * expanded to [steps][channels]. */
#define RECORD 32

static const void *param(const void *const *params, int32_t i) { return i < 0 ? NULL : params[i]; }

int run_program(const int32_t *prog, int n_instr, int32_t *const *bufs,
                const void *const *params) {
    for (int k = 0; k < n_instr; k++) {
        const int32_t *r = prog + (size_t)k * RECORD;
        int status = 0;
        switch (r[0]) {
            case OP_XNOR:  /* in out h w c oh ow kh kw sh sw dh dw pt pl mh nwords kbits steps
                              - bipolar act words in_thr thr */
                status = xnor_conv(bufs[r[1]], r[3], r[4], r[5], param(params, r[24]),
                                   r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15],
                                   r[6], r[7], param(params, r[23]), r[16], r[17], r[18],
                                   param(params, r[25]), r[19], r[21], r[22], bufs[r[2]]);
                break;
            case OP_INT:  /* in out h w c oh ow kh kw sh sw dh dw pt pl mh - - steps -
                             bipolar act weight - thr */
                status = int_conv(bufs[r[1]], r[3], r[4], r[5], r[8], r[9], r[10], r[11],
                                  r[12], r[13], r[14], r[15], r[6], r[7], param(params, r[23]),
                                  r[16], param(params, r[25]), r[19], r[21], r[22], bufs[r[2]]);
                break;
            case OP_THRESHOLD: {  /* in out pixels c steps - bipolar act thr */
                const int32_t *x = bufs[r[1]], *t = param(params, r[9]);
                int32_t *o = bufs[r[2]];
                int c = r[4];
                for (int p = 0; p < r[3]; p++)
                    threshold_row(x + (size_t)p * c, o + (size_t)p * c, c, t, r[5], r[7], r[8]);
                break;
            }
            case OP_ADD: case OP_SUB: case OP_MUL: {
                /* a b out size a_is_param a_len b_is_param b_len: a constant operand (a
                 * parameter) repeats over the leading axes, so element i reads [i % len] */
                const int32_t *a = r[5] ? param(params, r[1]) : bufs[r[1]];
                const int32_t *b = r[7] ? param(params, r[2]) : bufs[r[2]];
                int32_t *o = bufs[r[3]];
                int size = r[4], la = r[6], lb = r[8];
                for (int i = 0; i < size; i++) {
                    int32_t u = a[la == size ? i : i % la], v = b[lb == size ? i : i % lb];
                    o[i] = r[0] == OP_ADD ? u + v : r[0] == OP_SUB ? u - v : u * v;
                }
                break;
            }
            case OP_CONCAT: {  /* out pixels n_in (in, c) x n_in */
                int32_t *o = bufs[r[1]];
                int pixels = r[2], n_in = r[3], total = 0;
                for (int q = 0; q < n_in; q++) total += r[5 + 2 * q];
                for (int p = 0; p < pixels; p++) {
                    int32_t *dst = o + (size_t)p * total;
                    for (int q = 0; q < n_in; q++) {
                        int c = r[5 + 2 * q];
                        memcpy(dst, bufs[r[4 + 2 * q]] + (size_t)p * c, (size_t)c * 4);
                        dst += c;
                    }
                }
                break;
            }
            case OP_UPSAMPLE: {  /* in out h w c sh sw */
                const int32_t *x = bufs[r[1]];
                int32_t *o = bufs[r[2]];
                int h = r[3], w = r[4], c = r[5], sh = r[6], sw = r[7], ow = w * sw;
                for (int y = 0; y < h * sh; y++)
                    for (int xx = 0; xx < ow; xx++)
                        memcpy(o + ((size_t)y * ow + xx) * c,
                               x + ((size_t)(y / sh) * w + xx / sw) * c, (size_t)c * 4);
                break;
            }
            case OP_MAXPOOL: {  /* in out h w c oh ow kh kw sh sw pt pl pad_value */
                const int32_t *x = bufs[r[1]];
                int32_t *o = bufs[r[2]];
                int h = r[3], w = r[4], c = r[5];
                for (int oy = 0; oy < r[6]; oy++)
                    for (int ox = 0; ox < r[7]; ox++) {
                        int32_t *restrict dst = o + ((size_t)oy * r[7] + ox) * c;
                        for (int ch = 0; ch < c; ch++) dst[ch] = INT32_MIN;
                        for (int i = 0; i < r[8]; i++)
                            for (int j = 0; j < r[9]; j++) {
                                int y = oy * r[10] + i - r[12], xx = ox * r[11] + j - r[13];
                                if (y < 0 || y >= h || xx < 0 || xx >= w) {
                                    for (int ch = 0; ch < c; ch++)
                                        dst[ch] = dst[ch] > r[14] ? dst[ch] : r[14];
                                    continue;
                                }
                                const int32_t *restrict src = x + ((size_t)y * w + xx) * c;
                                for (int ch = 0; ch < c; ch++)
                                    dst[ch] = dst[ch] > src[ch] ? dst[ch] : src[ch];
                            }
                    }
                break;
            }
            default:
                return -2;
        }
        if (status != 0) return status;
    }
    return 0;
}
