/* Native kernels of the cpu engine (host/cpu_engine.py), compiled on first use.
 *
 * Same arithmetic as the numpy path, which stays the reference: the tests require both to
 * give identical integers. Tensors are NHWC int32 for one frame. run_program() executes a
 * whole plan in one call, so a frame costs no Python per layer.
 *
 * Convolutions run on a zero-bordered copy of their input (no bounds test in the inner
 * loops) in blocks of BLOCK output channels: the block's accumulators live in one AVX-512
 * register, two AVX2 or four NEON ones, and the thresholds that follow are applied to the
 * block while it is still there. The plan lays weights and thresholds out per block
 * (_NativeProgram in cpu_engine.py), output channels padded to a multiple of BLOCK.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON) || defined(__ARM_NEON__)
#include <arm_neon.h>
#endif

#define BLOCK 16 /* _BLOCK in cpu_engine.py */

/* A block of channels as one vector (GCC/Clang vector extensions): one AVX-512 register, two
 * AVX2 or four NEON ones, or plain scalar code where the CPU has none. */
typedef int32_t vint __attribute__((vector_size(BLOCK * 4)));
typedef float vfloat __attribute__((vector_size(BLOCK * 4)));

static inline vint load_i(const int32_t *p) { vint v; memcpy(&v, p, sizeof v); return v; }
static inline vfloat load_f(const float *p) { vfloat v; memcpy(&v, p, sizeof v); return v; }

