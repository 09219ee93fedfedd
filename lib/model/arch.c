/* Architecture descriptions: named presets and the JSON metadata of a file. */
#include "model/vit.h"

#include <float.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
static const float half[3] = {0.5f, 0.5f, 0.5f};

typedef struct preset {
    const char *name;
    int32_t embed_dim, depth, heads;
    const float *mean, *std;
    double crop_pct;
} preset;

/* timm's configurations; augreg ViTs normalize with 0.5 and crop 90%, DeiTs use
 * ImageNet's mean/std and crop 87.5% (Swin: ImageNet's, 90%); all resize bicubic. */
static const preset presets[] = {
    {"deit_tiny_patch16_224", 192, 12, 3, imagenet_mean, imagenet_std, 0.875},
    {"deit_small_patch16_224", 384, 12, 6, imagenet_mean, imagenet_std, 0.875},
    {"deit_base_patch16_224", 768, 12, 12, imagenet_mean, imagenet_std, 0.875},
    {"vit_small_patch16_224", 384, 12, 6, half, half, 0.9},
    {"vit_base_patch16_224", 768, 12, 12, half, half, 0.9},
};

static void set_norm(repq_vit_arch *a, const float *mean, const float *std)
{
    a->image.crop_pct = REPQ_DEFAULT_CROP_PCT;
    a->image.interpolation = REPQ_RESAMPLE_BICUBIC;
    a->pixel_scale = 1.0f / 255.0f;
    for (int c = 0; c < 3; c++) {
        a->mean[c] = mean[c];
        a->std[c] = std[c];
    }
}

repq_status repq_vit_arch_from_preset(repq_object *err, const char *name, repq_vit_arch *out)
{
    if (!name)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "architecture preset name is NULL");
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        const preset *p = &presets[i];
        if (strcmp(p->name, name) != 0)
            continue;
        memset(out, 0, sizeof *out);
        out->img_size = 224;
        out->patch_size = 16;
        out->in_chans = 3;
        out->num_classes = 1000;
        out->embed_dim = p->embed_dim;
        out->depth = p->depth;
        out->num_heads = p->heads;
        out->mlp_hidden = 4 * p->embed_dim;
        out->norm_eps = 1e-6f;
        set_norm(out, p->mean, p->std);
        out->image.crop_pct = p->crop_pct;
        return REPQ_OK;
    }
    return repq_fail(err, REPQ_ERR_UNSUPPORTED, "unknown architecture preset '%s'", name);
}

/* Bounds keep every derived size (tokens x dim x batch) far from overflow and reject
 * absurd files before anything is allocated. */
static repq_status get_int(repq_object *err, json_t *obj, const char *key, int64_t lo, int64_t hi,
                           bool required, int64_t fallback, int32_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            return repq_fail(err, REPQ_ERR_FORMAT, "architecture: missing field '%s'", key);
        *out = (int32_t)fallback;
        return REPQ_OK;
    }
    if (!json_is_integer(v))
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture: field '%s' is not an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                         "architecture: %s = %lld is outside the supported range [%lld, %lld]", key,
                         (long long)x, (long long)lo, (long long)hi);
    *out = (int32_t)x;
    return REPQ_OK;
}

static repq_status parse_arch(repq_object *err, json_t *root, repq_vit_arch *a)
{
    if (!json_is_object(root))
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture metadata is not a JSON object");
    repq_status st;
    if ((st = get_int(err, root, "img_size", 1, 4096, true, 0, &a->img_size)) ||
        (st = get_int(err, root, "patch_size", 1, 1024, true, 0, &a->patch_size)) ||
        (st = get_int(err, root, "in_chans", 3, 3, false, 3, &a->in_chans)) ||
        (st = get_int(err, root, "num_classes", 1, 100000, true, 0, &a->num_classes)) ||
        (st = get_int(err, root, "embed_dim", 1, 8192, true, 0, &a->embed_dim)) ||
        (st = get_int(err, root, "depth", 1, 256, true, 0, &a->depth)) ||
        (st = get_int(err, root, "num_heads", 1, 256, true, 0, &a->num_heads)))
        return st;
    if (a->img_size % a->patch_size != 0)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: patch_size %d does not divide img_size %d",
                         a->patch_size, a->img_size);
    if (repq_vit_tokens(a) > 16385)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: %d tokens is more than 16385",
                         repq_vit_tokens(a));
    if (a->embed_dim % a->num_heads != 0)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: num_heads %d does not divide embed_dim %d",
                         a->num_heads, a->embed_dim);
    json_t *ratio = json_object_get(root, "mlp_ratio");
    double r = 4.0;
    if (ratio) {
        if (!json_is_number(ratio))
            return repq_fail(err, REPQ_ERR_FORMAT, "architecture: mlp_ratio is not a number");
        r = json_number_value(ratio);
    }
    double hidden = r * a->embed_dim;
    if (!(hidden >= 1.0 && hidden <= 65536.0) || hidden != floor(hidden))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: mlp_ratio %g gives an invalid hidden width", r);
    a->mlp_hidden = (int32_t)hidden;
    json_t *eps = json_object_get(root, "norm_eps");
    double e = 1e-6;
    if (eps) {
        if (!json_is_number(eps))
            return repq_fail(err, REPQ_ERR_FORMAT, "architecture: norm_eps is not a number");
        e = json_number_value(eps);
    }
    /* Checked as the float it is narrowed to: 1e-70 would become 0 and 0.999999997
     * would become 1. The range check first keeps the conversion defined. */
    float ef = e > 0.0 && e < 1.0 ? (float)e : 0.0f;
    if (!(ef >= FLT_MIN && ef < 1.0f))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: norm_eps %.9g is not in [FLT_MIN, 1) as a float", e);
    a->norm_eps = ef;
    /* What the forward pass implements; anything else must be refused, not run wrongly. */
    const struct { const char *key; const char *want; } strings[] = {
        {"global_pool", "token"}, {"act", "gelu_erf"},
    };
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(root, strings[i].key);
        if (v && (!json_is_string(v) || strcmp(json_string_value(v), strings[i].want) != 0))
            return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: only %s = \"%s\" is supported",
                             strings[i].key, strings[i].want);
    }
    const char *flags[] = {"class_token", "qkv_bias"};
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_object_get(root, flags[i]);
        if (v && !json_is_true(v))
            return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: only %s = true is supported", flags[i]);
    }
    return REPQ_OK;
}

