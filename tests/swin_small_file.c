#include "swin_small_file.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/swin_arch.h"

static float uniform(uint64_t *s, float amp)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(((double)(*s >> 11) * 0x1.0p-53 * 2.0 - 1.0) * amp);
}

static bool is_norm_weight(repq_swin_param p)
{
    return p == REPQ_SWIN_PATCH_NORM_W || p == REPQ_SWIN_NORM1_W || p == REPQ_SWIN_NORM2_W ||
           p == REPQ_SWIN_MERGE_NORM_W || p == REPQ_SWIN_NORM_W;
}
/* Tokens of one window that lie in different regions of the rolled grid get -100. */
float *swin_timm_attn_mask(int g, int w, int sh)
{
    int *region = malloc((size_t)g * (size_t)g * sizeof *region);
    const size_t area = (size_t)w * (size_t)w, windows = (size_t)(g / w) * (size_t)(g / w);
    float *mask = malloc(windows * area * area * sizeof *mask);
    if (!region || !mask) {
        free(region);
        free(mask);
        return NULL;
    }
    for (int y = 0; y < g; y++)
        for (int x = 0; x < g; x++)
            region[y * g + x] = 3 * (y < g - w ? 0 : y < g - sh ? 1 : 2) + (x < g - w ? 0 : x < g - sh ? 1 : 2);
    for (size_t win = 0; win < windows; win++) {
        const int wy = (int)(win / (size_t)(g / w)), wx = (int)(win % (size_t)(g / w));
        for (size_t i = 0; i < area; i++)
            for (size_t j = 0; j < area; j++) {
                const int ri = region[(wy * w + (int)i / w) * g + wx * w + (int)i % w];
                const int rj = region[(wy * w + (int)j / w) * g + wx * w + (int)j % w];
                mask[(win * area + i) * area + j] = ri == rj ? 0.0f : -100.0f;
            }
    }
    free(region);
    return mask;
}

int64_t *swin_timm_relative_index(int w)
{
    const size_t area = (size_t)w * (size_t)w;
    int64_t *idx = malloc(area * area * sizeof *idx);
    if (!idx)
        return NULL;
    for (size_t i = 0; i < area; i++)
        for (size_t j = 0; j < area; j++)
            idx[i * area + j] = (int64_t)((int)i / w - (int)j / w + w - 1) * (2 * w - 1) + ((int)i % w - (int)j % w + w - 1);
    return idx;
}


repq_status swin_small_write(const char *path, const char *arch_json, uint64_t seed, bool buffers)
{
    repq_swin_arch a;
    repq_status st = repq_swin_arch_from_json(NULL, arch_json, NULL, &a);
    if (st)
        return st;
    const size_t count = repq_swin_tensors(&a, REPQ_SWIN_LAYOUT_TIMM, NULL, 0);
    repq_swin_tensor *t = calloc(count, sizeof *t);
    float *data = malloc(repq_swin_param_count(&a) * sizeof *data);
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_writer *w = NULL;
    if (!t || !data)
        st = REPQ_ERR_NOMEM;
    else
        st = repq_st_writer_new(NULL, &al, &w);
    if (!st) {
        repq_swin_tensors(&a, REPQ_SWIN_LAYOUT_TIMM, t, count);
        float *p = data;
        for (size_t i = 0; i < count && !st; i++) {
            /* Weights scaled by 1/sqrt(fan-in) keep activations O(1) through the blocks. */
            const float amp = t[i].ndim >= 2 ? 1.0f / sqrtf((float)(t[i].numel / (size_t)t[i].shape[0])) : 0.1f;
            for (size_t k = 0; k < t[i].numel; k++)
                p[k] = (is_norm_weight(t[i].param) ? 1.0f : 0.0f) + uniform(&seed, amp);
            st = repq_st_writer_add(w, t[i].name, REPQ_ST_F32, t[i].ndim, t[i].shape, p, t[i].numel * sizeof *p);
            p += t[i].numel;
        }
    }
    /* The buffers of every block (the writer keeps pointers until it writes). */
    float *masks[REPQ_SWIN_MAX_STAGES] = {NULL};
    int64_t *index[REPQ_SWIN_MAX_STAGES] = {NULL};
    for (int32_t s = 0; buffers && s < a.stages && !st; s++) {
        const repq_swin_window win = repq_swin_block_window(&a, s, 1);
        const int64_t area = (int64_t)win.win_h * win.win_w, windows = (int64_t)(win.grid_h / win.win_h) *
                                                                           (win.grid_w / win.win_w);
        index[s] = swin_timm_relative_index(win.win_h);
        masks[s] = swin_timm_attn_mask(win.grid_h, win.win_h, win.shift_h);
        if (!index[s] || !masks[s] || win.win_h != win.win_w || win.grid_h != win.grid_w) {
            st = REPQ_ERR_UNSUPPORTED;
            break;
        }
        for (int32_t b = 0; b < a.depths[s] && !st; b++) {
            char name[96];
            const int64_t ishape[2] = {area, area}, mshape[3] = {windows, area, area};
            snprintf(name, sizeof name, "layers.%d.blocks.%d.attn.relative_position_index", (int)s, (int)b);
            st = repq_st_writer_add(w, name, REPQ_ST_I64, 2, ishape, index[s], (size_t)(area * area) * sizeof(int64_t));
            snprintf(name, sizeof name, "layers.%d.blocks.%d.attn_mask", (int)s, (int)b);
            if (!st && b % 2 == 1 && win.shift_h > 0)
                st = repq_st_writer_add(w, name, REPQ_ST_F32, 3, mshape, masks[s],
                                        (size_t)(windows * area * area) * sizeof(float));
        }
    }
    if (!st && !(st = repq_st_writer_set_metadata(w, "format", "timm.swin_transformer")) &&
        !(st = repq_st_writer_set_metadata(w, "architecture", arch_json)))
        st = repq_st_writer_write(w, path);
    repq_st_writer_free(w);
    for (int32_t s = 0; s < REPQ_SWIN_MAX_STAGES; s++) {
        free(masks[s]);
        free(index[s]);
    }
    free(data);
    free(t);
    return st;
}