static inline int round_block(int n) { return (n + BLOCK - 1) / BLOCK * BLOCK; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Grow-only scratch memory, one set per thread (ctypes calls release the GIL), so a frame
 * allocates nothing once the first one has run. */
static void *scratch(int slot, size_t bytes) {
    static _Thread_local void *ptr[3];
    static _Thread_local size_t size[3];
    if (bytes > size[slot]) {
        void *p = realloc(ptr[slot], bytes);
        if (!p) return NULL;
        ptr[slot] = p;
        size[slot] = bytes;
    }
    return ptr[slot];
}

/* The first n <= BLOCK values at p as a block, the other lanes 0: a short block at the end
 * of a tensor must not be read past it. */
static inline vint load_part(const int32_t *p, int n) {
    if (n == BLOCK) return load_i(p);
    int32_t part[BLOCK] = {0};
    memcpy(part, p, (size_t)n * sizeof(int32_t));
    return load_i(part);
}

/* The first n <= BLOCK lanes of y to out. */
static inline void store_block(vint y, int32_t *restrict out, int n) {
    if (n == BLOCK) {
        memcpy(out, &y, sizeof y);
    } else if (n == BLOCK / 2) {  /* eight output channels, a common width */
        memcpy(out, &y, sizeof y / 2);
    } else {  /* through a copy, so that y itself never needs an address (and stays a register) */
        int32_t part[BLOCK];
        memcpy(part, &y, sizeof y);
        memcpy(out, part, (size_t)n * sizeof(int32_t));
    }
}

/* A block's accumulators -> outputs: the count of thresholds each reaches, then FINN's
 * output bias (thr NULL: the accumulators themselves). thr is [steps][stride] from the
 * block's first channel; the first n <= BLOCK channels are written. */
static inline void finish_block(vint acc, int32_t *restrict out, int n,
                                const int32_t *restrict thr, int stride, int steps,
                                int bipolar, int act_val) {
    vint y = acc;
    if (thr) {
        y = (vint){0};
        /* The usual step counts (1-, 2-, 3- and 4-bit outputs) as constants: unrolled. */
#if defined(__AVX512F__) && BLOCK == 16
        /* A comparison into a mask and an add under it: two instructions a step, not three. */
#define STEPS(S)                                                                           \
    for (int k = 0; k < (S); k++)                                                          \
        y = (vint)_mm512_mask_add_epi32(                                                   \
            (__m512i)y, _mm512_cmpge_epi32_mask((__m512i)acc,                              \
                                                _mm512_loadu_si512(thr + (size_t)k * stride)), \
            (__m512i)y, _mm512_set1_epi32(1))
#else
#define STEPS(S) for (int k = 0; k < (S); k++) y -= acc >= load_i(thr + (size_t)k * stride)
#endif
        switch (steps) {  /* (a true vector comparison is -1) */
            case 1: STEPS(1); break;
            case 3: STEPS(3); break;
            case 7: STEPS(7); break;
            case 15: STEPS(15); break;
            default: STEPS(steps);
        }
#undef STEPS
        y = bipolar ? 2 * y - 1 : y + act_val;
    }
    store_block(y, out, n);
}

/* Thresholds shared by every channel whose span is under 16, as a table of the outputs for
 * the sums lo .. lo + 15 (one below the lowest threshold up to past the highest, so a clamped
 * index is exact): one lookup in place of a comparison per threshold. */
static inline void finish_table(vint acc, int32_t *restrict out, int n,
                                const int32_t *restrict table, int lo) {
    vint idx = acc - lo, over;
    idx &= idx > 0;                        /* a true vector comparison is all ones */
    over = idx > 15;
    idx = (idx & ~over) | (15 & over);
#if defined(__AVX512F__) && BLOCK == 16
    vint y = (vint)_mm512_permutexvar_epi32((__m512i)idx, _mm512_loadu_si512(table));
#else
    vint y;
    for (int m = 0; m < BLOCK; m++) y[m] = table[idx[m]];
#endif
    store_block(y, out, n);
}

/* ------------------------------------------------------------------ binary convolution */

/* One pixel's c channels as bits in nch 32-bit words, little bit order, unused bits 0:
 * bit = (v >= in_thr[ch]) with a fused binarising threshold, else v != 0. */
static void pack_pixel(const int32_t *restrict v, const int32_t *restrict in_thr, int c,
                       int nch, uint32_t *restrict dst) {
    for (int q = 0; q < nch; q++) dst[q] = 0;
    int lo = 0;
#ifdef __AVX512F__
    /* Sixteen comparisons straight into a 16-bit mask. */
    for (; lo + 16 <= c; lo += 16) {
        __m512i x = _mm512_loadu_si512(v + lo);
        uint32_t bits = in_thr ? _mm512_cmpge_epi32_mask(x, _mm512_loadu_si512(in_thr + lo))
                               : _mm512_test_epi32_mask(x, x);
        dst[lo / 32] |= bits << (lo % 32);
    }
#endif
#ifdef __AVX2__
    /* Eight comparisons and their sign bits gathered into one byte per instruction pair. */
    for (; lo + 8 <= c; lo += 8) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(v + lo));
        __m256i off = in_thr ? _mm256_cmpgt_epi32(_mm256_loadu_si256((const __m256i *)(in_thr + lo)), x)
                             : _mm256_cmpeq_epi32(x, _mm256_setzero_si256());
        uint32_t bits = (uint8_t)~_mm256_movemask_ps(_mm256_castsi256_ps(off));
        dst[lo / 32] |= bits << (lo % 32);
    }
#endif
    for (; lo < c; lo++)
        dst[lo / 32] |= (uint32_t)(in_thr ? v[lo] >= in_thr[lo] : v[lo] != 0) << (lo % 32);
}

/* The mismatching bits of a window (lo[k], k < n) against a block of output channels'
 * weights (w[k * stride + m], m < BLOCK): sum over k of popcount(lo[k] ^ w[...]). With
 * pair set, lanes BLOCK/2.. take a second window, hi: two neighbouring pixels of a layer
 * with BLOCK/2 output channels (whose weights the plan repeats in both halves) in one pass. */
