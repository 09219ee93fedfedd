/* Tests of Swin's pieces in lib/model: the window, mask, relative-position and merging
 * index maps against hand-computed cases and literal roll / partition / reshape code;
 * the architecture metadata (bundled model, hostile JSON), presets against timm's
 * published parameter counts, tensor names in both layouts and the buffers of older
 * files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "io/safetensors.h"
#include "model/swin_arch.h"
#include "model/swin_geometry.h"
#include "data_file.h"
#include "swin_f64.h"

#define SWIN_MODEL REPQ_TEST_DATA "/swin_micro_rand.safetensors"
#define SWIN_INPUTS REPQ_TEST_DATA "/swin_micro_rand_inputs.u8"
#define SWIN_REF REPQ_TEST_DATA "/swin_micro_rand_ref.bin"

static void assert_ints(const int32_t *got, const int32_t *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("%s[%zu] = %d, wanted %d", what, i, got[i], want[i]);
}

/* ---- hand-computed cases ---- */

static void window_rule_follows_timm(void **state)
{
    (void)state;
    repq_swin_window w = repq_swin_window_calc(56, 56, 7, 7, true);
    assert_true(w.win_h == 7 && w.win_w == 7 && w.shift_h == 3 && w.shift_w == 3);
    w = repq_swin_window_calc(56, 56, 7, 7, false);
    assert_true(w.win_h == 7 && w.shift_h == 0 && w.shift_w == 0);
    /* Resolution equal to or below the window: window shrinks to it, no shift. */
    w = repq_swin_window_calc(7, 7, 7, 7, true);
    assert_true(w.win_h == 7 && w.win_w == 7 && w.shift_h == 0 && w.shift_w == 0);
    w = repq_swin_window_calc(7, 7, 12, 12, true);
    assert_true(w.win_h == 7 && w.win_w == 7 && w.shift_h == 0 && w.shift_w == 0);
    assert_true(repq_swin_window_valid(&w));
    /* Per dimension (timm >= 0.9). */
    w = repq_swin_window_calc(14, 7, 7, 7, true);
    assert_true(w.win_h == 7 && w.win_w == 7 && w.shift_h == 3 && w.shift_w == 0);
    w = repq_swin_window_calc(2, 2, 1, 1, true);
    assert_true(w.win_h == 1 && w.shift_h == 0 && repq_swin_window_valid(&w));
    /* Windows that do not tile the grid (timm pads) are refused. */
    w = repq_swin_window_calc(8, 8, 7, 7, true);
    assert_false(repq_swin_window_valid(&w));
    repq_swin_window bad = {4, 4, 2, 2, 2, 0};
    assert_false(repq_swin_window_valid(&bad));
    repq_swin_window big = {4, 4, 8, 8, 0, 0};
    assert_false(repq_swin_window_valid(&big));
}

static void window_rows_4x4_window2_shift1(void **state)
{
    (void)state;
    const repq_swin_window w = {4, 4, 2, 2, 1, 1};
    assert_true(repq_swin_window_valid(&w));
    /* Rolled position (y, x) holds token ((y + 1) mod 4, (x + 1) mod 4). */
    const int32_t want[16] = {5, 6, 9, 10, 7, 4, 11, 8, 13, 14, 1, 2, 15, 12, 3, 0};
    int32_t rows[16];
    repq_swin_window_rows(&w, rows);
    assert_ints(rows, want, 16, "rows");
    /* Slices per axis: rolled position 0-1 -> 0, 2 -> 1, 3 -> 2; region 3 h + w. */
    const int32_t want_region[16] = {0, 0, 0, 0, 1, 2, 1, 2, 3, 3, 6, 6, 4, 5, 7, 8};
    int32_t region[16];
    repq_swin_window_regions(&w, region);
    assert_ints(region, want_region, 16, "region");
}

static void window_rows_without_shift(void **state)
{
    (void)state;
    const repq_swin_window w = repq_swin_window_calc(7, 7, 7, 7, true);
    int32_t rows[49], region[49];
    repq_swin_window_rows(&w, rows);
    repq_swin_window_regions(&w, region);
    for (int32_t i = 0; i < 49; i++) {
        assert_int_equal(rows[i], i);
        assert_int_equal(region[i], 8);
    }
    /* 4x4 in 2x2 windows, unshifted: window 1 is the top right block. */
    const repq_swin_window w2 = {4, 4, 2, 2, 0, 0};
    int32_t rows2[16];
    repq_swin_window_rows(&w2, rows2);
    const int32_t want[16] = {0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15};
    assert_ints(rows2, want, 16, "rows");
}

