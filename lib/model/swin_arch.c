/* Swin architecture: presets, JSON metadata, tensor names in timm's two layouts, and the
 * check of the buffers older files carry (see swin_arch.h). */
#include "model/swin_arch.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model/arch_json.h"

/* Limits for hostile files; timm's largest Swin (large, 384) is far inside them. */
#define MAX_GRID 128 /* tokens per side of the first stage */
#define MAX_DEPTH 256
#define MAX_BLOCKS 1024
#define MAX_HEADS 1024
#define MAX_DIM 16384
#define MAX_HIDDEN 65536

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

static void set_imagenet(repq_swin_arch *a)
{
    a->pixel_scale = 1.0f / 255.0f;
    memcpy(a->mean, imagenet_mean, sizeof a->mean);
    memcpy(a->std, imagenet_std, sizeof a->std);
}

typedef struct preset {
    const char *name;
    int32_t embed_dim;
    int32_t depths[4], heads[4];
} preset;

/* timm's swin_{tiny,small,base}_patch4_window7_224. */
static const preset presets[] = {
    {"swin_tiny_patch4_window7_224", 96, {2, 2, 6, 2}, {3, 6, 12, 24}},
    {"swin_small_patch4_window7_224", 96, {2, 2, 18, 2}, {3, 6, 12, 24}},
    {"swin_base_patch4_window7_224", 128, {2, 2, 18, 2}, {4, 8, 16, 32}},
};

repq_status repq_swin_arch_check(repq_object *err, const repq_swin_arch *a)
{
    if (a->img_size < 1 || a->img_size > 4096 || a->patch_size < 1 || a->patch_size > 1024 ||
        a->img_size % a->patch_size != 0)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: patch_size %d does not divide img_size %d",
                         a->patch_size, a->img_size);
    const int32_t grid = a->img_size / a->patch_size;
    if (grid > MAX_GRID)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: a %dx%d token grid is more than %dx%d", grid,
                         grid, MAX_GRID, MAX_GRID);
    if (a->in_chans != 3 || a->num_classes < 1 || a->num_classes > 100000 || a->embed_dim < 1 ||
        a->embed_dim > MAX_DIM)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: in_chans, num_classes or embed_dim out of range");
    if (a->stages < 1 || a->stages > REPQ_SWIN_MAX_STAGES)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: %d stages (depths) is outside [1, %d]",
                         a->stages, REPQ_SWIN_MAX_STAGES);
    if ((int64_t)a->embed_dim << (a->stages - 1) > MAX_DIM)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: embed_dim %d doubled over %d stages exceeds %d",
                         a->embed_dim, a->stages, MAX_DIM);
    if (a->window_h < 1 || a->window_w < 1 || a->window_h > grid || a->window_w > grid)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: window %dx%d is larger than the %dx%d token grid",
                         a->window_h, a->window_w, grid, grid);
    if (!(a->norm_eps >= FLT_MIN && a->norm_eps < 1.0f))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: norm_eps is not in [FLT_MIN, 1)");
    int32_t blocks = 0;
    for (int32_t s = 0; s < a->stages; s++) {
        const int32_t dim = repq_swin_stage_dim(a, s);
        if (s > 0 && repq_swin_stage_grid(a, s - 1) % 2 != 0)
            return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                             "architecture: stage %d's %dx%d grid does not halve for stage %d", s - 1,
                             repq_swin_stage_grid(a, s - 1), repq_swin_stage_grid(a, s - 1), s);
        if (a->depths[s] < 1 || a->depths[s] > MAX_DEPTH)
            return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: depths[%d] = %d is outside [1, %d]", s,
                             a->depths[s], MAX_DEPTH);
        blocks += a->depths[s];
        if (a->num_heads[s] < 1 || a->num_heads[s] > MAX_HEADS || dim % a->num_heads[s] != 0)
            return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: num_heads[%d] = %d does not divide dim %d",
                             s, a->num_heads[s], dim);
        if (a->mlp_hidden[s] < 1 || a->mlp_hidden[s] > MAX_HIDDEN)
            return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: MLP width %d of stage %d is outside [1, %d]",
                             a->mlp_hidden[s], s, MAX_HIDDEN);
        for (int32_t b = 0; b < 2 && b < a->depths[s]; b++) {
            const repq_swin_window w = repq_swin_block_window(a, s, b);
            if (!repq_swin_window_valid(&w))
                return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                                 "architecture: window %dx%d does not tile stage %d's %dx%d grid (timm would pad)",
                                 w.win_h, w.win_w, s, w.grid_h, w.grid_w);
        }
    }
    if (blocks > MAX_BLOCKS)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: %d blocks is more than %d", blocks, MAX_BLOCKS);
    return REPQ_OK;
}

