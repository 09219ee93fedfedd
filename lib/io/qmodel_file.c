/* The quantized-model file (docs/format.md): one safetensors file holding the integer
 * weight codes with their per-output-channel quantizers, the rewritten float
 * parameters that are not linear weights, and JSON metadata describing the
 * architecture and every activation quantizer. Saving writes only reparameterized
 * qmodels; loading treats the file as hostile: every field, shape, code and scale is
 * checked before the qmodel is handed out. */
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "io/safetensors.h"
#include "io/qmodel_file.h"
#include "model/qmodel.h"

#define QMODEL_FORMAT "repq.qmodel"
/* Version 2 added the two-region quantizer (kind 5), which version-1 readers would
 * refuse as malformed; version 3 the Swin family (its own activation table and tensor
 * names); version 4 mixed widths (a weight width per linear layer, "layer_bits", and
 * activation quantizers whose bits differ from the header's). A file is written with
 * the oldest version that holds it, so version-1 readers still read every ViT file
 * without a two-region quantizer, and uniform files are what they were before 4. */
#define QMODEL_FORMAT_MAJOR 4


/* ---- What a file holds -------------------------------------------------------------- */

/* A float tensor of the file: a parameter that is not a linear weight. */
typedef struct float_entry {
    const char *name;
    float *data; /* into the parameter set, NULL when none was given */
    int32_t ndim;
    const int64_t *shape;
    size_t count;
} float_entry;

/* Entry `i` in file order (the parameters that are not linear weights, in the net's
 * parameter order); false past the end. `p` may be NULL (names and shapes only). */
static bool float_entry_at(const repq_net *net, const repq_params *p, size_t i, float_entry *e)
{
    size_t seen = 0;
    for (int32_t k = 0; k < net->num_params; k++) {
        const int32_t at = net->param_order[k];
        const repq_net_param *np = &net->params[at];
        if (np->linear >= 0)
            continue;
        if (seen++ == i) {
            *e = (float_entry){np->name, p ? repq_net_param_data(net, p->arena, at) : NULL, np->ndim, np->shape,
                               np->count};
            return true;
        }
    }
    return false;
}

static int64_t packed_cols(int32_t bits, int32_t in)
{
    return bits <= 4 ? ((int64_t)in + 1) / 2 : in;
}

/* ---- Activation quantizers: which kind sits where ------------------------------------- */

/* Whether `kind` may sit at slot `i`: a slot that is used has a uniform quantizer, or
 * at the attention probabilities a log2-parity one, or at fc2's input a two-region
 * one; every unused slot (the ViT layout's padding) is NONE. Failures are reported
 * with `code` (REPQ_ERR_FORMAT when loading, REPQ_ERR_STATE when saving). */
static repq_status check_kind(repq_object *err, repq_status code, const repq_net *net, size_t i, int32_t kind)
{
    const repq_net_slot *sl = &net->slots[i];
    const int32_t block = sl->unit;
    const repq_qpoint pt = sl->point;
    if (!sl->used) {
        if (kind != REPQ_AQ_NONE)
            return repq_fail(err, code, "quant: activation %zu (block %d, point %d) is not a quantization point "
                             "but has kind %d", i, (int)block, (int)pt, (int)kind);
        return REPQ_OK;
    }
    if (kind == REPQ_AQ_UNIFORM || (kind == REPQ_AQ_LOG2_PARITY && pt == REPQ_QP_ATTN) ||
        (kind == REPQ_AQ_TWO_REGION && pt == REPQ_QP_FC2_IN))
        return REPQ_OK;
    return repq_fail(err, code, "quant: activation %zu (block %d, point %d) has kind %d, which a "
                     "reparameterized model cannot have there", i, (int)block, (int)pt, (int)kind);
}

/* The widths a file's header sets: each activation quantizer's bits must be the
 * header's act_bits (patch_input_bits at the patch input) unless widths are mixed
 * (version 4), where each quantizer carries its own. */
typedef struct header_widths {
    int32_t act_bits, patch_input_bits;
    bool mixed;
} header_widths;

/* Check the parameters of quantizer `i` (its kind already checked): bits agreeing
 * with the header, usable scale and zero point, finite levels. */