static void relative_position_index_2x2_and_rectangular(void **state)
{
    (void)state;
    /* dy, dx in {-1, 0, 1}: (dy + 1) * 3 + (dx + 1). */
    const int32_t want[16] = {4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4};
    int32_t index[16];
    repq_swin_relative_position_index(2, 2, index);
    assert_ints(index, want, 16, "index");
    assert_int_equal(repq_swin_bias_table_rows(2, 2), 9);
    assert_int_equal(repq_swin_bias_table_rows(7, 7), 169);
    /* 2 x 3 window: 3 x 5 table. Query (0,0), key (1,2): dy -1, dx -2 -> row 0; the
     * reverse -> (1 + 1) * 5 + (2 + 2) = 14. */
    int32_t rect[36];
    repq_swin_relative_position_index(2, 3, rect);
    assert_int_equal(rect[0 * 6 + 5], 0);
    assert_int_equal(rect[5 * 6 + 0], 14);
    assert_int_equal(rect[1 * 6 + 3], (-1 + 1) * 5 + (1 + 2));
    assert_int_equal(repq_swin_bias_table_rows(2, 3), 15);
}

static void merge_rows_4x4(void **state)
{
    (void)state;
    /* Output token (oy, ox) takes (2oy, 2ox), (2oy+1, 2ox), (2oy, 2ox+1), (2oy+1, 2ox+1). */
    const int32_t want[16] = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};
    int32_t rows[16];
    repq_swin_merge_rows(4, 4, rows);
    assert_ints(rows, want, 16, "merge");
}

/* ---- literal timm: roll, window_partition, img_mask, reshape/permute ---- */

/* torch.roll(x, (-sh, -sw), dims=(0, 1)) of a [H, W] grid of token ids. */
static void roll_ids(const int32_t *x, int32_t H, int32_t W, int32_t sh, int32_t sw, int32_t *out)
{
    for (int32_t y = 0; y < H; y++)
        for (int32_t c = 0; c < W; c++) {
            /* roll by k moves element i to (i + k) mod n. */
            const int32_t ty = ((y - sh) % H + H) % H, tx = ((c - sw) % W + W) % W;
            out[ty * W + tx] = x[y * W + c];
        }
}

/* x.view(H/wh, wh, W/ww, ww).permute(0, 2, 1, 3).reshape(-1): element by element. */
static void partition_ids(const int32_t *x, int32_t H, int32_t W, int32_t wh, int32_t ww, int32_t *out)
{
    const int32_t d0 = H / wh, d2 = W / ww;
    size_t o = 0;
    for (int32_t a = 0; a < d0; a++)
        for (int32_t c = 0; c < d2; c++)
            for (int32_t b = 0; b < wh; b++)
                for (int32_t d = 0; d < ww; d++)
                    out[o++] = x[((a * wh + b) * d2 + c) * ww + d];
}

/* Python's slice(start, stop) bounds on an axis of n, start/stop negative from the end;
 * has_stop false is None. */
static void py_slice(int32_t n, int32_t start, int32_t stop, bool has_stop, int32_t *lo, int32_t *hi)
{
    *lo = start < 0 ? n + start : start;
    *hi = !has_stop ? n : stop < 0 ? n + stop : stop;
    if (*lo < 0)
        *lo = 0;
    if (*hi > n)
        *hi = n;
}