repq_status repq_swin_arch_from_preset(repq_object *err, const char *name, repq_swin_arch *out)
{
    if (!name)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "architecture preset name is NULL");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const preset *p = &presets[i];
        if (strcmp(p->name, name) != 0)
            continue;
        repq_swin_arch a;
        memset(&a, 0, sizeof a);
        a.img_size = 224;
        a.patch_size = 4;
        a.in_chans = 3;
        a.num_classes = 1000;
        a.embed_dim = p->embed_dim;
        a.stages = 4;
        for (int32_t s = 0; s < 4; s++) {
            a.depths[s] = p->depths[s];
            a.num_heads[s] = p->heads[s];
            a.mlp_hidden[s] = 4 * repq_swin_stage_dim(&a, s);
        }
        a.window_h = a.window_w = 7;
        a.qkv_bias = true;
        a.norm_eps = 1e-5f;
        set_imagenet(&a);
        *out = a;
        return REPQ_OK;
    }
    return repq_fail(err, REPQ_ERR_UNSUPPORTED, "unknown architecture preset '%s'", name);
}

/* An array field of 1..REPQ_SWIN_MAX_STAGES integers in [lo, hi]; returns its length. */
static repq_status get_stage_ints(repq_object *err, json_t *root, const char *key, int64_t lo, int64_t hi,
                                  int32_t *out, int32_t *count)
{
    json_t *v = json_object_get(root, key);
    if (!v)
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture: missing field '%s'", key);
    if (!json_is_array(v))
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture: '%s' is not an array of integers", key);
    size_t n = json_array_size(v);
    if (n < 1 || n > REPQ_SWIN_MAX_STAGES)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: '%s' has %zu stages, outside [1, %d]", key, n,
                         REPQ_SWIN_MAX_STAGES);
    for (size_t i = 0; i < n; i++) {
        repq_status st = repq_arch_json_int_value(err, json_array_get(v, i), key, i, lo, hi, &out[i]);
        if (st)
            return st;
    }
    *count = (int32_t)n;
    return REPQ_OK;
}

static repq_status get_window(repq_object *err, json_t *root, repq_swin_arch *a)
{
    json_t *v = json_object_get(root, "window_size");
    if (!v || json_is_integer(v)) {
        repq_status st = repq_arch_json_int(err, root, "window_size", 1, MAX_GRID, false, 7, &a->window_h);
        a->window_w = a->window_h;
        return st;
    }
    if (!json_is_array(v) || json_array_size(v) != 2)
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture: window_size is neither an integer nor [h, w]");
    repq_status st;
    if ((st = repq_arch_json_int_value(err, json_array_get(v, 0), "window_size", 0, 1, MAX_GRID, &a->window_h)) ||
        (st = repq_arch_json_int_value(err, json_array_get(v, 1), "window_size", 1, 1, MAX_GRID, &a->window_w)))
        return st;
    return REPQ_OK;
}