static repq_status check_params(repq_object *err, repq_status code, const repq_net *net, const header_widths *hw,
                                size_t i, const repq_act_quant *aq)
{
    const repq_qpoint pt = net->slots[i].point;
    int32_t bits = pt == REPQ_QP_PATCH_IN ? hw->patch_input_bits : hw->act_bits;
    if (hw->mixed)
        bits = repq_act_quant_bits(aq);
    if (aq->kind == REPQ_AQ_UNIFORM) {
        const repq_quant_params *u = &aq->uniform;
        if (repq_quant_params_check(u) != REPQ_OK)
            return repq_fail(err, code, "quant: activation %zu has unusable uniform parameters "
                             "(scale %g, zero point %d, bits %d)", i, (double)u->scale, (int)u->zero_point,
                             (int)u->bits);
        if (u->bits != bits)
            return repq_fail(err, code, "quant: activation %zu has %d bits, the header says %d", i,
                             (int)u->bits, (int)bits);
        /* Every level s (q - z) must be a finite float. */
        double reach = fabs((double)u->zero_point) + (double)((1 << u->bits) - 1);
        if (!((double)u->scale * reach <= (double)FLT_MAX))
            return repq_fail(err, code, "quant: activation %zu: scale %g overflows its levels", i,
                             (double)u->scale);
    } else if (aq->kind == REPQ_AQ_TWO_REGION) {
        const repq_tworeg_params *t = &aq->two;
        if (repq_tworeg_params_check(t) != REPQ_OK)
            return repq_fail(err, code, "quant: activation %zu has unusable two-region parameters "
                             "(scale %g, zero point %d, bits %d, neg_shift %d)", i, (double)t->scale,
                             (int)t->zero_point, (int)t->bits, (int)t->neg_shift);
        if (t->bits != bits)
            return repq_fail(err, code, "quant: activation %zu has %d bits, the header says %d", i,
                             (int)t->bits, (int)bits);
    } else if (aq->kind == REPQ_AQ_LOG2_PARITY) {
        const repq_logq_params *l = &aq->log;
        if (repq_logq_params_check(l) != REPQ_OK || l->base != REPQ_LOG_SQRT2)
            return repq_fail(err, code, "quant: activation %zu has unusable log2-parity parameters "
                             "(scale %g, bits %d, base %d)", i, (double)l->scale, (int)l->bits, (int)l->base);
        if (l->bits != bits)
            return repq_fail(err, code, "quant: activation %zu has %d bits, the header says %d", i,
                             (int)l->bits, (int)bits);
    }
    return REPQ_OK;
}

static repq_status check_act(repq_object *err, repq_status code, const repq_net *net, const header_widths *hw,
                             size_t i, const repq_act_quant *aq)
{
    repq_status st = check_kind(err, code, net, i, aq->kind);
    return st ? st : check_params(err, code, net, hw, i, aq);
}

static bool bits_ok(int32_t b)
{
    return b >= REPQ_QUANT_MIN_BITS && b <= REPQ_QUANT_MAX_BITS;
}

/* ---- Saving -------------------------------------------------------------------------- */

static bool put(json_t *o, const char *key, json_t *v)
{
    return json_object_set_new(o, key, v) == 0;
}

static json_t *float3(const float *v)
{
    json_t *arr = json_array();
    for (int c = 0; arr && c < 3; c++)
        if (json_array_append_new(arr, json_real((double)v[c])) != 0) {
            json_decref(arr);
            return NULL;
        }
    return arr;
}

/* An mlp_ratio r with r * embed_dim == mlp_hidden exactly in double, as the reader
 * computes it (hidden / dim itself may miss by one rounding). */
static bool exact_mlp_ratio(const repq_arch *a, double *out)
{
    double want = (double)a->mlp_hidden, r = want / (double)a->embed_dim;
    double up = r, down = r;
    for (int i = 0; i < 8; i++) {
        if (up * (double)a->embed_dim == want) {
            *out = up;
            return true;
        }
        if (down * (double)a->embed_dim == want) {
            *out = down;
            return true;
        }
        up = nextafter(up, INFINITY);
        down = nextafter(down, 0.0);
    }
    return false;
}

static json_t *int_array(const int32_t *v, int32_t n)
{
    json_t *arr = json_array();
    for (int32_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_integer(v[i])) != 0) {
            json_decref(arr);
            return NULL;
        }
    return arr;
}

/* A Swin's architecture in timm's argument names (what repq_swin_arch_from_json reads),
 * marked with "family": "swin". */
static bool swin_arch_json(json_t *ja, const repq_swin_arch *s, double ratio)
{
    const int32_t window[2] = {s->window_h, s->window_w};
    return put(ja, "family", json_string("swin")) && put(ja, "img_size", json_integer(s->img_size)) &&
           put(ja, "patch_size", json_integer(s->patch_size)) && put(ja, "in_chans", json_integer(s->in_chans)) &&
           put(ja, "num_classes", json_integer(s->num_classes)) && put(ja, "embed_dim", json_integer(s->embed_dim)) &&
           put(ja, "depths", int_array(s->depths, s->stages)) && put(ja, "num_heads", int_array(s->num_heads, s->stages)) &&
           put(ja, "window_size", int_array(window, 2)) && put(ja, "mlp_ratio", json_real(ratio)) &&
           put(ja, "qkv_bias", json_boolean(s->qkv_bias)) && put(ja, "norm_eps", json_real((double)s->norm_eps)) &&
           put(ja, "act", json_string("gelu_erf")) && put(ja, "global_pool", json_string("avg")) &&
           put(ja, "patch_norm", json_true()) && put(ja, "ape", json_false());
}