static repq_status parse_float3(repq_object *err, json_t *root, const char *key, float *out)
{
    json_t *v = json_object_get(root, key);
    if (!v)
        return REPQ_OK;
    if (!json_is_array(v) || json_array_size(v) != 3)
        return repq_fail(err, REPQ_ERR_FORMAT, "preprocess: '%s' is not an array of 3 numbers", key);
    for (size_t c = 0; c < 3; c++) {
        json_t *x = json_array_get(v, c);
        if (!json_is_number(x) || !(fabs(json_number_value(x)) <= FLT_MAX))
            return repq_fail(err, REPQ_ERR_FORMAT, "preprocess: '%s'[%zu] is not a finite float", key, c);
        out[c] = (float)json_number_value(x);
    }
    return REPQ_OK;
}

/* timm's names for the resize; "crop_pct" as in timm's pretrained_cfg. */
static repq_status parse_image_prep(repq_object *err, json_t *root, repq_image_prep *out)
{
    json_t *pct = json_object_get(root, "crop_pct");
    if (pct) {
        double v = json_is_number(pct) ? json_number_value(pct) : 0.0;
        if (!(v >= 0.05 && v <= 1.0))
            return repq_fail(err, REPQ_ERR_FORMAT, "preprocess: crop_pct is not a number in [0.05, 1]");
        out->crop_pct = v;
    }
    json_t *interp = json_object_get(root, "interpolation");
    if (interp) {
        const char *name = json_is_string(interp) ? json_string_value(interp) : "";
        if (strcmp(name, "bicubic") == 0)
            out->interpolation = REPQ_RESAMPLE_BICUBIC;
        else if (strcmp(name, "bilinear") == 0)
            out->interpolation = REPQ_RESAMPLE_BILINEAR;
        else
            return repq_fail(err, REPQ_ERR_UNSUPPORTED, "preprocess: interpolation is \"bicubic\" or \"bilinear\"");
    }
    return REPQ_OK;
}

static repq_status parse_preprocess(repq_object *err, json_t *root, repq_vit_arch *a)
{
    if (!json_is_object(root))
        return repq_fail(err, REPQ_ERR_FORMAT, "preprocess metadata is not a JSON object");
    repq_status st;
    if ((st = parse_float3(err, root, "mean", a->mean)) || (st = parse_float3(err, root, "std", a->std)))
        return st;
    for (int c = 0; c < 3; c++)
        if (!(a->std[c] >= FLT_MIN))
            return repq_fail(err, REPQ_ERR_FORMAT, "preprocess: std[%d] is not a positive normal float", c);
    json_t *scale = json_object_get(root, "scale");
    if (scale) {
        if (!json_is_number(scale) || !(json_number_value(scale) >= FLT_MIN) ||
            !(json_number_value(scale) <= FLT_MAX))
            return repq_fail(err, REPQ_ERR_FORMAT, "preprocess: scale is not a positive normal float");
        a->pixel_scale = (float)json_number_value(scale);
    }
    return parse_image_prep(err, root, &a->image);
}

static repq_status parse_json(repq_object *err, const char *what, const char *text, json_t **out)
{
    json_error_t jerr;
    *out = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out)
        return repq_fail(err, REPQ_ERR_FORMAT, "%s metadata is not valid JSON: %s (line %d, column %d)",
                         what, jerr.text, jerr.line, jerr.column);
    return REPQ_OK;
}

repq_status repq_vit_arch_from_json(repq_object *err, const char *arch_json,
                                    const char *preprocess_json, repq_vit_arch *out)
{
    if (!arch_json)
        return repq_fail(err, REPQ_ERR_FORMAT,
                         "the file has no 'architecture' metadata; name a preset instead");
    repq_vit_arch a;
    memset(&a, 0, sizeof a);
    set_norm(&a, imagenet_mean, imagenet_std);
    json_t *root;
    repq_status st = parse_json(err, "architecture", arch_json, &root);
    if (st)
        return st;
    st = parse_arch(err, root, &a);
    json_decref(root);
    if (st)
        return st;
    if (preprocess_json) {
        if ((st = parse_json(err, "preprocess", preprocess_json, &root)))
            return st;
        st = parse_preprocess(err, root, &a);
        json_decref(root);
        if (st)
            return st;
    }
    *out = a;
    return REPQ_OK;
}