static repq_status parse_arch(repq_object *err, json_t *root, repq_swin_arch *a)
{
    if (!json_is_object(root))
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture metadata is not a JSON object");
    repq_status st;
    int32_t heads_count = 0;
    if ((st = repq_arch_json_int(err, root, "img_size", 1, 4096, true, 0, &a->img_size)) ||
        (st = repq_arch_json_int(err, root, "patch_size", 1, 1024, true, 0, &a->patch_size)) ||
        (st = repq_arch_json_int(err, root, "in_chans", 3, 3, false, 3, &a->in_chans)) ||
        (st = repq_arch_json_int(err, root, "num_classes", 1, 100000, true, 0, &a->num_classes)) ||
        (st = repq_arch_json_int(err, root, "embed_dim", 1, MAX_DIM, true, 0, &a->embed_dim)) ||
        (st = get_stage_ints(err, root, "depths", 1, MAX_DEPTH, a->depths, &a->stages)) ||
        (st = get_stage_ints(err, root, "num_heads", 1, MAX_HEADS, a->num_heads, &heads_count)) ||
        (st = get_window(err, root, a)))
        return st;
    if (heads_count != a->stages)
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture: %d depths but %d num_heads", a->stages, heads_count);
    if ((int64_t)a->embed_dim << (a->stages - 1) > MAX_DIM)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: embed_dim %d doubled over %d stages exceeds %d",
                         a->embed_dim, a->stages, MAX_DIM);
    double r;
    if ((st = repq_arch_json_number(err, root, "mlp_ratio", 4.0, &r)))
        return st;
    for (int32_t s = 0; s < a->stages; s++) {
        const double hidden = r * repq_swin_stage_dim(a, s);
        if (!(hidden >= 1.0 && hidden <= MAX_HIDDEN) || hidden != floor(hidden))
            return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                             "architecture: mlp_ratio %g gives an invalid hidden width in stage %d", r, s);
        a->mlp_hidden[s] = (int32_t)hidden;
    }
    json_t *bias = json_object_get(root, "qkv_bias");
    if (bias && !json_is_boolean(bias))
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture: qkv_bias is not a boolean");
    a->qkv_bias = !bias || json_is_true(bias);
    if ((st = repq_arch_json_norm_eps(err, root, 1e-5, &a->norm_eps)))
        return st;
    json_t *ape = json_object_get(root, "ape");
    if (ape && !json_is_false(ape))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                         "architecture: absolute position embedding (ape) is not supported by Swin models here");
    /* What the forward pass implements; anything else must be refused, not run wrongly. */
    if ((st = repq_arch_json_require_string(err, root, "global_pool", "avg")) ||
        (st = repq_arch_json_require_string(err, root, "act", "gelu_erf")) ||
        (st = repq_arch_json_require_flag(err, root, "patch_norm", true)))
        return st;
    return repq_swin_arch_check(err, a);
}

static repq_status read_arch(repq_object *err, json_t *root, void *arch) { return parse_arch(err, root, arch); }

repq_status repq_swin_arch_from_json(repq_object *err, const char *arch_json, const char *preprocess_json,
                                     repq_swin_arch *out)
{
    repq_swin_arch a;
    memset(&a, 0, sizeof a);
    set_imagenet(&a);
    repq_status st = repq_arch_json_read(err, arch_json, preprocess_json, read_arch, &a, &a.pixel_scale, a.mean, a.std);
    if (st)
        return st;
    *out = a;
    return REPQ_OK;
}

/* ---- tensor names ---- */

typedef void (*tensor_visitor)(void *user, const repq_swin_tensor *t);

typedef struct walker {
    tensor_visitor visit;
    void *user;
    size_t count;
} walker;