static void check_against_literal(int32_t H, int32_t W, int32_t wh, int32_t ww, int32_t sh, int32_t sw)
{
    const repq_swin_window w = {H, W, wh, ww, sh, sw};
    assert_true(repq_swin_window_valid(&w));
    const size_t n = (size_t)H * (size_t)W;
    int32_t *ids = malloc(n * sizeof *ids), *rolled = malloc(n * sizeof *ids);
    int32_t *want = malloc(n * sizeof *ids), *rows = malloc(n * sizeof *ids);
    int32_t *region = malloc(n * sizeof *ids), *mask_img = malloc(n * sizeof *ids);
    int32_t *mask_win = malloc(n * sizeof *ids);
    assert_non_null(ids && rolled && want && rows && region && mask_img && mask_win);
    for (size_t i = 0; i < n; i++)
        ids[i] = (int32_t)i;
    roll_ids(ids, H, W, sh, sw, rolled);
    partition_ids(rolled, H, W, wh, ww, want);
    repq_swin_window_rows(&w, rows);
    assert_ints(rows, want, n, "rows");

    /* window_reverse then roll(+shift) restores raster order. */
    for (size_t r = 0; r < n; r++)
        rolled[rows[r]] = want[r];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rolled[i], (int32_t)i);

    /* timm's img_mask, only built when shifting. */
    if (sh > 0 || sw > 0) {
        memset(mask_img, 0, n * sizeof *mask_img);
        const int32_t hs[3][3] = {{0, -wh, 1}, {-wh, -sh, 1}, {-sh, 0, 0}};
        const int32_t ws[3][3] = {{0, -ww, 1}, {-ww, -sw, 1}, {-sw, 0, 0}};
        int32_t cnt = 0;
        for (int s = 0; s < 3; s++)
            for (int t = 0; t < 3; t++) {
                int32_t y0, y1, x0, x1;
                py_slice(H, hs[s][0], hs[s][1], hs[s][2] != 0, &y0, &y1);
                py_slice(W, ws[t][0], ws[t][1], ws[t][2] != 0, &x0, &x1);
                for (int32_t y = y0; y < y1; y++)
                    for (int32_t x = x0; x < x1; x++)
                        mask_img[y * W + x] = cnt;
                cnt++;
            }
        partition_ids(mask_img, H, W, wh, ww, mask_win);
        repq_swin_window_regions(&w, region);
        assert_ints(region, mask_win, n, "region");
    }
    free(ids);
    free(rolled);
    free(want);
    free(rows);
    free(region);
    free(mask_img);
    free(mask_win);
}

static void window_maps_equal_literal_roll_and_partition(void **state)
{
    (void)state;
    check_against_literal(4, 4, 2, 2, 1, 1);
    check_against_literal(4, 4, 2, 2, 0, 0);
    check_against_literal(8, 8, 4, 4, 2, 2);
    check_against_literal(56, 56, 7, 7, 3, 3);
    check_against_literal(28, 28, 7, 7, 3, 3);
    check_against_literal(14, 14, 7, 7, 3, 3);
    check_against_literal(6, 4, 3, 2, 1, 1);
    check_against_literal(12, 9, 4, 3, 2, 1);
    /* Shift in one dimension only (timm >= 0.9 on a 14 x 7 grid): a zero shift makes
     * timm's last slice (-0, None) cover the whole axis. */
    check_against_literal(14, 7, 7, 7, 3, 0);
    check_against_literal(7, 14, 7, 7, 0, 3);
}

/* Regions give timm's mask: for 56x56, window 7, shift 3, count the masked pairs of the
 * last window (bottom right), which mixes all four corners' regions: 2 x 2 regions of
 * 4x4, 4x3, 3x4, 3x3 tokens. */
static void mask_counts_in_corner_window(void **state)
{
    (void)state;
    const repq_swin_window w = repq_swin_window_calc(56, 56, 7, 7, true);
    int32_t *region = malloc(56 * 56 * sizeof *region);
    assert_non_null(region);
    repq_swin_window_regions(&w, region);
    const int32_t *last = region + 63 * 49;
    int32_t same = 0;
    for (int i = 0; i < 49; i++)
        for (int j = 0; j < 49; j++)
            same += last[i] == last[j];
    assert_int_equal(same, 16 * 16 + 12 * 12 + 12 * 12 + 9 * 9);
    /* Window 0 is inside one region: nothing masked. */
    for (int i = 0; i < 49; i++)
        assert_int_equal(region[i], region[0]);
    free(region);
}

static void merge_rows_equal_literal_reshape_permute(void **state)
{
    (void)state;
    const int32_t H = 6, W = 10;
    int32_t rows[60];
    repq_swin_merge_rows(H, W, rows);
    /* x.reshape(H/2, 2, W/2, 2).permute(0, 2, 3, 1).flatten(2): element [a][c][d][b]
     * is input (2a + b, 2c + d), at output token a * W/2 + c, part d * 2 + b. */
    for (int32_t a = 0; a < H / 2; a++)
        for (int32_t b = 0; b < 2; b++)
            for (int32_t c = 0; c < W / 2; c++)
                for (int32_t d = 0; d < 2; d++)
                    assert_int_equal(rows[4 * (a * (W / 2) + c) + d * 2 + b], (2 * a + b) * W + 2 * c + d);
}

/* ---- architecture ---- */

