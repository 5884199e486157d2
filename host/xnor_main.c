/* The cpu engine's native program as a stand-alone executable: runs a plan image (written by
 * cpu_engine.NativeProgram.image()) on int32 frames, with the same kernels
 * (xnor_kernels.c) the Python engine loads. It lets a build for another CPU, such as the
 * boards' ARM cores, be checked under an emulator against the reference, without Python.
 *
 *   xnor_main IMAGE INPUT OUTPUT
 *
 * IMAGE: "BNNP", version (2), n_instr, n_buffers, n_params, input buffer, output buffer (int32
 * each), the instruction records, each buffer's length in int32, then every parameter as
 * element size, element count and its bytes. INPUT: frames of the input buffer's length,
 * int32, one after another; OUTPUT gets the output buffer after each frame. Little-endian,
 * as every CPU the project targets. Exit status 0, or 1 with one line on stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int run_program(const int32_t *prog, int n_instr, int32_t *const *bufs,
                const void *const *params);

static int fail(const char *what, const char *path) {
    fprintf(stderr, "xnor_main: %s: %s\n", what, path);
    return 1;
}

static int read_i32(FILE *f, int32_t *dst, size_t n) { return fread(dst, 4, n, f) == n; }

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: xnor_main IMAGE INPUT OUTPUT\n");
        return 1;
    }
    FILE *img = fopen(argv[1], "rb");
    if (!img) return fail("cannot open", argv[1]);
    char magic[4];
    int32_t head[6];
    if (fread(magic, 1, 4, img) != 4 || memcmp(magic, "BNNP", 4) || !read_i32(img, head, 6) ||
        head[0] != 2)
        return fail("not a version-2 plan image", argv[1]);
    int32_t n_instr = head[1], n_buf = head[2], n_par = head[3], in = head[4], out = head[5];
    int32_t *prog = malloc((size_t)n_instr * 32 * 4);
    int32_t **bufs = calloc((size_t)n_buf, sizeof *bufs);
    int32_t *lens = malloc((size_t)n_buf * 4);
    const void **params = calloc((size_t)(n_par > 0 ? n_par : 1), sizeof *params);
    if (!prog || !bufs || !lens || !params || !read_i32(img, prog, (size_t)n_instr * 32) ||
        !read_i32(img, lens, (size_t)n_buf))
        return fail("truncated plan image", argv[1]);
    for (int32_t b = 0; b < n_buf; b++)
        if (!(bufs[b] = calloc((size_t)lens[b], 4))) return fail("out of memory", argv[1]);
    for (int32_t p = 0; p < n_par; p++) {
        int32_t size_count[2];
        if (!read_i32(img, size_count, 2)) return fail("truncated plan image", argv[1]);
        size_t bytes = (size_t)size_count[0] * (size_t)size_count[1];
        void *data = malloc(bytes ? bytes : 1);  /* malloc aligns for uint64 words */
        if (!data || fread(data, 1, bytes, img) != bytes)
            return fail("truncated plan image", argv[1]);
        params[p] = data;
    }
    fclose(img);

    FILE *src = fopen(argv[2], "rb");
    if (!src) return fail("cannot open", argv[2]);
    FILE *dst = fopen(argv[3], "wb");
    if (!dst) return fail("cannot write", argv[3]);
    while (fread(bufs[in], 4, (size_t)lens[in], src) == (size_t)lens[in]) {
        if (run_program(prog, n_instr, bufs, params) != 0)
            return fail("the program failed on a frame of", argv[2]);
        if (fwrite(bufs[out], 4, (size_t)lens[out], dst) != (size_t)lens[out])
            return fail("cannot write", argv[3]);
    }
    fclose(src);
    return fclose(dst) == 0 ? 0 : fail("cannot write", argv[3]);
}
