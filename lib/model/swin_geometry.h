/* Internal: the index arithmetic of Swin's windows, as pure functions over token rows.
 *
 * The float forward and the integer session read activations through these maps
 * instead of copying them into rolled and partitioned tensors. All functions work on
 * the tokens of ONE image laid out in raster order (row y, column x at y * grid_w + x);
 * a batch adds image * grid_h * grid_w to every index. Nothing here allocates, fails or
 * keeps state; callers size the output arrays. Safe from any thread.
 *
 * Vocabulary, after timm's SwinTransformerBlock:
 *   - window order: the order of the rows of window_partition(torch.roll(x, -shift)):
 *     windows in raster order over the rolled grid, tokens in raster order inside a
 *     window. Row r = window * (win_h * win_w) + (i * win_w + j).
 *   - torch.roll(x, -s) puts token (y + s) mod H at position y; window_reverse followed
 *     by torch.roll(+s) is the inverse permutation.
 */
#ifndef REPQ_MODEL_SWIN_GEOMETRY_H
#define REPQ_MODEL_SWIN_GEOMETRY_H

#include <stdbool.h>
#include <stdint.h>

/* The windows of one block: its token grid, its effective window and shift. */
typedef struct repq_swin_window {
    int32_t grid_h, grid_w;
    int32_t win_h, win_w;
    int32_t shift_h, shift_w; /* 0 <= shift < win, 0 where the block does not shift */
} repq_swin_window;

/* timm's rule (SwinTransformerBlock._calc_window_shift, timm >= 0.9), per dimension:
 * where the grid is at most the target window, the window becomes the grid and the
 * shift 0; elsewhere the window is the target and the shift is target / 2 on odd
 * blocks (`shifted`), 0 on even ones. Older timm and the original release decide on
 * min(grid_h, grid_w) for both dimensions at once; for the square grids of square
 * images (all that swin_arch accepts) the two rules agree. Inputs must be >= 1. */
repq_swin_window repq_swin_window_calc(int32_t grid_h, int32_t grid_w, int32_t target_win_h,
                                       int32_t target_win_w, bool shifted);

/* True when the windows tile the grid exactly (timm would pad otherwise, which is not
 * supported) and the shifts are in range. Every other function requires this. */
bool repq_swin_window_valid(const repq_swin_window *w);

static inline int32_t repq_swin_window_area(const repq_swin_window *w) { return w->win_h * w->win_w; }
static inline int32_t repq_swin_window_count(const repq_swin_window *w)
{
    return (w->grid_h / w->win_h) * (w->grid_w / w->win_w);
}
static inline bool repq_swin_window_shifted(const repq_swin_window *w)
{
    return w->shift_h > 0 || w->shift_w > 0;
}

/* rows[r] = raster index of the token at window-order row r, for the grid_h * grid_w
 * rows. Gathering x[rows[r]] gives timm's window_partition(roll(x, -shift)); scattering
 * y[r] back to rows[r] is window_reverse followed by roll(+shift). */
void repq_swin_window_rows(const repq_swin_window *w, int32_t *rows);

/* region[r] for the grid_h * grid_w window-order rows: timm's img_mask value of the row
 * (the slices (0, -win), (-win, -shift), (-shift, None) per dimension, numbered 3 * h + w
 * in timm's loop order, later slices overwriting earlier ones). Attention from row i to
 * row j of the same window gets timm's additive mask -100 exactly when
 * region[i] != region[j]. Without shift every region is 8 and nothing is masked (timm
 * passes no mask then). */
void repq_swin_window_regions(const repq_swin_window *w, int32_t *region);

/* Size of the relative position bias table, (2 win_h - 1) * (2 win_w - 1) rows. */
static inline int32_t repq_swin_bias_table_rows(int32_t win_h, int32_t win_w)
{
    return (2 * win_h - 1) * (2 * win_w - 1);
}

/* index[i * area + j] (area = win_h * win_w) = the row of the bias table for query i
 * and key j of a window (tokens in raster order inside the window), timm's
 * get_relative_position_index: (yi - yj + win_h - 1) * (2 win_w - 1) + (xi - xj + win_w - 1).
 * timm builds it for rectangular windows too. */
void repq_swin_relative_position_index(int32_t win_h, int32_t win_w, int32_t *index);

/* Patch merging of a grid_h x grid_w grid (both even) into (grid_h / 2) x (grid_w / 2):
 * rows[4 * t + k] = raster index of the input token that supplies channels
 * [k * C, (k + 1) * C) of output token t = oy * (grid_w / 2) + ox. timm's
 * reshape(B, H/2, 2, W/2, 2, C).permute(0, 1, 3, 4, 2, 5) (and the older x0..x3 concat)
 * give k = 0: (2oy, 2ox), 1: (2oy + 1, 2ox), 2: (2oy, 2ox + 1), 3: (2oy + 1, 2ox + 1). */
void repq_swin_merge_rows(int32_t grid_h, int32_t grid_w, int32_t *rows);

#endif