static void micro_metadata_parses(void **state)
{
    (void)state;
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *f;
    assert_int_equal(repq_st_open(NULL, &al, SWIN_MODEL, &f), REPQ_OK);
    assert_string_equal(repq_st_metadata(f, "format"), "timm.swin_transformer");
    repq_swin_arch a;
    repq_object err = {0};
    repq_status st = repq_swin_arch_from_json(&err, repq_st_metadata(f, "architecture"),
                                              repq_st_metadata(f, "preprocess"), &a);
    if (st)
        fail_msg("%s", err.error);
    /* The values of data/README.md's table. */
    assert_int_equal(a.img_size, 224);
    assert_int_equal(a.patch_size, 4);
    assert_int_equal(a.num_classes, 10);
    assert_int_equal(a.embed_dim, 32);
    assert_int_equal(a.stages, 4);
    const int32_t heads[4] = {1, 2, 4, 8}, grids[4] = {56, 28, 14, 7};
    for (int32_t s = 0; s < 4; s++) {
        assert_int_equal(a.depths[s], 2);
        assert_int_equal(a.num_heads[s], heads[s]);
        assert_int_equal(a.mlp_hidden[s], 4 * (32 << s));
        assert_int_equal(repq_swin_stage_grid(&a, s), grids[s]);
    }
    assert_int_equal(a.window_h, 7);
    assert_int_equal(a.window_w, 7);
    assert_true(a.qkv_bias);
    assert_true(a.norm_eps == 1e-5f);
    assert_true(a.mean[0] == 0.485f && a.std[2] == 0.225f && a.pixel_scale == (float)(1.0 / 255.0));
    /* Stage 4: 7x7 equals the window, so no shift (README). */
    repq_swin_window w = repq_swin_block_window(&a, 3, 1);
    assert_true(w.win_h == 7 && w.shift_h == 0 && w.shift_w == 0);
    w = repq_swin_block_window(&a, 2, 1);
    assert_true(w.win_h == 7 && w.shift_h == 3 && w.shift_w == 3);

    /* Every tensor of the file is one of the table's, with its shape, and nothing is left. */
    repq_swin_layout layout;
    assert_int_equal(repq_swin_layout_detect(&err, &a, f, &layout), REPQ_OK);
    assert_int_equal(layout, REPQ_SWIN_LAYOUT_TIMM);
    size_t n = repq_swin_tensors(&a, REPQ_SWIN_LAYOUT_TIMM, NULL, 0);
    assert_int_equal(n, 121);
    assert_int_equal(repq_st_count(f), 121);
    repq_swin_tensor *t = calloc(n, sizeof *t);
    assert_non_null(t);
    assert_int_equal(repq_swin_tensors(&a, REPQ_SWIN_LAYOUT_TIMM, t, n), n);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const repq_st_tensor *ft = repq_st_find(f, t[i].name);
        if (!ft)
            fail_msg("%s is not in the file", t[i].name);
        assert_int_equal(ft->ndim, t[i].ndim);
        for (int32_t d = 0; d < ft->ndim; d++)
            assert_int_equal(ft->shape[d], t[i].shape[d]);
        total += ft->numel;
    }
    assert_int_equal(repq_swin_param_count(&a), total);
    assert_int_equal(total, 2285048);
    free(t);
    /* The file has no older buffers: nothing to contradict. */
    assert_int_equal(repq_swin_buffers_check(&err, &al, &a, f), REPQ_OK);
    repq_st_close(f);
}

#define MICRO "\"img_size\": 224, \"patch_size\": 4, \"num_classes\": 10, \"embed_dim\": 32, "

static void check_swin_arch(const char *json, repq_status want, const char *needle)
{
    repq_object err = {0};
    repq_swin_arch a;
    repq_status st = repq_swin_arch_from_json(&err, json, NULL, &a);
    if (st != want)
        fail_msg("%s -> %d (%s), wanted %d", json ? json : "NULL", st, err.error, want);
    if (needle && !strstr(err.error, needle))
        fail_msg("%s: message '%s' does not mention '%s'", json, err.error, needle);
}

