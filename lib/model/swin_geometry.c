/* Swin's window, mask, relative-position and merging index maps (see swin_geometry.h). */
#include "model/swin_geometry.h"

static void calc_dim(int32_t grid, int32_t target, bool shifted, int32_t *win, int32_t *shift)
{
    if (grid <= target) {
        *win = grid;
        *shift = 0;
    } else {
        *win = target;
        *shift = shifted ? target / 2 : 0;
    }
}

repq_swin_window repq_swin_window_calc(int32_t grid_h, int32_t grid_w, int32_t target_win_h,
                                       int32_t target_win_w, bool shifted)
{
    repq_swin_window w = {.grid_h = grid_h, .grid_w = grid_w};
    calc_dim(grid_h, target_win_h, shifted, &w.win_h, &w.shift_h);
    calc_dim(grid_w, target_win_w, shifted, &w.win_w, &w.shift_w);
    return w;
}

bool repq_swin_window_valid(const repq_swin_window *w)
{
    return w->grid_h >= 1 && w->grid_w >= 1 && w->win_h >= 1 && w->win_w >= 1 &&
           w->win_h <= w->grid_h && w->win_w <= w->grid_w && w->grid_h % w->win_h == 0 &&
           w->grid_w % w->win_w == 0 && w->shift_h >= 0 && w->shift_h < w->win_h &&
           w->shift_w >= 0 && w->shift_w < w->win_w;
}

/* Position (y, x) in the rolled grid of window-order row r. */
static void rolled_position(const repq_swin_window *w, int32_t r, int32_t *y, int32_t *x)
{
    const int32_t area = repq_swin_window_area(w), win = r / area, in = r % area;
    const int32_t across = w->grid_w / w->win_w;
    *y = (win / across) * w->win_h + in / w->win_w;
    *x = (win % across) * w->win_w + in % w->win_w;
}

void repq_swin_window_rows(const repq_swin_window *w, int32_t *rows)
{
    const int32_t n = w->grid_h * w->grid_w;
    for (int32_t r = 0; r < n; r++) {
        int32_t y, x;
        rolled_position(w, r, &y, &x);
        /* torch.roll(-shift) brings token (y + shift) mod H to rolled row y. */
        rows[r] = ((y + w->shift_h) % w->grid_h) * w->grid_w + (x + w->shift_w) % w->grid_w;
    }
}

/* Which of timm's three slices a rolled coordinate falls in. With shift 0 the last
 * slice (-0, None) is the whole axis and, written last, wins everywhere. */
static int32_t slice_of(int32_t pos, int32_t grid, int32_t win, int32_t shift)
{
    if (shift == 0 || pos >= grid - shift)
        return 2;
    return pos >= grid - win ? 1 : 0;
}

void repq_swin_window_regions(const repq_swin_window *w, int32_t *region)
{
    const int32_t n = w->grid_h * w->grid_w;
    for (int32_t r = 0; r < n; r++) {
        int32_t y, x;
        rolled_position(w, r, &y, &x);
        region[r] = 3 * slice_of(y, w->grid_h, w->win_h, w->shift_h) +
                    slice_of(x, w->grid_w, w->win_w, w->shift_w);
    }
}

void repq_swin_relative_position_index(int32_t win_h, int32_t win_w, int32_t *index)
{
    const int32_t area = win_h * win_w;
    for (int32_t q = 0; q < area; q++)
        for (int32_t k = 0; k < area; k++) {
            const int32_t dy = q / win_w - k / win_w, dx = q % win_w - k % win_w;
            index[q * area + k] = (dy + win_h - 1) * (2 * win_w - 1) + (dx + win_w - 1);
        }
}

void repq_swin_merge_rows(int32_t grid_h, int32_t grid_w, int32_t *rows)
{
    const int32_t out_h = grid_h / 2, out_w = grid_w / 2;
    for (int32_t oy = 0; oy < out_h; oy++)
        for (int32_t ox = 0; ox < out_w; ox++)
            for (int32_t k = 0; k < 4; k++) {
                const int32_t y = 2 * oy + (k & 1), x = 2 * ox + (k >> 1);
                rows[4 * (oy * out_w + ox) + k] = y * grid_w + x;
            }
}