/* The three JSON metadata strings (jansson-allocated, free with free()). */
static repq_status metadata_json(repq_object *err, const repq_qmodel *q, char **arch, char **pre, char **quant)
{
    const repq_arch *a = &q->arch;
    *arch = *pre = *quant = NULL;
    double ratio;
    if (!exact_mlp_ratio(a, &ratio))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "save: mlp_hidden %d is not expressible as a ratio of embed_dim %d",
                         (int)a->mlp_hidden, (int)a->embed_dim);
    json_t *ja = json_object(), *jp = json_object(), *jq = json_object(), *acts = json_array();
    bool ok = ja && jp && jq && acts;
    if (ok && a->family == REPQ_FAMILY_SWIN)
        ok = swin_arch_json(ja, &a->swin, ratio);
    else if (ok)
        ok = put(ja, "img_size", json_integer(a->img_size)) && put(ja, "patch_size", json_integer(a->patch_size)) &&
             put(ja, "in_chans", json_integer(a->in_chans)) &&
             put(ja, "num_classes", json_integer(a->num_classes)) &&
             put(ja, "embed_dim", json_integer(a->embed_dim)) && put(ja, "depth", json_integer(a->depth)) &&
             put(ja, "num_heads", json_integer(a->num_heads)) && put(ja, "mlp_ratio", json_real(ratio)) &&
             put(ja, "mlp_hidden", json_integer(a->mlp_hidden)) &&
             put(ja, "norm_eps", json_real((double)a->norm_eps)) && put(ja, "qkv_bias", json_true()) &&
             put(ja, "class_token", json_true()) && put(ja, "global_pool", json_string("token")) &&
             put(ja, "act", json_string("gelu_erf"));
    if (ok)
        ok = put(jp, "mean", float3(a->mean)) && put(jp, "std", float3(a->std)) &&
             put(jp, "scale", json_real((double)a->pixel_scale)) &&
             put(jp, "crop_pct", json_real(a->image.crop_pct)) &&
             put(jp, "interpolation", json_string(a->image.interpolation == REPQ_RESAMPLE_BILINEAR ? "bilinear" : "bicubic")) &&
             put(jq, "weight_bits", json_integer(q->weight_bits)) && put(jq, "act_bits", json_integer(q->act_bits)) &&
             put(jq, "patch_input_bits", json_integer(q->patch_input_bits)) &&
             put(jq, "method", json_integer(q->method));
    if (ok && repq_qmodel_widths_mixed(q)) {
        int32_t *bits = repq_mem_alloc(&q->base.allocator, (size_t)q->num_linear * sizeof *bits);
        for (int32_t id = 0; bits && id < q->num_linear; id++)
            bits[id] = q->layer_bits[id];
        ok = bits && put(jq, "layer_bits", int_array(bits, q->num_linear));
        repq_mem_free(&q->base.allocator, bits);
    }
    for (int32_t i = 0; ok && i < q->net->num_slots; i++) {
        const repq_act_quant *aq = &q->acts[i];
        json_t *e = json_object();
        ok = e && put(e, "kind", json_integer(aq->kind));
        if (ok && aq->kind == REPQ_AQ_UNIFORM)
            ok = put(e, "scale", json_real((double)aq->uniform.scale)) &&
                 put(e, "zero_point", json_integer(aq->uniform.zero_point)) &&
                 put(e, "bits", json_integer(aq->uniform.bits));
        else if (ok && aq->kind == REPQ_AQ_TWO_REGION)
            ok = put(e, "scale", json_real((double)aq->two.scale)) &&
                 put(e, "zero_point", json_integer(aq->two.zero_point)) &&
                 put(e, "bits", json_integer(aq->two.bits)) && put(e, "neg_shift", json_integer(aq->two.neg_shift));
        else if (ok && aq->kind == REPQ_AQ_LOG2_PARITY)
            ok = put(e, "scale", json_real((double)aq->log.scale)) && put(e, "bits", json_integer(aq->log.bits)) &&
                 put(e, "base", json_integer(aq->log.base));
        ok = json_array_append_new(acts, e) == 0 && ok;
    }
    if (ok) {
        ok = put(jq, "activations", acts);
        acts = NULL;
    }
    if (ok) {
        size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17);
        *arch = json_dumps(ja, flags);
        *pre = json_dumps(jp, flags);
        *quant = json_dumps(jq, flags);
        ok = *arch && *pre && *quant;
    }
    json_decref(ja);
    json_decref(jp);
    json_decref(jq);
    json_decref(acts);
    if (!ok) {
        free(*arch);
        free(*pre);
        free(*quant);
        *arch = *pre = *quant = NULL;
        return repq_fail(err, REPQ_ERR_NOMEM, "save: out of memory building the metadata");
    }
    return REPQ_OK;
}

/* Per-layer staging of what is not stored as-is in the qmodel: scales, zero points and
 * (at 4 bits or fewer) packed codes. */
static size_t staging_bytes(const repq_qmodel *q)
{
    size_t total = 0;
    for (int32_t id = 0; id < q->num_linear; id++) {
        const repq_qlinear *l = &q->linear[id];
        total += (size_t)l->out * 8;
        if (q->layer_bits[id] <= 4)
            total += (size_t)l->out * (size_t)packed_cols(q->layer_bits[id], l->in);
    }
    return total;
}