static inline __attribute__((always_inline)) vint mismatch_block(
        const uint32_t *restrict lo, const uint32_t *restrict hi, const int pair, int n,
        const uint32_t *restrict w, int stride) {
    if (!pair) hi = lo;
#if defined(__AVX512VPOPCNTDQ__) && BLOCK == 16
    __m512i sum = _mm512_setzero_si512();
    for (int k = 0; k < n; k++) {
        __m512i v = _mm512_set1_epi32((int)lo[k]);
        if (pair) v = _mm512_mask_set1_epi32(v, 0xff00, (int)hi[k]);
        __m512i x = _mm512_xor_si512(v, _mm512_loadu_si512(w + (size_t)k * stride));
        sum = _mm512_add_epi32(sum, _mm512_popcnt_epi32(x));
    }
    return (vint)sum;
#elif defined(__AVX2__) && BLOCK == 16
    /* Bytes counted by a 16-entry table (vpshufb) and summed per byte; a byte holds at most
     * 8 per word, so the sums go to 32-bit lanes every 31 words. */
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                           0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i nibble = _mm256_set1_epi8(0x0f), ones8 = _mm256_set1_epi8(1),
                  ones16 = _mm256_set1_epi16(1);
    const uint32_t *win[2] = {lo, hi};
    __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int k0 = 0; k0 < n; k0 += 31) {
        __m256i bytes[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
        int k1 = n - k0 < 31 ? n : k0 + 31;
        for (int k = k0; k < k1; k++)
            for (int h = 0; h < 2; h++) {
                __m256i x = _mm256_xor_si256(
                    _mm256_set1_epi32((int)win[h][k]),
                    _mm256_loadu_si256((const __m256i *)(w + (size_t)k * stride + 8 * h)));
                bytes[h] = _mm256_add_epi8(bytes[h], _mm256_add_epi8(
                    _mm256_shuffle_epi8(table, _mm256_and_si256(x, nibble)),
                    _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble))));
            }
        for (int h = 0; h < 2; h++)
            sum[h] = _mm256_add_epi32(sum[h], _mm256_madd_epi16(
                                                  _mm256_maddubs_epi16(bytes[h], ones8), ones16));
    }
    vint out;
    memcpy(&out, sum, sizeof out);
    return out;
#elif defined(__ARM_NEON) || defined(__ARM_NEON__)
    /* vcnt counts per byte; pairwise widening adds turn four bytes into a 32-bit lane. */
    uint32x4_t sum[BLOCK / 4];
    for (int q = 0; q < BLOCK / 4; q++) sum[q] = vdupq_n_u32(0);
    for (int k0 = 0; k0 < n; k0 += 31) {
        uint8x16_t b[BLOCK / 4];
        for (int q = 0; q < BLOCK / 4; q++) b[q] = vdupq_n_u8(0);
        int k1 = n - k0 < 31 ? n : k0 + 31;
        for (int k = k0; k < k1; k++) {
            const uint32_t *wk = w + (size_t)k * stride;
            for (int q = 0; q < BLOCK / 4; q++) {
                uint32x4_t v = vdupq_n_u32(q < BLOCK / 8 ? lo[k] : hi[k]);
                b[q] = vaddq_u8(b[q], vcntq_u8(vreinterpretq_u8_u32(
                                          veorq_u32(v, vld1q_u32(wk + 4 * q)))));
            }
        }
        for (int q = 0; q < BLOCK / 4; q++)
            sum[q] = vaddq_u32(sum[q], vpaddlq_u16(vpaddlq_u8(b[q])));
    }
    vint out;
    memcpy(&out, sum, sizeof out);
    return out;
#else
    int32_t sum[BLOCK] = {0};
    for (int k = 0; k < n; k++) {
        const uint32_t *wk = w + (size_t)k * stride;
        for (int m = 0; m < BLOCK; m++)
            sum[m] += __builtin_popcount((m < BLOCK / 2 ? lo[k] : hi[k]) ^ wk[m]);
    }
    return load_i(sum);
#endif
}

/* Binary convolution by XNOR-popcount, one frame.
 *
 * x: [h, w, c] values, binarised while packed into nch = ceil(c / 32) words per pixel
 * (pack_pixel). Out-of-image taps are 0 bits, i.e. -1, FINN's padding value for binary
 * streams. words: [kh * kw * nch][round_block(mh)] 32-bit weight words, the channels of one
 * tap word in a row. acc = k_bits - popcount(window ^ weights) (the matches), then the
 * thresholds thr ([steps][round_block(mh)], or NULL for none). out: [oh, ow, mh]. A layer of
 * BLOCK/2 channels has its weights and thresholds twice, one copy per pixel of a pair.
 */