static void emit(walker *w, repq_swin_param param, int32_t stage, int32_t block, int32_t ndim,
                 const int64_t *shape, const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void emit(walker *w, repq_swin_param param, int32_t stage, int32_t block, int32_t ndim,
                 const int64_t *shape, const char *fmt, ...)
{
    repq_swin_tensor t;
    memset(&t, 0, sizeof t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t.name, sizeof t.name, fmt, ap);
    va_end(ap);
    t.param = param;
    t.stage = stage;
    t.block = block;
    t.ndim = ndim;
    t.numel = 1;
    for (int32_t i = 0; i < ndim; i++) {
        t.shape[i] = shape[i];
        t.numel *= (size_t)shape[i];
    }
    w->visit(w->user, &t);
    w->count++;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define DIMS(...) (int32_t)(sizeof SHAPE(__VA_ARGS__) / sizeof(int64_t)), SHAPE(__VA_ARGS__)

static void walk_block(walker *w, const repq_swin_arch *a, int32_t s, int32_t b)
{
    const int64_t d = repq_swin_stage_dim(a, s), hid = a->mlp_hidden[s];
    const repq_swin_window win = repq_swin_block_window(a, s, b);
    const int64_t table = repq_swin_bias_table_rows(win.win_h, win.win_w);
    const char *p = "layers.%d.blocks.%d.";
    char f[64];
#define NAME(suffix) (snprintf(f, sizeof f, "%s%s", p, suffix), f)
    emit(w, REPQ_SWIN_NORM1_W, s, b, DIMS(d), NAME("norm1.weight"), s, b);
    emit(w, REPQ_SWIN_NORM1_B, s, b, DIMS(d), NAME("norm1.bias"), s, b);
    emit(w, REPQ_SWIN_QKV_W, s, b, DIMS(3 * d, d), NAME("attn.qkv.weight"), s, b);
    if (a->qkv_bias)
        emit(w, REPQ_SWIN_QKV_B, s, b, DIMS(3 * d), NAME("attn.qkv.bias"), s, b);
    emit(w, REPQ_SWIN_REL_BIAS_TABLE, s, b, DIMS(table, a->num_heads[s]),
         NAME("attn.relative_position_bias_table"), s, b);
    emit(w, REPQ_SWIN_PROJ_W, s, b, DIMS(d, d), NAME("attn.proj.weight"), s, b);
    emit(w, REPQ_SWIN_PROJ_B, s, b, DIMS(d), NAME("attn.proj.bias"), s, b);
    emit(w, REPQ_SWIN_NORM2_W, s, b, DIMS(d), NAME("norm2.weight"), s, b);
    emit(w, REPQ_SWIN_NORM2_B, s, b, DIMS(d), NAME("norm2.bias"), s, b);
    emit(w, REPQ_SWIN_FC1_W, s, b, DIMS(hid, d), NAME("mlp.fc1.weight"), s, b);
    emit(w, REPQ_SWIN_FC1_B, s, b, DIMS(hid), NAME("mlp.fc1.bias"), s, b);
    emit(w, REPQ_SWIN_FC2_W, s, b, DIMS(d, hid), NAME("mlp.fc2.weight"), s, b);
    emit(w, REPQ_SWIN_FC2_B, s, b, DIMS(d), NAME("mlp.fc2.bias"), s, b);
#undef NAME
}

static size_t walk(const repq_swin_arch *a, repq_swin_layout layout, tensor_visitor visit, void *user)
{
    walker w = {visit, user, 0};
    const int64_t c0 = a->embed_dim, p = a->patch_size;
    emit(&w, REPQ_SWIN_PATCH_W, 0, -1, DIMS(c0, a->in_chans, p, p), "patch_embed.proj.weight");
    emit(&w, REPQ_SWIN_PATCH_B, 0, -1, DIMS(c0), "patch_embed.proj.bias");
    emit(&w, REPQ_SWIN_PATCH_NORM_W, 0, -1, DIMS(c0), "patch_embed.norm.weight");
    emit(&w, REPQ_SWIN_PATCH_NORM_B, 0, -1, DIMS(c0), "patch_embed.norm.bias");
    for (int32_t s = 0; s < a->stages; s++) {
        if (s > 0) {
            const int64_t din = repq_swin_stage_dim(a, s - 1);
            const int32_t at = layout == REPQ_SWIN_LAYOUT_TIMM ? s : s - 1;
            emit(&w, REPQ_SWIN_MERGE_NORM_W, s, -1, DIMS(4 * din), "layers.%d.downsample.norm.weight", at);
            emit(&w, REPQ_SWIN_MERGE_NORM_B, s, -1, DIMS(4 * din), "layers.%d.downsample.norm.bias", at);
            emit(&w, REPQ_SWIN_MERGE_REDUCTION_W, s, -1, DIMS(2 * din, 4 * din),
                 "layers.%d.downsample.reduction.weight", at);
        }
        for (int32_t b = 0; b < a->depths[s]; b++)
            walk_block(&w, a, s, b);
    }
    const int64_t dl = repq_swin_stage_dim(a, a->stages - 1);
    const char *head = layout == REPQ_SWIN_LAYOUT_TIMM ? "head.fc" : "head";
    emit(&w, REPQ_SWIN_NORM_W, -1, -1, DIMS(dl), "norm.weight");
    emit(&w, REPQ_SWIN_NORM_B, -1, -1, DIMS(dl), "norm.bias");
    emit(&w, REPQ_SWIN_HEAD_W, -1, -1, DIMS(a->num_classes, dl), "%s.weight", head);
    emit(&w, REPQ_SWIN_HEAD_B, -1, -1, DIMS(a->num_classes), "%s.bias", head);
    return w.count;
}

typedef struct store {
    repq_swin_tensor *out;
    size_t capacity, n;
} store;

static void store_tensor(void *user, const repq_swin_tensor *t)
{
    store *s = user;
    if (s->n < s->capacity)
        s->out[s->n] = *t;
    s->n++;
}

size_t repq_swin_tensors(const repq_swin_arch *a, repq_swin_layout layout, repq_swin_tensor *out,
                         size_t capacity)
{
    store s = {out, out ? capacity : 0, 0};
    return walk(a, layout, store_tensor, &s);
}

static void add_numel(void *user, const repq_swin_tensor *t) { *(size_t *)user += t->numel; }

size_t repq_swin_param_count(const repq_swin_arch *a)
{
    size_t total = 0;
    walk(a, REPQ_SWIN_LAYOUT_TIMM, add_numel, &total);
    return total;
}

typedef struct presence {
    const repq_st_file *file;
    char missing[REPQ_SWIN_NAME_CAPACITY];
} presence;

static void find_missing(void *user, const repq_swin_tensor *t)
{
    presence *p = user;
    if (!p->missing[0] && !repq_st_find(p->file, t->name))
        memcpy(p->missing, t->name, sizeof p->missing);
}

repq_status repq_swin_layout_detect(repq_object *err, const repq_swin_arch *a, const repq_st_file *file,
                                    repq_swin_layout *out)
{
    presence timm = {file, {0}}, legacy = {file, {0}};
    walk(a, REPQ_SWIN_LAYOUT_TIMM, find_missing, &timm);
    if (!timm.missing[0]) {
        *out = REPQ_SWIN_LAYOUT_TIMM;
        return REPQ_OK;
    }
    walk(a, REPQ_SWIN_LAYOUT_LEGACY, find_missing, &legacy);
    if (!legacy.missing[0]) {
        *out = REPQ_SWIN_LAYOUT_LEGACY;
        return REPQ_OK;
    }
    return repq_fail(err, REPQ_ERR_FORMAT, "Swin model: tensor '%s' is missing", timm.missing);
}

/* ---- buffers of older files ---- */

static repq_status check_index(repq_object *err, const repq_st_tensor *t, const repq_swin_window *w,
                               int32_t *want)
{
    const int64_t area = repq_swin_window_area(w);
    if ((t->dtype != REPQ_ST_I64 && t->dtype != REPQ_ST_I32) || t->ndim != 2 || t->shape[0] != area ||
        t->shape[1] != area)
        return repq_fail(err, REPQ_ERR_FORMAT, "%s: expected an integer [%lld, %lld] tensor", t->name,
                         (long long)area, (long long)area);
    repq_swin_relative_position_index(w->win_h, w->win_w, want);
    for (size_t i = 0; i < t->numel; i++) {
        int64_t v;
        if (t->dtype == REPQ_ST_I64) {
            memcpy(&v, t->data + 8 * i, 8);
        } else {
            int32_t v32;
            memcpy(&v32, t->data + 4 * i, 4);
            v = v32;
        }
        if (v != want[i])
            return repq_fail(err, REPQ_ERR_FORMAT, "%s[%zu] = %lld differs from the computed index %d", t->name,
                             i, (long long)v, want[i]);
    }
    return REPQ_OK;
}

static repq_status check_mask(repq_object *err, const repq_st_tensor *t, const repq_swin_window *w,
                              int32_t *region, float *mask)
{
    const int64_t area = repq_swin_window_area(w), windows = repq_swin_window_count(w);
    if (!repq_swin_window_shifted(w))
        return repq_fail(err, REPQ_ERR_FORMAT, "%s: this block does not shift its windows, yet has a mask", t->name);
    if (t->ndim != 3 || t->shape[0] != windows || t->shape[1] != area || t->shape[2] != area)
        return repq_fail(err, REPQ_ERR_FORMAT, "%s: expected shape [%lld, %lld, %lld]", t->name,
                         (long long)windows, (long long)area, (long long)area);
    repq_status st = repq_st_read_f32(err, t, mask, t->numel);
    if (st)
        return st;
    repq_swin_window_regions(w, region);
    for (int64_t win = 0; win < windows; win++)
        for (int64_t i = 0; i < area; i++)
            for (int64_t j = 0; j < area; j++) {
                const int32_t *r = region + win * area;
                const float want = r[i] != r[j] ? -100.0f : 0.0f;
                const float got = mask[(win * area + i) * area + j];
                if (got != want)
                    return repq_fail(err, REPQ_ERR_FORMAT, "%s[%lld][%lld][%lld] = %g differs from timm's %g",
                                     t->name, (long long)win, (long long)i, (long long)j, (double)got,
                                     (double)want);
            }
    return REPQ_OK;
}

repq_status repq_swin_buffers_check(repq_object *err, const repq_allocator *al, const repq_swin_arch *a,
                                    const repq_st_file *file)
{
    /* Scratch for the largest stage: its region map (grid^2) and mask or index table. */
    size_t most = 0;
    for (int32_t s = 0; s < a->stages; s++) {
        const repq_swin_window w = repq_swin_block_window(a, s, 0);
        const size_t cells = (size_t)w.grid_h * (size_t)w.grid_w * (size_t)repq_swin_window_area(&w);
        most = cells > most ? cells : most;
    }
    const size_t grid0 = (size_t)repq_swin_stage_grid(a, 0) * (size_t)repq_swin_stage_grid(a, 0);
    int32_t *ints = repq_mem_alloc(al, (most + grid0) * sizeof *ints);
    float *mask = repq_mem_alloc(al, most * sizeof *mask);
    repq_status st = REPQ_OK;
    if (!ints || !mask)
        st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory checking the Swin buffers");
    for (int32_t s = 0; s < a->stages && !st; s++)
        for (int32_t b = 0; b < a->depths[s] && !st; b++) {
            const repq_swin_window w = repq_swin_block_window(a, s, b);
            char name[REPQ_SWIN_NAME_CAPACITY];
            snprintf(name, sizeof name, "layers.%d.blocks.%d.attn.relative_position_index", s, b);
            const repq_st_tensor *t = repq_st_find(file, name);
            if (t)
                st = check_index(err, t, &w, ints);
            snprintf(name, sizeof name, "layers.%d.blocks.%d.attn_mask", s, b);
            t = repq_st_find(file, name);
            if (t && !st)
                st = check_mask(err, t, &w, ints, mask);
        }
    repq_mem_free(al, ints);
    repq_mem_free(al, mask);
    return st;
}