static repq_status add_tensors(repq_st_writer *w, const repq_qmodel *q, uint8_t *stage)
{
    repq_status st = REPQ_OK;
    char name[96];
    for (int32_t id = 0; id < q->num_linear && st == REPQ_OK; id++) {
        const repq_qlinear *l = &q->linear[id];
        const char *base = q->net->linear[id].name;
        float *scales = (float *)(void *)stage;
        int32_t *zps = (int32_t *)(void *)(stage + (size_t)l->out * 4);
        stage += (size_t)l->out * 8;
        for (int32_t o = 0; o < l->out; o++) {
            scales[o] = l->wq[o].scale;
            zps[o] = l->wq[o].zero_point;
        }
        int64_t cols = packed_cols(q->layer_bits[id], l->in);
        const uint8_t *codes = l->codes;
        if (q->layer_bits[id] <= 4) {
            uint8_t *packed = stage;
            stage += (size_t)l->out * (size_t)cols;
            for (int32_t o = 0; o < l->out; o++) {
                const uint8_t *src = l->codes + (size_t)o * (size_t)l->in;
                uint8_t *dst = packed + (size_t)o * (size_t)cols;
                for (int64_t j = 0; j < cols; j++) {
                    uint8_t lo = src[2 * j];
                    uint8_t hi = 2 * j + 1 < l->in ? src[2 * j + 1] : 0;
                    dst[j] = (uint8_t)(lo | (hi << 4));
                }
            }
            codes = packed;
        }
        int64_t cshape[2] = {l->out, cols}, vshape[1] = {l->out};
        snprintf(name, sizeof name, "%s.weight.codes", base);
        st = repq_st_writer_add(w, name, REPQ_ST_U8, 2, cshape, codes, (size_t)l->out * (size_t)cols);
        snprintf(name, sizeof name, "%s.weight.scales", base);
        if (st == REPQ_OK)
            st = repq_st_writer_add(w, name, REPQ_ST_F32, 1, vshape, scales, (size_t)l->out * 4);
        snprintf(name, sizeof name, "%s.weight.zero_points", base);
        if (st == REPQ_OK)
            st = repq_st_writer_add(w, name, REPQ_ST_I32, 1, vshape, zps, (size_t)l->out * 4);
    }
    float_entry e;
    for (size_t i = 0; st == REPQ_OK && float_entry_at(q->net, &q->float_params, i, &e); i++)
        st = repq_st_writer_add(w, e.name, REPQ_ST_F32, e.ndim, e.shape, e.data, e.count * sizeof(float));
    return st;
}

/* The oldest format version that holds q: 4 with mixed widths, 3 for a Swin, 2 with a
 * two-region quantizer, else 1 (which every reader reads). */
static const char *format_version(const repq_qmodel *q)
{
    if (repq_qmodel_widths_mixed(q))
        return "4";
    if (q->arch.family == REPQ_FAMILY_SWIN)
        return "3";
    return repq_qmodel_two_region_blocks(q) > 0 ? "2" : "1";
}

REPQ_API repq_status repq_qmodel_save(repq_qmodel *q, const char *path)
{
    if (!repq_object_is(q, REPQ_KIND_QMODEL))
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = &q->base;
    if (!path)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_qmodel_save: path is NULL");
    if (q->reparameterized != 1)
        return repq_fail(err, REPQ_ERR_STATE,
                         "repq_qmodel_save: only a reparameterized qmodel can be saved (call "
                         "repq_qmodel_reparameterize first)");
    if (!bits_ok(q->weight_bits) || !bits_ok(q->act_bits) || !bits_ok(q->patch_input_bits))
        return repq_fail(err, REPQ_ERR_STATE, "repq_qmodel_save: bits out of range");
    /* Never write a file the loader would refuse. */
    repq_status st = REPQ_OK;
    const header_widths hw = {q->act_bits, q->patch_input_bits, repq_qmodel_widths_mixed(q)};
    for (int32_t i = 0; i < q->net->num_slots && st == REPQ_OK; i++)
        st = check_act(err, REPQ_ERR_STATE, q->net, &hw, (size_t)i, &q->acts[i]);
    for (int32_t id = 0; id < q->num_linear && st == REPQ_OK; id++)
        for (int32_t o = 0; o < q->linear[id].out && st == REPQ_OK; o++)
            if (repq_quant_params_check(&q->linear[id].wq[o]) != REPQ_OK ||
                q->linear[id].wq[o].bits != q->layer_bits[id])
                st = repq_fail(err, REPQ_ERR_STATE, "repq_qmodel_save: linear layer %d channel %d has "
                               "unusable weight quantizer", (int)id, (int)o);
    if (st)
        return st;
    char *arch = NULL, *pre = NULL, *quant = NULL;
    if ((st = metadata_json(err, q, &arch, &pre, &quant)))
        return st;
    const repq_allocator *al = &q->base.allocator;
    uint8_t *stage = repq_mem_alloc(al, staging_bytes(q));
    repq_st_writer *w = NULL;
    if (!stage)
        st = repq_fail(err, REPQ_ERR_NOMEM, "repq_qmodel_save: out of memory");
    if (st == REPQ_OK)
        st = repq_st_writer_new(err, al, &w);
    if (st == REPQ_OK)
        st = add_tensors(w, q, stage);
    if (st == REPQ_OK)
        st = repq_st_writer_set_metadata(w, "format", QMODEL_FORMAT);
    if (st == REPQ_OK)
        st = repq_st_writer_set_metadata(w, "format_version", format_version(q));
    if (st == REPQ_OK)
        st = repq_st_writer_set_metadata(w, "architecture", arch);
    if (st == REPQ_OK)
        st = repq_st_writer_set_metadata(w, "preprocess", pre);
    if (st == REPQ_OK)
        st = repq_st_writer_set_metadata(w, "quant", quant);
    if (st == REPQ_OK)
        st = repq_st_writer_write(w, path);
    repq_st_writer_free(w);
    repq_mem_free(al, stage);
    free(arch);
    free(pre);
    free(quant);
    return st;
}