static inline __attribute__((always_inline)) int xnor_conv_body(
                     const int32_t *x, int h, int w, int c, const int32_t *in_thr,
                     int kh, int kw, int sh, int sw, int dh, int dw, int pad_top, int pad_left,
                     int oh, int ow, const uint32_t *words, int mh, int k_bits,
                     const int32_t *thr, int steps, int bipolar, int act_val, int32_t *out) {
    int nch = (c + 31) / 32, mhp = round_block(mh), n_win = kh * kw * nch;
    int hp = imax(h + pad_top, (oh - 1) * sh + (kh - 1) * dh + 1);
    int wp = imax(w + pad_left, (ow - 1) * sw + (kw - 1) * dw + 1);
    uint32_t *img = scratch(0, (size_t)hp * wp * nch * sizeof(uint32_t));
    uint32_t *win = scratch(1, 2 * (size_t)n_win * sizeof(uint32_t));
    if (!img || !win) return -1;
    for (int y = 0; y < hp; y++)
        for (int xx = 0; xx < wp; xx++) {
            uint32_t *dst = img + ((size_t)y * wp + xx) * nch;
            int sy = y - pad_top, sx = xx - pad_left;
            if (sy >= 0 && sy < h && sx >= 0 && sx < w)
                pack_pixel(x + ((size_t)sy * w + sx) * c, in_thr, c, nch, dst);
            else
                memset(dst, 0, (size_t)nch * sizeof(uint32_t));
        }
    /* A layer of BLOCK/2 output channels takes two pixels per pass (mismatch_block). */
    const int pair = 2 * mh == BLOCK, per_pass = pair ? 2 : 1;
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox += per_pass) {
            int n_px = ow - ox < per_pass ? ow - ox : per_pass;
            uint32_t *wd = win;
            for (int px = 0; px < per_pass; px++)  /* a repeated last pixel fills a pair */
                for (int i = 0; i < kh; i++) {
                    const uint32_t *src =
                        img + ((size_t)(oy * sh + i * dh) * wp + (ox + px % n_px) * sw) * nch;
                    for (int j = 0; j < kw; j++)  /* a loop, not memcpy: a few words each */
                        for (int q = 0; q < nch; q++) *wd++ = src[(size_t)j * dw * nch + q];
                }
            int32_t *o = out + ((size_t)oy * ow + ox) * mh;
            for (int m0 = 0; m0 < mh; m0 += BLOCK) {
                vint acc = k_bits - mismatch_block(win, win + n_win, pair, n_win, words + m0, mhp);
                finish_block(acc, o + m0, pair ? n_px * mh : (mh - m0 < BLOCK ? mh - m0 : BLOCK),
                             thr ? thr + m0 : NULL, mhp, steps, bipolar, act_val);
            }
        }
    return 0;
}

/* ----------------------------------------------------------------- integer convolution */

/* Integer convolution (k-bit streams or 8-bit pixels times narrow integer weights), one
 * frame, direct (no im2col). weight: [kh * kw * c][round_block(mh)] as float32, rows in
 * (kh, kw, c) order; out-of-image taps read 0 (FINN's FMPadding value). Accumulated in
 * float32, which is exact because the caller guarantees every partial sum stays below 2**24
 * in magnitude, and far faster than int32 multiplies. PIXELS neighbouring output pixels
 * share each weight row loaded. */
#if defined(__AVX512F__)
#define PIXELS 8 /* eight accumulator registers keep both FMA units busy */
#else
#define PIXELS 4 /* as many as fit the 16 AVX2 registers beside the operands */
#endif