static void hostile_metadata_is_refused(void **state)
{
    (void)state;
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"window_size\": 7}",
                    REPQ_OK, NULL);
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"window_size\": [7, 7], "
                    "\"qkv_bias\": false}", REPQ_OK, NULL);
    /* heads that do not divide the stage's width (96 in stage 2... here 128 / 3). */
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 3, 8]}", REPQ_ERR_UNSUPPORTED,
                    "divide");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4]}", REPQ_ERR_FORMAT, "num_heads");
    check_swin_arch("{" MICRO "\"depths\": [2, 0, 2, 2], \"num_heads\": [1, 2, 4, 8]}", REPQ_ERR_UNSUPPORTED,
                    "depths[1]");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, -8]}", REPQ_ERR_UNSUPPORTED,
                    "num_heads[3]");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, \"2\", 2], \"num_heads\": [1, 2, 4, 8]}", REPQ_ERR_FORMAT,
                    "depths[2]");
    check_swin_arch("{" MICRO "\"depths\": 2, \"num_heads\": [1, 2, 4, 8]}", REPQ_ERR_FORMAT, "depths");
    check_swin_arch("{" MICRO "\"depths\": [], \"num_heads\": []}", REPQ_ERR_UNSUPPORTED, "depths");
    check_swin_arch("{" MICRO "\"depths\": [1, 1, 1, 1, 1, 1, 1, 1, 1], \"num_heads\": [1, 1, 1, 1, 1, 1, 1, 1, 1]}",
                    REPQ_ERR_UNSUPPORTED, "stages");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"window_size\": 57}",
                    REPQ_ERR_UNSUPPORTED, "larger than");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"window_size\": 0}",
                    REPQ_ERR_UNSUPPORTED, "window_size");
    /* 8 tiles 64, 32, 16 and 8; 8 does not tile 224 / 4 / 2 = 28, nor 6 56. */
    check_swin_arch("{\"img_size\": 256, \"patch_size\": 4, \"num_classes\": 10, \"embed_dim\": 32, "
                    "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"window_size\": 8}", REPQ_OK, NULL);
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"window_size\": 8}",
                    REPQ_ERR_UNSUPPORTED, "stage 1's 28x28");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"window_size\": 6}",
                    REPQ_ERR_UNSUPPORTED, "tile");
    /* 7 tokens per side cannot halve for a second stage. */
    check_swin_arch("{\"img_size\": 28, \"patch_size\": 4, \"num_classes\": 10, \"embed_dim\": 8, "
                    "\"depths\": [2, 2], \"num_heads\": [1, 2], \"window_size\": 7}", REPQ_ERR_UNSUPPORTED, "halve");
    check_swin_arch("{\"img_size\": 30, \"patch_size\": 4, \"num_classes\": 10, \"embed_dim\": 8, "
                    "\"depths\": [2], \"num_heads\": [1]}", REPQ_ERR_UNSUPPORTED, "divide");
    check_swin_arch("{\"img_size\": 4096, \"patch_size\": 1, \"num_classes\": 10, \"embed_dim\": 8, "
                    "\"depths\": [2], \"num_heads\": [1]}", REPQ_ERR_UNSUPPORTED, "grid");
    check_swin_arch("{\"img_size\": 1099511627776, \"patch_size\": 4, \"num_classes\": 10, \"embed_dim\": 8, "
                    "\"depths\": [2], \"num_heads\": [1]}", REPQ_ERR_UNSUPPORTED, "img_size");
    check_swin_arch("{" MICRO "\"embed_dim\": 8192, \"depths\": [1, 1, 1, 1], \"num_heads\": [1, 1, 1, 1]}",
                    REPQ_ERR_FORMAT, "JSON"); /* duplicate key */
    check_swin_arch("{\"img_size\": 224, \"patch_size\": 4, \"num_classes\": 10, \"embed_dim\": 8192, "
                    "\"depths\": [1, 1, 1, 1], \"num_heads\": [1, 1, 1, 1]}", REPQ_ERR_UNSUPPORTED, "embed_dim");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"mlp_ratio\": 1e300}",
                    REPQ_ERR_UNSUPPORTED, "mlp_ratio");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"mlp_ratio\": 0.01}",
                    REPQ_ERR_UNSUPPORTED, "mlp_ratio");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"norm_eps\": 1e-70}",
                    REPQ_ERR_UNSUPPORTED, "norm_eps");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"ape\": true}",
                    REPQ_ERR_UNSUPPORTED, "ape");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"patch_norm\": false}",
                    REPQ_ERR_UNSUPPORTED, "patch_norm");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"global_pool\": \"token\"}",
                    REPQ_ERR_UNSUPPORTED, "global_pool");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"act\": \"relu\"}",
                    REPQ_ERR_UNSUPPORTED, "act");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"qkv_bias\": 1}",
                    REPQ_ERR_FORMAT, "qkv_bias");
    check_swin_arch("{" MICRO "\"depths\": [2, 2, 2, 2], \"num_heads\": [1, 2, 4, 8], \"window_size\": [7]}",
                    REPQ_ERR_FORMAT, "window_size");
    check_swin_arch("[1]", REPQ_ERR_FORMAT, "object");
    check_swin_arch("{\"img_size\": 224,", REPQ_ERR_FORMAT, "JSON");
    check_swin_arch(NULL, REPQ_ERR_FORMAT, "preset");
    repq_swin_arch a;
    assert_int_equal(repq_swin_arch_from_json(NULL, "{" MICRO "\"depths\": [2], \"num_heads\": [1]}",
                                              "{\"std\": [0, 1, 1]}", &a), REPQ_ERR_FORMAT);
}

