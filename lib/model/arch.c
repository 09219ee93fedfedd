/* Architecture descriptions: named presets and the JSON metadata of a file. */
#include "model/arch.h"

#include "model/arch_json.h"

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

static void set_norm(repq_arch *a, const float *mean, const float *std)
{
    a->image.crop_pct = REPQ_DEFAULT_CROP_PCT;
    a->image.interpolation = REPQ_RESAMPLE_BICUBIC;
    a->pixel_scale = 1.0f / 255.0f;
    for (int c = 0; c < 3; c++) {
        a->mean[c] = mean[c];
        a->std[c] = std[c];
    }
}

void repq_arch_from_swin(const repq_swin_arch *s, repq_arch *out)
{
    memset(out, 0, sizeof *out);
    out->family = REPQ_FAMILY_SWIN;
    out->img_size = s->img_size;
    out->patch_size = s->patch_size;
    out->in_chans = s->in_chans;
    out->num_classes = s->num_classes;
    out->embed_dim = s->embed_dim;
    for (int32_t i = 0; i < s->stages; i++)
        out->depth += s->depths[i];
    out->num_heads = s->num_heads[0];
    out->mlp_hidden = s->mlp_hidden[0];
    out->norm_eps = s->norm_eps;
    out->pixel_scale = s->pixel_scale;
    for (int c = 0; c < 3; c++) {
        out->mean[c] = s->mean[c];
        out->std[c] = s->std[c];
    }
    out->swin = *s;
    /* timm's Swin configurations crop 90%, bicubic. */
    out->image.crop_pct = 0.9;
    out->image.interpolation = REPQ_RESAMPLE_BICUBIC;
}

repq_status repq_arch_from_preset(repq_object *err, const char *name, repq_arch *out)
{
    if (!name)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "architecture preset name is NULL");
    if (strncmp(name, "swin_", 5) == 0) {
        repq_swin_arch s;
        repq_status st = repq_swin_arch_from_preset(err, name, &s);
        if (st == REPQ_OK)
            repq_arch_from_swin(&s, out);
        return st;
    }
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

static repq_status parse_arch(repq_object *err, json_t *root, repq_arch *a)
{
    if (!json_is_object(root))
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture metadata is not a JSON object");
    repq_status st;
    if ((st = repq_arch_json_int(err, root, "img_size", 1, 4096, true, 0, &a->img_size)) ||
        (st = repq_arch_json_int(err, root, "patch_size", 1, 1024, true, 0, &a->patch_size)) ||
        (st = repq_arch_json_int(err, root, "in_chans", 3, 3, false, 3, &a->in_chans)) ||
        (st = repq_arch_json_int(err, root, "num_classes", 1, 100000, true, 0, &a->num_classes)) ||
        (st = repq_arch_json_int(err, root, "embed_dim", 1, 8192, true, 0, &a->embed_dim)) ||
        (st = repq_arch_json_int(err, root, "depth", 1, 256, true, 0, &a->depth)) ||
        (st = repq_arch_json_int(err, root, "num_heads", 1, 256, true, 0, &a->num_heads)))
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
    double r;
    if ((st = repq_arch_json_number(err, root, "mlp_ratio", 4.0, &r)))
        return st;
    double hidden = r * a->embed_dim;
    if (!(hidden >= 1.0 && hidden <= 65536.0) || hidden != floor(hidden))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: mlp_ratio %g gives an invalid hidden width", r);
    a->mlp_hidden = (int32_t)hidden;
    if ((st = repq_arch_json_norm_eps(err, root, 1e-6, &a->norm_eps)))
        return st;
    /* What the forward pass implements; anything else must be refused, not run wrongly. */
    if ((st = repq_arch_json_require_string(err, root, "global_pool", "token")) ||
        (st = repq_arch_json_require_string(err, root, "act", "gelu_erf")) ||
        (st = repq_arch_json_require_flag(err, root, "class_token", true)) ||
        (st = repq_arch_json_require_flag(err, root, "qkv_bias", true)))
        return st;
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

/* The resize fields of a "preprocess" entry (NULL: none) into out. */
static repq_status image_prep_from_text(repq_object *err, const char *preprocess_json, repq_image_prep *out)
{
    if (!preprocess_json)
        return REPQ_OK;
    json_t *root;
    repq_status st = repq_arch_json_parse(err, "preprocess", preprocess_json, &root);
    if (st)
        return st;
    st = parse_image_prep(err, root, out);
    json_decref(root);
    return st;
}

static repq_status read_arch(repq_object *err, json_t *root, void *arch) { return parse_arch(err, root, arch); }

repq_status repq_arch_from_json(repq_object *err, const char *arch_json,
                                    const char *preprocess_json, repq_arch *out)
{
    repq_arch a;
    memset(&a, 0, sizeof a);
    set_norm(&a, imagenet_mean, imagenet_std);
    repq_status st = repq_arch_json_read(err, arch_json, preprocess_json, read_arch, &a, &a.pixel_scale, a.mean, a.std);
    if (st || (st = image_prep_from_text(err, preprocess_json, &a.image)))
        return st;
    *out = a;
    return REPQ_OK;
}

/* The family an architecture JSON names with "family" (the quantized-model file's
 * way): REPQ_FAMILY_SWIN for "swin", REPQ_FAMILY_VIT without the key or for "vit", -1
 * for anything else. */
static int family_named(const char *arch_json)
{
    json_t *root = arch_json ? json_loads(arch_json, 0, NULL) : NULL;
    json_t *v = json_object_get(root, "family");
    const char *family = json_string_value(v);
    const int named = !v ? REPQ_FAMILY_VIT
                      : family && strcmp(family, "swin") == 0 ? REPQ_FAMILY_SWIN
                      : family && strcmp(family, "vit") == 0 ? REPQ_FAMILY_VIT
                                                             : -1;
    json_decref(root);
    return named;
}

repq_status repq_arch_from_metadata(repq_object *err, const char *format, const char *arch_json,
                                    const char *preprocess_json, repq_arch *out)
{
    const int family = family_named(arch_json);
    if (family < 0)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: 'family' is neither \"vit\" nor \"swin\"");
    if ((format && strcmp(format, "timm.swin_transformer") == 0) || family == REPQ_FAMILY_SWIN) {
        repq_swin_arch s;
        repq_status st = repq_swin_arch_from_json(err, arch_json, preprocess_json, &s);
        if (st == REPQ_OK) {
            repq_arch_from_swin(&s, out);
            st = image_prep_from_text(err, preprocess_json, &out->image);
        }
        return st;
    }
    return repq_arch_from_json(err, arch_json, preprocess_json, out);
}