static inline __attribute__((always_inline)) int int_conv_body(
                    const int32_t *x, int h, int w, int c, int kh, int kw, int sh, int sw,
                    int dh, int dw, int pad_top, int pad_left, int oh, int ow,
                    const float *weight, int mh, const int32_t *thr, int steps, int bipolar,
                    int act_val, int32_t *out) {
    int mhp = round_block(mh), owp = (ow + PIXELS - 1) / PIXELS * PIXELS;
    int hp = imax(h + pad_top, (oh - 1) * sh + (kh - 1) * dh + 1);
    int wp = imax(w + pad_left, (owp - 1) * sw + (kw - 1) * dw + 1);
    float *img = scratch(0, (size_t)hp * wp * c * sizeof(float));
    if (!img) return -1;
    size_t left = (size_t)pad_left * c, row = (size_t)w * c, right = (size_t)wp * c - left - row;
    for (int y = 0; y < hp; y++) {
        /* Whole rows: a border, the image row converted in one vectorised loop, a border. */
        float *dst = img + (size_t)y * wp * c;
        int sy = y - pad_top;
        if (sy < 0 || sy >= h) {
            memset(dst, 0, (size_t)wp * c * sizeof(float));
            continue;
        }
        const int32_t *src = x + (size_t)sy * row;
        memset(dst, 0, left * sizeof(float));
        for (size_t i = 0; i < row; i++) dst[left + i] = (float)src[i];
        memset(dst + left + row, 0, right * sizeof(float));
    }
    size_t step = (size_t)sw * c; /* from one output pixel's window to the next one's */
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < owp; ox += PIXELS)
            for (int m0 = 0; m0 < mh; m0 += BLOCK) {
                vfloat acc[PIXELS] = {{0}};
                for (int i = 0; i < kh; i++)
                    for (int j = 0; j < kw; j++) {
                        const float *p = img + ((size_t)(oy * sh + i * dh) * wp + ox * sw +
                                                j * dw) * c;
                        const float *wr = weight + (size_t)(i * kw + j) * c * mhp + m0;
                        for (int ch = 0; ch < c; ch++, wr += mhp) {
                            vfloat wv = load_f(wr);
                            for (int q = 0; q < PIXELS; q++) acc[q] += p[q * step + ch] * wv;
                        }
                    }
                for (int q = 0; q < PIXELS && ox + q < ow; q++)
                    finish_block(__builtin_convertvector(acc[q], vint),
                                 out + ((size_t)oy * ow + ox + q) * mh + m0,
                                 mh - m0 < BLOCK ? mh - m0 : BLOCK, thr ? thr + m0 : NULL,
                                 mhp, steps, bipolar, act_val);
            }
    return 0;
}

#if defined(__AVX512VNNI__) && BLOCK == 16
/* The same convolution for 8-bit values and 8-bit weights on VNNI's vpdpbusd: four
 * unsigned-by-signed byte products summed into each 32-bit lane per instruction, exact
 * (no saturation), a quarter of the float path's instructions. The image is kept as bytes,
 * so a kernel row of kw * c values is contiguous and read four bytes at a time; w8 is
 * [kh][ceil(kw * c / 4)][round_block(mh)][4], its bytes past kw * c zero (they meet the next
 * pixel's values or a row's slack). Returns 1, leaving the work to int_conv, when the
 * values fit neither 0..255 nor -128..127. Dilation along rows must be 1. */
