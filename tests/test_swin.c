/* Tests of Swin's pieces in lib/model: the window, mask, relative-position and merging
 * index maps against hand-computed cases and literal roll / partition / reshape code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "model/swin_geometry.h"

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