/* timm's published sizes: swin_tiny 28.29M, swin_small 49.61M, swin_base 87.77M. */
static void presets_match_timm_parameter_counts(void **state)
{
    (void)state;
    const char *names[3] = {"swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
                            "swin_base_patch4_window7_224"};
    const size_t published[3] = {2829, 4961, 8777}; /* units of 10^4 */
    for (int i = 0; i < 3; i++) {
        repq_swin_arch a;
        assert_int_equal(repq_swin_arch_from_preset(NULL, names[i], &a), REPQ_OK);
        assert_int_equal(repq_swin_arch_check(NULL, &a), REPQ_OK);
        const size_t count = repq_swin_param_count(&a);
        if ((count + 5000) / 10000 != published[i])
            fail_msg("%s: %zu parameters, published %.2fM", names[i], count, (double)published[i] / 100.0);
        assert_int_equal(a.num_classes, 1000);
        assert_true(a.norm_eps == 1e-5f && a.mean[1] == 0.456f && a.std[0] == 0.229f);
    }
    repq_swin_arch a;
    assert_int_equal(repq_swin_arch_from_preset(NULL, "swin_tiny_patch4_window7_224", &a), REPQ_OK);
    assert_int_equal(a.embed_dim, 96);
    assert_int_equal(a.depths[2], 6);
    assert_int_equal(a.num_heads[3], 24);
    assert_int_equal(repq_swin_arch_from_preset(NULL, "swin_huge", &a), REPQ_ERR_UNSUPPORTED);
    assert_int_equal(repq_swin_arch_from_preset(NULL, NULL, &a), REPQ_ERR_INVALID_ARGUMENT);
}

static const repq_swin_tensor *find_tensor(const repq_swin_tensor *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return &t[i];
    return NULL;
}

static void layouts_name_merging_and_head(void **state)
{
    (void)state;
    repq_swin_arch a;
    assert_int_equal(repq_swin_arch_from_preset(NULL, "swin_tiny_patch4_window7_224", &a), REPQ_OK);
    repq_swin_tensor cur[400], old[400];
    const size_t n = repq_swin_tensors(&a, REPQ_SWIN_LAYOUT_TIMM, cur, 400);
    assert_int_equal(repq_swin_tensors(&a, REPQ_SWIN_LAYOUT_LEGACY, old, 400), n);
    /* 4 patch embedding + 12 blocks x 13 + 3 mergings x 3 + 2 norm + 2 head. */
    assert_int_equal(n, 4 + 12 * 13 + 3 * 3 + 4);
    const repq_swin_tensor *t = find_tensor(cur, n, "layers.1.downsample.reduction.weight");
    assert_non_null(t);
    assert_true(t->stage == 1 && t->shape[0] == 192 && t->shape[1] == 384 && t->param == REPQ_SWIN_MERGE_REDUCTION_W);
    t = find_tensor(old, n, "layers.0.downsample.reduction.weight");
    assert_non_null(t);
    assert_true(t->stage == 1 && t->shape[0] == 192 && t->shape[1] == 384);
    assert_null(find_tensor(cur, n, "layers.0.downsample.norm.weight"));
    assert_null(find_tensor(old, n, "layers.3.downsample.norm.weight"));
    assert_non_null(find_tensor(old, n, "layers.2.downsample.norm.weight"));
    assert_non_null(find_tensor(cur, n, "head.fc.weight"));
    assert_non_null(find_tensor(old, n, "head.weight"));
    t = find_tensor(cur, n, "layers.3.blocks.1.attn.relative_position_bias_table");
    assert_true(t && t->shape[0] == 169 && t->shape[1] == 24 && t->block == 1);
    t = find_tensor(cur, n, "patch_embed.proj.weight");
    assert_true(t && t->ndim == 4 && t->shape[0] == 96 && t->shape[1] == 3 && t->shape[3] == 4);
    /* A window of 12 at 224: stage 4's 7x7 grid shrinks it to 7 (13 x 13 table), but
     * 56 / 12 does not tile: refused. */
    a.window_h = a.window_w = 12;
    assert_int_equal(repq_swin_arch_check(NULL, &a), REPQ_ERR_UNSUPPORTED);
    /* capacity smaller than the count: only that many written, count still returned. */
    assert_int_equal(repq_swin_tensors(&a, REPQ_SWIN_LAYOUT_TIMM, cur, 3), n);
}

/* A legacy file built here: patch merging at the end of the previous stage, head
 * `head`, and the two buffers; a wrong buffer is reported, a right one accepted. */