static inline __attribute__((always_inline)) int int_conv_u8_body(
        const int32_t *x, int h, int w, int c, int kh, int kw, int sh, int sw, int dh,
        int pad_top, int pad_left, int oh, int ow, const int8_t *w8, int mh,
        const int32_t *thr, int steps, int bipolar, int act_val, int32_t *out) {
    int mhp = round_block(mh), groups = (kw * c + 3) / 4;
    int hp = imax(h + pad_top, (oh - 1) * sh + (kh - 1) * dh + 1);
    int wp = imax(w + pad_left, (ow - 1) * sw + kw);
    size_t row_bytes = (size_t)wp * c + 4, left = (size_t)pad_left * c, row = (size_t)w * c;
    uint8_t *img = scratch(0, (size_t)hp * row_bytes);
    int32_t *sum_w = scratch(1, (size_t)mhp * sizeof(int32_t));
    if (!img || !sum_w) return -1;
    int32_t outside_u8 = 0, outside_s8 = 0;
    for (int y = 0; y < hp; y++) {
        uint8_t *dst = img + (size_t)y * row_bytes;
        int sy = y - pad_top;
        memset(dst, 0, row_bytes);
        if (sy < 0 || sy >= h) continue;
        const int32_t *src = x + (size_t)sy * row;
        for (size_t i = 0; i < row; i++) {
            outside_u8 |= src[i] & ~0xff;
            outside_s8 |= (src[i] + 128) & ~0xff;
            dst[left + i] = (uint8_t)src[i];
        }
    }
    /* Pixels 0..255 go as they are; signed values -128..127 (k-bit streams) as value + 128,
     * each sum then less 128 times its channel's weights, sum_w; anything else: float path. */
    int offset = 0;
    if (outside_u8 && outside_s8) return 1;
    if (outside_u8) {
        offset = 128;
        for (size_t i = 0; i < (size_t)hp * row_bytes; i++) img[i] ^= 0x80; /* = low byte + 128 */
    }
    for (int m0 = 0; m0 < mhp; m0 += BLOCK) {
        __m512i s = _mm512_setzero_si512(), ones = _mm512_set1_epi8(1);
        for (int g = 0; g < kh * groups; g++)
            s = _mm512_dpbusd_epi32(s, ones, _mm512_loadu_si512(w8 + ((size_t)g * mhp + m0) * 4));
        _mm512_storeu_si512(sum_w + m0, _mm512_mullo_epi32(s, _mm512_set1_epi32(offset)));
    }
    /* Two sums, alternate kernel rows: shorter chains of dependent vpdpbusd. */
    for (int oy = 0; oy < oh; oy++)
        for (int ox = 0; ox < ow; ox++)
            for (int m0 = 0; m0 < mh; m0 += BLOCK) {
                __m512i acc[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
                for (int i = 0; i < kh; i++) {
                    const uint8_t *p = img + (size_t)(oy * sh + i * dh) * row_bytes +
                                       (size_t)ox * sw * c;
                    const int8_t *wr = w8 + ((size_t)i * groups * mhp + m0) * 4;
                    for (int g = 0; g < groups; g++) {
                        int32_t four;
                        memcpy(&four, p + 4 * g, 4);
                        acc[i % 2] = _mm512_dpbusd_epi32(
                            acc[i % 2], _mm512_set1_epi32(four),
                            _mm512_loadu_si512(wr + (size_t)g * mhp * 4));
                    }
                }
                finish_block((vint)_mm512_sub_epi32(_mm512_add_epi32(acc[0], acc[1]),
                                                    _mm512_loadu_si512(sum_w + m0)),
                             out + ((size_t)oy * ow + ox) * mh + m0,
                             mh - m0 < BLOCK ? mh - m0 : BLOCK, thr ? thr + m0 : NULL, mhp,
                             steps, bipolar, act_val);
            }
    return 0;
}
#endif

/* int_conv with 8-bit weights laid out for int_conv_u8_body (NULL: none, or no VNNI here):
 * on the bytes path when it applies, else the float path. */
static int int_conv_any(const int32_t *x, int h, int w, int c, int kh, int kw, int sh,
                        int sw, int dh, int dw, int pad_top, int pad_left, int oh, int ow,
                        const float *weight, const int8_t *w8, int mh, const int32_t *thr,
                        int steps, int bipolar, int act_val, int32_t *out);

/* The bodies above inlined with the common kernel sizes and channel counts as constants:
 * the compiler then unrolls the window and packing loops, three to four times faster than
 * the same code with every bound read at run time (which still runs any other shape). */
#define XNOR_ARGS(C, KH, KW) x, h, w, C, in_thr, KH, KW, sh, sw, dh, dw, pad_top, pad_left, \
                             oh, ow, words, mh, k_bits, thr, steps, bipolar, act_val, out
#define XNOR_CASE(C, KH, KW) \
    if (c == C && kh == KH && kw == KW) return xnor_conv_body(XNOR_ARGS(C, KH, KW));

static int xnor_conv(const int32_t *x, int h, int w, int c, const int32_t *in_thr,
                     int kh, int kw, int sh, int sw, int dh, int dw, int pad_top, int pad_left,
                     int oh, int ow, const uint32_t *words, int mh, int k_bits,
                     const int32_t *thr, int steps, int bipolar, int act_val, int32_t *out) {
    XNOR_CASE(8, 3, 3) XNOR_CASE(16, 3, 3) XNOR_CASE(32, 3, 3) XNOR_CASE(64, 3, 3)
    XNOR_CASE(8, 1, 1) XNOR_CASE(16, 1, 1) XNOR_CASE(32, 1, 1) XNOR_CASE(64, 1, 1)
    return xnor_conv_body(XNOR_ARGS(c, kh, kw));
}

#define INT_ARGS(C, KH, KW) x, h, w, C, KH, KW, sh, sw, dh, dw, pad_top, pad_left, oh, ow, \
                            weight, mh, thr, steps, bipolar, act_val, out
#define INT_CASE(C, KH, KW) \
    if (c == C && kh == KH && kw == KW) return int_conv_body(INT_ARGS(C, KH, KW));

static int int_conv(const int32_t *x, int h, int w, int c, int kh, int kw, int sh, int sw,
                    int dh, int dw, int pad_top, int pad_left, int oh, int ow,
                    const float *weight, int mh, const int32_t *thr, int steps, int bipolar,
                    int act_val, int32_t *out) {
    INT_CASE(1, 3, 3) INT_CASE(3, 3, 3) INT_CASE(3, 7, 7)
    INT_CASE(16, 1, 1) INT_CASE(32, 1, 1) INT_CASE(64, 1, 1)
    return int_conv_body(INT_ARGS(c, kh, kw));
}

static int int_conv_any(const int32_t *x, int h, int w, int c, int kh, int kw, int sh,
                        int sw, int dh, int dw, int pad_top, int pad_left, int oh, int ow,
                        const float *weight, const int8_t *w8, int mh, const int32_t *thr,
                        int steps, int bipolar, int act_val, int32_t *out) {
#if defined(__AVX512VNNI__) && BLOCK == 16
#define U8_ARGS(C, KH, KW) x, h, w, C, KH, KW, sh, sw, dh, pad_top, pad_left, oh, ow, w8, mh, \
                           thr, steps, bipolar, act_val, out
    if (w8 && dw == 1) {
        int status = c == 3 && kh == 3 && kw == 3 ? int_conv_u8_body(U8_ARGS(3, 3, 3))
                     : c == 3 && kh == 7 && kw == 7 ? int_conv_u8_body(U8_ARGS(3, 7, 7))
                     : int_conv_u8_body(U8_ARGS(c, kh, kw));
        if (status != 1) return status;
    }
#undef U8_ARGS
#endif
    (void)w8;
    return int_conv(x, h, w, c, kh, kw, sh, sw, dh, dw, pad_top, pad_left, oh, ow, weight, mh,
                    thr, steps, bipolar, act_val, out);
}

/* ---------------------------------------------------------------- whole-plan execution */

enum { OP_XNOR = 1, OP_INT = 2, OP_THRESHOLD = 3, OP_ADD = 4, OP_SUB = 5, OP_MUL = 6,
       OP_CONCAT = 7, OP_UPSAMPLE = 8, OP_MAXPOOL = 9, OP_RESIDUAL = 10 };

/* n int32s; eight at a time where it can (channel counts are mostly multiples of 8), which
 * the compiler keeps inline, where a library memcpy call would cost more than the copy. */
static inline void copy_channels(int32_t *restrict dst, const int32_t *restrict src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) memcpy(dst + i, src + i, 8 * sizeof(int32_t));
    for (; i < n; i++) dst[i] = src[i];
}