/* ---- Loading ------------------------------------------------------------------------- */

/* "1" or "1.<minor>": the major version, or -1 if the string is not a version. */
static long parse_major(const char *s)
{
    long major = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        if (i >= 6)
            return -1;
        major = major * 10 + (s[i] - '0');
    }
    if (i == 0)
        return -1;
    if (s[i] == '.') {
        size_t j = i + 1;
        for (; s[j] >= '0' && s[j] <= '9'; j++)
            ;
        if (j == i + 1)
            return -1;
        i = j;
    }
    return s[i] == '\0' ? major : -1;
}

static repq_status json_int(repq_object *err, json_t *obj, const char *what, const char *key, int64_t lo,
                            int64_t hi, int32_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return repq_fail(err, REPQ_ERR_FORMAT, "quant: %s has no '%s'", what, key);
    if (!json_is_integer(v))
        return repq_fail(err, REPQ_ERR_FORMAT, "quant: %s: '%s' is not an integer", what, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return repq_fail(err, REPQ_ERR_FORMAT, "quant: %s: %s = %lld is outside [%lld, %lld]", what, key,
                         (long long)x, (long long)lo, (long long)hi);
    *out = (int32_t)x;
    return REPQ_OK;
}

static repq_status json_scale(repq_object *err, json_t *obj, const char *what, float *out)
{
    json_t *v = json_object_get(obj, "scale");
    if (!v || !json_is_number(v))
        return repq_fail(err, REPQ_ERR_FORMAT, "quant: %s: 'scale' is missing or not a number", what);
    double d = json_number_value(v);
    if (!(d > 0.0 && d <= (double)FLT_MAX))
        return repq_fail(err, REPQ_ERR_FORMAT, "quant: %s: scale %g is not a positive float", what, d);
    *out = (float)d;
    return REPQ_OK;
}

/* The header fields and activation quantizers of the "quant" metadata into q. */
typedef struct quant_header {
    int32_t weight_bits, act_bits, patch_input_bits, method;
    long format_major; /* from format_version: kind 5 needs 2 */
} quant_header;

static repq_status parse_quant_header(repq_object *err, json_t *root, quant_header *h)
{
    if (!json_is_object(root))
        return repq_fail(err, REPQ_ERR_FORMAT, "quant metadata is not a JSON object");
    repq_status st;
    if ((st = json_int(err, root, "header", "weight_bits", REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS, &h->weight_bits)) ||
        (st = json_int(err, root, "header", "act_bits", REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS, &h->act_bits)) ||
        (st = json_int(err, root, "header", "patch_input_bits", REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS,
                       &h->patch_input_bits)) ||
        (st = json_int(err, root, "header", "method", REPQ_METHOD_REPQ, REPQ_METHOD_MINMAX, &h->method)))
        return st;
    return REPQ_OK;
}

/* Each linear layer's weight width: version 4's "layer_bits" (one entry per layer, in
 * the net's order), else the header's weight_bits for every layer. */
static repq_status parse_layer_bits(repq_object *err, json_t *root, const repq_net *net, const quant_header *h,
                                    int8_t *bits)
{
    json_t *arr = json_object_get(root, "layer_bits");
    if (h->format_major < 4) {
        if (arr)
            return repq_fail(err, REPQ_ERR_FORMAT, "quant: 'layer_bits' needs format_version 4 (the file says %ld)",
                             h->format_major);
        memset(bits, h->weight_bits, (size_t)net->num_linear);
        return REPQ_OK;
    }
    if (!json_is_array(arr) || json_array_size(arr) != (size_t)net->num_linear)
        return repq_fail(err, REPQ_ERR_FORMAT, "quant: 'layer_bits' is not an array of %d entries (one per linear "
                         "layer)", (int)net->num_linear);
    for (int32_t id = 0; id < net->num_linear; id++) {
        json_t *v = json_array_get(arr, (size_t)id);
        if (!json_is_integer(v) || json_integer_value(v) < REPQ_QUANT_MIN_BITS ||
            json_integer_value(v) > REPQ_QUANT_MAX_BITS)
            return repq_fail(err, REPQ_ERR_FORMAT, "quant: layer_bits[%d] (layer '%s') is not an integer in [%d, %d]",
                             (int)id, net->linear[id].name, REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS);
        bits[id] = (int8_t)json_integer_value(v);
    }
    return REPQ_OK;
}

static repq_status parse_acts(repq_object *err, json_t *root, const repq_net *net, const quant_header *h,
                              repq_act_quant *acts)
{
    const size_t count = (size_t)net->num_slots;
    json_t *arr = json_object_get(root, "activations");
    if (!json_is_array(arr) || json_array_size(arr) != count)
        return repq_fail(err, REPQ_ERR_FORMAT, "quant: 'activations' is not an array of %zu entries", count);
    for (size_t i = 0; i < count; i++) {
        json_t *e = json_array_get(arr, i);
        char what[40];
        snprintf(what, sizeof what, "activation %zu", i);
        if (!json_is_object(e))
            return repq_fail(err, REPQ_ERR_FORMAT, "quant: %s is not an object", what);
        repq_act_quant *aq = &acts[i];
        repq_status st = json_int(err, e, what, "kind", REPQ_AQ_NONE, REPQ_AQ_TWO_REGION, &aq->kind);
        if (st || (st = check_kind(err, REPQ_ERR_FORMAT, net, i, aq->kind)))
            return st;
        if (aq->kind == REPQ_AQ_TWO_REGION && h->format_major < 2)
            return repq_fail(err, REPQ_ERR_FORMAT, "quant: %s has kind 5 (two-region), which format_version %ld "
                             "cannot hold", what, h->format_major);
        if (aq->kind == REPQ_AQ_UNIFORM) {
            if ((st = json_scale(err, e, what, &aq->uniform.scale)) ||
                (st = json_int(err, e, what, "zero_point", -REPQ_QUANT_ZERO_POINT_MAX, REPQ_QUANT_ZERO_POINT_MAX,
                               &aq->uniform.zero_point)) ||
                (st = json_int(err, e, what, "bits", REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS, &aq->uniform.bits)))
                return st;
        } else if (aq->kind == REPQ_AQ_TWO_REGION) {
            if ((st = json_scale(err, e, what, &aq->two.scale)) ||
                (st = json_int(err, e, what, "zero_point", 0, 255, &aq->two.zero_point)) ||
                (st = json_int(err, e, what, "bits", REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS, &aq->two.bits)) ||
                (st = json_int(err, e, what, "neg_shift", 0, REPQ_TWOREG_MAX_SHIFT, &aq->two.neg_shift)))
                return st;
        } else if (aq->kind == REPQ_AQ_LOG2_PARITY) {
            int32_t base;
            if ((st = json_scale(err, e, what, &aq->log.scale)) ||
                (st = json_int(err, e, what, "bits", REPQ_QUANT_MIN_BITS, REPQ_QUANT_MAX_BITS, &aq->log.bits)) ||
                (st = json_int(err, e, what, "base", REPQ_LOG_SQRT2, REPQ_LOG_SQRT2, &base)))
                return st;
            aq->log.base = (repq_log_base)base;
        }
        const header_widths hw = {h->act_bits, h->patch_input_bits, h->format_major >= 4};
        if ((st = check_params(err, REPQ_ERR_FORMAT, net, &hw, i, aq)))
            return st;
    }
    return REPQ_OK;
}

static const repq_st_tensor *expect(repq_object *err, repq_status *st, const repq_st_file *f, const char *name,
                                    repq_st_dtype dtype, int32_t ndim, const int64_t *shape)
{
    const repq_st_tensor *t = repq_st_find(f, name);
    if (!t) {
        *st = repq_fail(err, REPQ_ERR_FORMAT, "tensor '%s' is missing from the file", name);
        return NULL;
    }
    bool same = t->dtype == dtype && t->ndim == ndim;
    for (int32_t i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[96];
        int at = snprintf(want, sizeof want, "%s [", repq_st_dtype_name(dtype));
        for (int32_t i = 0; i < ndim && at > 0 && (size_t)at < sizeof want; i++)
            at += snprintf(want + at, sizeof want - (size_t)at, i ? ", %lld" : "%lld", (long long)shape[i]);
        *st = repq_fail(err, REPQ_ERR_FORMAT, "tensor '%s' is not %s]", name, want);
        return NULL;
    }
    *st = REPQ_OK;
    return t;
}

/* Check (q == NULL) or check and copy (q != NULL) every tensor of the file. The
 * check-only pass runs before anything is allocated, so a small file cannot make the
 * loader allocate a large model. */
static repq_status read_tensors(repq_object *err, const repq_st_file *f, const repq_net *net,
                                const int8_t *layer_bits, repq_qmodel *q)
{
    repq_status st = REPQ_OK;
    char name[96];
    for (int32_t id = 0; id < net->num_linear; id++) {
        const int32_t out = net->linear[id].out, in = net->linear[id].in, weight_bits = layer_bits[id];
        const char *base = net->linear[id].name;
        int64_t cols = packed_cols(weight_bits, in);
        int64_t cshape[2] = {out, cols}, vshape[1] = {out};
        snprintf(name, sizeof name, "%s.weight.codes", base);
        const repq_st_tensor *tc = expect(err, &st, f, name, REPQ_ST_U8, 2, cshape);
        if (!tc)
            return st;
        snprintf(name, sizeof name, "%s.weight.scales", base);
        const repq_st_tensor *ts = expect(err, &st, f, name, REPQ_ST_F32, 1, vshape);
        if (!ts)
            return st;
        snprintf(name, sizeof name, "%s.weight.zero_points", base);
        const repq_st_tensor *tz = expect(err, &st, f, name, REPQ_ST_I32, 1, vshape);
        if (!tz)
            return st;
        if (!q)
            continue;
        repq_qlinear *l = &q->linear[id];
        uint32_t limit = 1u << weight_bits;
        for (int32_t o = 0; o < out; o++) {
            repq_quant_params *p = &l->wq[o];
            memcpy(&p->scale, ts->data + (size_t)o * 4, 4);
            memcpy(&p->zero_point, tz->data + (size_t)o * 4, 4);
            p->bits = weight_bits;
            if (repq_quant_params_check(p) != REPQ_OK)
                return repq_fail(err, REPQ_ERR_FORMAT, "tensors '%s.weight.scales/zero_points': channel %d has an "
                                 "unusable quantizer (scale %g, zero point %d)", base, (int)o, (double)p->scale,
                                 (int)p->zero_point);
            double reach = fabs((double)p->zero_point) + (double)(limit - 1);
            if (!((double)p->scale * reach <= (double)FLT_MAX))
                return repq_fail(err, REPQ_ERR_FORMAT, "tensor '%s.weight.scales': channel %d: scale %g overflows",
                                 base, (int)o, (double)p->scale);
            const uint8_t *src = tc->data + (size_t)o * (size_t)cols;
            uint8_t *dst = l->codes + (size_t)o * (size_t)in;
            if (weight_bits <= 4) {
                for (int64_t j = 0; j < cols; j++) {
                    uint8_t lo = src[j] & 15u, hi = (uint8_t)(src[j] >> 4);
                    dst[2 * j] = lo;
                    if (2 * j + 1 < in)
                        dst[2 * j + 1] = hi;
                    else if (hi != 0)
                        return repq_fail(err, REPQ_ERR_FORMAT, "tensor '%s.weight.codes': row %d: the padding "
                                         "nibble is not zero", base, (int)o);
                }
            } else {
                memcpy(dst, src, (size_t)in);
            }
            for (int32_t j = 0; j < in; j++)
                if (dst[j] >= limit)
                    return repq_fail(err, REPQ_ERR_FORMAT, "tensor '%s.weight.codes': code %d at [%d, %d] is not "
                                     "below 2^%d", base, (int)dst[j], (int)o, (int)j, (int)weight_bits);
        }
    }
    float_entry e;
    for (size_t i = 0; float_entry_at(net, q ? &q->float_params : NULL, i, &e); i++) {
        const repq_st_tensor *t = expect(err, &st, f, e.name, REPQ_ST_F32, e.ndim, e.shape);
        if (!t)
            return st;
        if (!q)
            continue;
        memcpy(e.data, t->data, t->nbytes);
        for (size_t k = 0; k < t->numel; k++)
            if (!isfinite(e.data[k]))
                return repq_fail(err, REPQ_ERR_FORMAT, "tensor '%s' holds NaN or infinity at element %zu", e.name, k);
    }
    return REPQ_OK;
}

static repq_status parse_file(repq_object *err, const repq_allocator *al, const repq_st_file *f,
                              repq_qmodel **out)
{
    const char *format = repq_st_metadata(f, "format");
    if (!format || strcmp(format, QMODEL_FORMAT) != 0)
        return repq_fail(err, REPQ_ERR_FORMAT, "not a repq quantized model: metadata 'format' is %s%s%s (want \"%s\")%s",
                         format ? "\"" : "", format ? format : "missing", format ? "\"" : "", QMODEL_FORMAT,
                         repq_st_find(f, "patch_embed.proj.weight") ? "; it holds float weights: load it with "
                         "repq_model_load" : "");
    const char *version = repq_st_metadata(f, "format_version");
    long major = version ? parse_major(version) : -1;
    if (major < 1)
        return repq_fail(err, REPQ_ERR_FORMAT, "metadata 'format_version' is missing or not a version number");
    if (major > QMODEL_FORMAT_MAJOR)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "format_version %s is newer than this library reads (%d)",
                         version, QMODEL_FORMAT_MAJOR);
    repq_arch a;
    repq_status st = repq_arch_from_metadata(err, NULL, repq_st_metadata(f, "architecture"),
                                             repq_st_metadata(f, "preprocess"), &a);
    if (st)
        return st;
    if (a.family == REPQ_FAMILY_SWIN && major < 3)
        return repq_fail(err, REPQ_ERR_FORMAT, "format_version %s cannot hold a Swin model (3 can)", version);
    /* The architecture parser range-checks in double; what the model runs with is the
     * narrowed float, which must still be a usable (normal, finite) value. */
    bool floats_ok = isnormal(a.norm_eps) && isnormal(a.pixel_scale);
    for (int c = 0; c < 3; c++)
        floats_ok = floats_ok && isfinite(a.mean[c]) && isnormal(a.std[c]) && a.std[c] > 0.0f;
    if (!floats_ok)
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture: norm_eps, preprocess scale, mean or std is not "
                         "a usable float (zero, subnormal or out of float range once narrowed)");
    const char *quant = repq_st_metadata(f, "quant");
    if (!quant)
        return repq_fail(err, REPQ_ERR_FORMAT, "metadata 'quant' is missing");
    {
        /* mlp_hidden is written beside mlp_ratio; when present the two must agree. */
        json_t *root = json_loads(repq_st_metadata(f, "architecture"), 0, NULL);
        json_t *hid = root ? json_object_get(root, "mlp_hidden") : NULL;
        bool bad = a.family == REPQ_FAMILY_VIT && hid && (!json_is_integer(hid) || json_integer_value(hid) != a.mlp_hidden);
        json_decref(root);
        if (bad)
            return repq_fail(err, REPQ_ERR_FORMAT, "architecture: mlp_hidden disagrees with mlp_ratio");
    }
    json_error_t jerr;
    json_t *root = json_loads(quant, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return repq_fail(err, REPQ_ERR_FORMAT, "quant metadata is not valid JSON: %s (line %d, column %d)", jerr.text,
                         jerr.line, jerr.column);
    quant_header h;
    st = parse_quant_header(err, root, &h);
    h.format_major = major;
    repq_net *net = NULL;
    int8_t *layer_bits = NULL;
    if (st == REPQ_OK)
        st = repq_net_build(err, al, &a, &net);
    if (st == REPQ_OK && !(layer_bits = repq_mem_alloc(al, (size_t)net->num_linear)))
        st = repq_fail(err, REPQ_ERR_NOMEM, "out of memory reading the layer widths");
    if (st == REPQ_OK)
        st = parse_layer_bits(err, root, net, &h, layer_bits);
    if (st == REPQ_OK)
        st = read_tensors(err, f, net, layer_bits, NULL);
    repq_net_free(al, net);
    repq_qmodel *q = NULL;
    if (st == REPQ_OK)
        st = repq_qmodel_alloc(err, al, &a, &q);
    if (st == REPQ_OK) {
        memcpy(q->layer_bits, layer_bits, (size_t)q->num_linear);
        q->weight_bits = h.weight_bits;
        q->act_bits = h.act_bits;
        q->patch_input_bits = h.patch_input_bits;
        q->method = h.method;
        st = parse_acts(err, root, q->net, &h, q->acts);
    }
    json_decref(root);
    if (st == REPQ_OK)
        st = read_tensors(err, f, q->net, q->layer_bits, q);
    repq_mem_free(al, layer_bits);
    if (st == REPQ_OK) {
        repq_qmodel_rebuild_fq(q);
        st = repq_qmodel_check_windows(err, REPQ_ERR_FORMAT, q);
    }
    if (st == REPQ_OK) {
        /* The float weights are not stored: both sets hold the dequantized codes. */
        memcpy(q->float_params.arena, q->fq_params.arena, q->fq_params.arena_floats * sizeof(float));
        q->has_float_weights = 0;
        q->reparameterized = 1;
        *out = q;
        return REPQ_OK;
    }
    repq_qmodel_free(q);
    return st;
}

repq_status repq_qmodel_parse_memory(repq_object *err, const repq_allocator *al, const uint8_t *bytes,
                                     size_t size, repq_qmodel **out)
{
    *out = NULL;
    repq_st_file *f = NULL;
    repq_status st = repq_st_parse(err, al, bytes, size, &f);
    if (st == REPQ_OK)
        st = parse_file(err, al, f, out);
    repq_st_close(f);
    return st;
}

REPQ_API repq_status repq_qmodel_load(repq_context *ctx, const char *path, repq_qmodel **out_qmodel)
{
    repq_object *err = repq_context_object(ctx);
    if (!out_qmodel)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_qmodel_load: out_qmodel is NULL");
    *out_qmodel = NULL;
    if (!path)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, "repq_qmodel_load: path is NULL");
    repq_allocator al = repq_allocator_of(ctx);
    repq_st_file *f = NULL;
    repq_status st = repq_st_open(err, &al, path, &f);
    if (st == REPQ_OK)
        st = parse_file(err, &al, f, out_qmodel);
    repq_st_close(f);
    return st;
}