/* The writer's file, parsed from memory (*bytes must outlive it). */
static repq_st_file *finish_file(repq_st_writer *w, const repq_allocator *al, uint8_t **bytes)
{
    size_t size;
    assert_int_equal(repq_st_writer_to_memory(w, bytes, &size), REPQ_OK);
    repq_st_writer_free(w);
    repq_st_file *f;
    assert_int_equal(repq_st_parse(NULL, al, *bytes, size, &f), REPQ_OK);
    return f;
}

static void legacy_file_and_buffers(void **state)
{
    (void)state;
    repq_allocator al = repq_allocator_of(NULL);
    repq_swin_arch a;
    const char *json = "{\"img_size\": 16, \"patch_size\": 2, \"num_classes\": 3, \"embed_dim\": 4, "
                       "\"depths\": [2, 1], \"num_heads\": [1, 2], \"window_size\": 2}";
    assert_int_equal(repq_swin_arch_from_json(NULL, json, NULL, &a), REPQ_OK);
    repq_swin_tensor t[64];
    const size_t n = repq_swin_tensors(&a, REPQ_SWIN_LAYOUT_LEGACY, t, 64);
    assert_true(n < 64);
    static float zeros[4096];
    /* Stage 0: 8x8 grid, window 2, block 1 shifts by 1: 16 windows of 4 tokens. */
    const int64_t rpi[16] = {4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4};
    float mask[16 * 16];
    /* timm's mask of an 8x8 grid, window 2, shift 1, by its definition: windows on the
     * last row / column mix the slices (-2, -1) and (-1, None). */
    for (int win = 0; win < 16; win++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                const int wy = win / 4, wx = win % 4;
                const int yi = 2 * wy + i / 2, xi = 2 * wx + i % 2, yj = 2 * wy + j / 2, xj = 2 * wx + j % 2;
                const int ri = 3 * (yi < 6 ? 0 : yi < 7 ? 1 : 2) + (xi < 6 ? 0 : xi < 7 ? 1 : 2);
                const int rj = 3 * (yj < 6 ? 0 : yj < 7 ? 1 : 2) + (xj < 6 ? 0 : xj < 7 ? 1 : 2);
                mask[(win * 4 + i) * 4 + j] = ri != rj ? -100.0f : 0.0f;
            }
    for (int variant = 0; variant < 4; variant++) {
        repq_st_writer *w;
        assert_int_equal(repq_st_writer_new(NULL, &al, &w), REPQ_OK);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(repq_st_writer_add(w, t[i].name, REPQ_ST_F32, t[i].ndim, t[i].shape, zeros,
                                                t[i].numel * 4), REPQ_OK);
        const int64_t rs[2] = {4, 4}, ms[3] = {16, 4, 4};
        int64_t bad_rpi[16];
        memcpy(bad_rpi, rpi, sizeof rpi);
        bad_rpi[5] = 3;
        float bad_mask[256];
        memcpy(bad_mask, mask, sizeof mask);
        bad_mask[(15 * 4 + 3) * 4 + 0] = 0.0f; /* (7,7) vs (6,6): regions 8 and 4 */
        assert_int_equal(repq_st_writer_add(w, "layers.0.blocks.1.attn.relative_position_index", REPQ_ST_I64, 2, rs,
                                            variant == 1 ? bad_rpi : rpi, sizeof rpi), REPQ_OK);
        assert_int_equal(repq_st_writer_add(w, variant == 3 ? "layers.0.blocks.0.attn_mask" : "layers.0.blocks.1.attn_mask",
                                            REPQ_ST_F32, 3, ms, variant == 2 ? bad_mask : mask, sizeof mask), REPQ_OK);
        uint8_t *bytes;
        repq_st_file *f = finish_file(w, &al, &bytes);
        repq_swin_layout layout;
        repq_object err = {0};
        assert_int_equal(repq_swin_layout_detect(&err, &a, f, &layout), REPQ_OK);
        assert_int_equal(layout, REPQ_SWIN_LAYOUT_LEGACY);
        const repq_status want[4] = {REPQ_OK, REPQ_ERR_FORMAT, REPQ_ERR_FORMAT, REPQ_ERR_FORMAT};
        const char *needle[4] = {NULL, "relative_position_index[5]", "attn_mask[15][3][0]", "does not shift"};
        repq_status st = repq_swin_buffers_check(&err, &al, &a, f);
        if (st != want[variant] || (needle[variant] && !strstr(err.error, needle[variant])))
            fail_msg("variant %d: %d '%s'", variant, st, err.error);
        repq_st_close(f);
        repq_mem_free(&al, bytes);
    }
    /* A file with neither layout complete names the first missing tensor. */
    repq_st_writer *w;
    assert_int_equal(repq_st_writer_new(NULL, &al, &w), REPQ_OK);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(repq_st_writer_add(w, t[i].name, REPQ_ST_F32, t[i].ndim, t[i].shape, zeros,
                                            t[i].numel * 4), REPQ_OK);
    uint8_t *bytes;
    repq_st_file *f = finish_file(w, &al, &bytes);
    repq_swin_layout layout;
    repq_object err = {0};
    assert_int_equal(repq_swin_layout_detect(&err, &a, f, &layout), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "patch_embed.proj.weight"));
    repq_st_close(f);
    repq_mem_free(&al, bytes);
}