/* Every instruction is RECORD int32s; field meanings per opcode are written by
 * cpu_engine._NativeProgram, which is the only producer. bufs[] are the frame's tensors,
 * params[] the plan's weight and threshold arrays (index -1: none); thresholds come
 * expanded to [steps][channels rounded up to BLOCK]. */
#define RECORD 32

static const void *param(const void *const *params, int32_t i) { return i < 0 ? NULL : params[i]; }

int run_program(const int32_t *prog, int n_instr, int32_t *const *bufs,
                const void *const *params) {
    for (int k = 0; k < n_instr; k++) {
        const int32_t *r = prog + (size_t)k * RECORD;
        int status = 0;
        switch (r[0]) {
            case OP_XNOR:  /* in out h w c oh ow kh kw sh sw dh dw pt pl mh - kbits steps
                              - bipolar act words in_thr thr */
                status = xnor_conv(bufs[r[1]], r[3], r[4], r[5], param(params, r[24]),
                                   r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15],
                                   r[6], r[7], param(params, r[23]), r[16], r[18],
                                   param(params, r[25]), r[19], r[21], r[22], bufs[r[2]]);
                break;
            case OP_INT:  /* in out h w c oh ow kh kw sh sw dh dw pt pl mh - - steps -
                             bipolar act weight - thr weight8 */
                status = int_conv_any(bufs[r[1]], r[3], r[4], r[5], r[8], r[9], r[10], r[11],
                                      r[12], r[13], r[14], r[15], r[6], r[7],
                                      param(params, r[23]), param(params, r[26]), r[16],
                                      param(params, r[25]), r[19], r[21], r[22], bufs[r[2]]);
                break;
            case OP_THRESHOLD: {  /* in out pixels c steps - bipolar act thr table lo */
                const int32_t *x = bufs[r[1]], *t = param(params, r[9]),
                              *table = param(params, r[10]);
                int32_t *o = bufs[r[2]];
                int c = r[4], cp = round_block(c);
                for (int p = 0; p < r[3]; p++)
                    for (int m0 = 0; m0 < c; m0 += BLOCK) {
                        int n = c - m0 < BLOCK ? c - m0 : BLOCK;
                        vint a = load_part(x + (size_t)p * c + m0, n);
                        if (table) finish_table(a, o + (size_t)p * c + m0, n, table, r[11]);
                        else finish_block(a, o + (size_t)p * c + m0, n, t + m0, cp, r[5], r[7],
                                          r[8]);
                    }
                break;
            }
            case OP_ADD: case OP_SUB: case OP_MUL: {
                /* a b out size a_is_param a_len b_is_param b_len: a constant operand (a
                 * parameter) repeats over the leading axes, so element i reads [i % len] */
                const int32_t *a = r[5] ? param(params, r[1]) : bufs[r[1]];
                const int32_t *b = r[7] ? param(params, r[2]) : bufs[r[2]];
                int32_t *o = bufs[r[3]];
                int size = r[4], la = r[6], lb = r[8];
                if (r[0] == OP_ADD && la == size && lb == size) {  /* the residual adds */
                    for (int i = 0; i < size; i++) o[i] = a[i] + b[i];
                    break;
                }
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
                        copy_channels(dst, bufs[r[4 + 2 * q]] + (size_t)p * c, c);
                        dst += c;
                    }
                }
                break;
            }
            case OP_RESIDUAL: {
                /* out pixels c steps bipolar act thr addend n_parts table lo
                 * (part, c) x n_parts:
                 * out = thresholds(addend + concat(parts)), the residual join of a block in
                 * one pass instead of a concat, an add and a threshold. The parts are staged
                 * ROWS pixels at a time before they are read: a block read straight after
                 * the narrower writes that staged it would stall on store forwarding. */
                enum { ROWS = 32 };
                int32_t *o = bufs[r[1]];
                const int32_t *a = bufs[r[8]], *t = param(params, r[7]),
                              *table = param(params, r[10]);
                int pixels = r[2], c = r[3], cp = round_block(c), n_parts = r[9];
                int32_t *rows = scratch(2, (size_t)ROWS * cp * sizeof(int32_t));
                if (!rows) return -1;
                for (int p0 = 0; p0 < pixels; p0 += ROWS) {
                    int np = pixels - p0 < ROWS ? pixels - p0 : ROWS;
                    for (int p = 0; p < np; p++) {
                        int32_t *d = rows + (size_t)p * cp;
                        for (int q = 0; q < n_parts; q++) {
                            int cq = r[13 + 2 * q];
                            copy_channels(d, bufs[r[12 + 2 * q]] + (size_t)(p0 + p) * cq, cq);
                            d += cq;
                        }
                    }
                    for (int p = 0; p < np; p++) {
                        const int32_t *ap = a + (size_t)(p0 + p) * c, *row = rows + (size_t)p * cp;
                        int32_t *op = o + (size_t)(p0 + p) * c;
                        for (int m0 = 0; m0 < c; m0 += BLOCK) {
                            int n = c - m0 < BLOCK ? c - m0 : BLOCK;
                            vint v = load_part(ap + m0, n) + load_i(row + m0);
                            if (table) finish_table(v, op + m0, n, table, r[11]);
                            else finish_block(v, op + m0, n, t + m0, cp, r[4], r[5], r[6]);
                        }
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