/* ---- float64 forward against timm ---- */

/* swin_micro_rand's logits in float64 against timm's (float64, stored as float32):
 * checks the test's own reference before anything is measured against it. */
static void f64_forward_matches_timm(void **state)
{
    (void)state;
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *f;
    assert_int_equal(repq_st_open(NULL, &al, SWIN_MODEL, &f), REPQ_OK);
    repq_swin_arch a;
    assert_int_equal(repq_swin_arch_from_json(NULL, repq_st_metadata(f, "architecture"),
                                              repq_st_metadata(f, "preprocess"), &a), REPQ_OK);
    swin_f64_params p;
    assert_true(swin_f64_params_load(&a, f, false, &p));
    enum { N = 4, K = 10 };
    static uint8_t images[N * 3 * 224 * 224];
    float want[N * K];
    double got[N * K];
    data_file_read(SWIN_INPUTS, images, sizeof images);
    data_file_read(SWIN_REF, want, sizeof want);
    assert_true(swin_f64_forward(&a, &p, images, N, got));
    double worst = 0.0, scale = 0.0;
    for (int i = 0; i < N * K; i++) {
        worst = fmax(worst, fabs(got[i] - (double)want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    printf("swin_micro_rand float64 forward vs timm: max abs error %.3g (largest logit %.3g)\n", worst, scale);
    assert_true(worst <= 1e-5);
    /* The same weights in the pre-0.9 layout give the same logits. */
    repq_st_writer *w;
    assert_int_equal(repq_st_writer_new(NULL, &al, &w), REPQ_OK);
    for (size_t i = 0; i < repq_st_count(f); i++) {
        const repq_st_tensor *t = repq_st_tensor_at(f, i);
        char name[128];
        int stage;
        if (strstr(t->name, ".downsample.") && sscanf(t->name, "layers.%d.", &stage) == 1)
            snprintf(name, sizeof name, "layers.%d%s", stage - 1, strchr(t->name + 7, '.'));
        else if (strncmp(t->name, "head.fc.", 8) == 0)
            snprintf(name, sizeof name, "head.%s", t->name + 8);
        else
            snprintf(name, sizeof name, "%s", t->name);
        assert_int_equal(repq_st_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, t->nbytes), REPQ_OK);
    }
    uint8_t *bytes;
    repq_st_file *old = finish_file(w, &al, &bytes);
    repq_swin_layout layout;
    assert_int_equal(repq_swin_layout_detect(NULL, &a, old, &layout), REPQ_OK);
    assert_int_equal(layout, REPQ_SWIN_LAYOUT_LEGACY);
    swin_f64_params q;
    assert_true(swin_f64_params_load(&a, old, true, &q));
    double again[N * K];
    assert_true(swin_f64_forward(&a, &q, images, 1, again));
    for (int i = 0; i < K; i++)
        assert_true(again[i] == got[i]);
    swin_f64_params_free(&q);
    repq_st_close(old);
    repq_mem_free(&al, bytes);
    swin_f64_params_free(&p);
    repq_st_close(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(window_rule_follows_timm),
        cmocka_unit_test(window_rows_4x4_window2_shift1),
        cmocka_unit_test(window_rows_without_shift),
        cmocka_unit_test(relative_position_index_2x2_and_rectangular),
        cmocka_unit_test(merge_rows_4x4),
        cmocka_unit_test(window_maps_equal_literal_roll_and_partition),
        cmocka_unit_test(mask_counts_in_corner_window),
        cmocka_unit_test(merge_rows_equal_literal_reshape_permute),
        cmocka_unit_test(micro_metadata_parses),
        cmocka_unit_test(hostile_metadata_is_refused),
        cmocka_unit_test(presets_match_timm_parameter_counts),
        cmocka_unit_test(layouts_name_merging_and_head),
        cmocka_unit_test(legacy_file_and_buffers),
        cmocka_unit_test(f64_forward_matches_timm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
