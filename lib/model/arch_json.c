/* Range-checked readers of architecture and preprocessing metadata (see arch_json.h). */
#include "model/arch_json.h"

#include <float.h>
#include <math.h>
#include <string.h>

repq_status repq_arch_json_parse(repq_object *err, const char *what, const char *text, json_t **out)
{
    json_error_t jerr;
    *out = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out)
        return repq_fail(err, REPQ_ERR_FORMAT, "%s metadata is not valid JSON: %s (line %d, column %d)",
                         what, jerr.text, jerr.line, jerr.column);
    return REPQ_OK;
}

/* Bounds keep every derived size (tokens x dim x batch) far from overflow and reject
 * absurd files before anything is allocated. */
repq_status repq_arch_json_int(repq_object *err, json_t *obj, const char *key, int64_t lo, int64_t hi,
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

repq_status repq_arch_json_int_value(repq_object *err, json_t *v, const char *key, size_t index, int64_t lo,
                                     int64_t hi, int32_t *out)
{
    if (!json_is_integer(v))
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture: %s[%zu] is not an integer", key, index);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                         "architecture: %s[%zu] = %lld is outside the supported range [%lld, %lld]", key,
                         index, (long long)x, (long long)lo, (long long)hi);
    *out = (int32_t)x;
    return REPQ_OK;
}

repq_status repq_arch_json_number(repq_object *err, json_t *obj, const char *key, double fallback,
                                  double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        *out = fallback;
        return REPQ_OK;
    }
    if (!json_is_number(v))
        return repq_fail(err, REPQ_ERR_FORMAT, "architecture: %s is not a number", key);
    *out = json_number_value(v);
    return REPQ_OK;
}

repq_status repq_arch_json_norm_eps(repq_object *err, json_t *obj, double fallback, float *out)
{
    double e = fallback;
    repq_status st = repq_arch_json_number(err, obj, "norm_eps", fallback, &e);
    if (st)
        return st;
    /* Checked as the float it is narrowed to: 1e-70 would become 0 and 0.999999997
     * would become 1. The range check first keeps the conversion defined. */
    float ef = e > 0.0 && e < 1.0 ? (float)e : 0.0f;
    if (!(ef >= FLT_MIN && ef < 1.0f))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: norm_eps %.9g is not in [FLT_MIN, 1) as a float", e);
    *out = ef;
    return REPQ_OK;
}

repq_status repq_arch_json_require_string(repq_object *err, json_t *obj, const char *key, const char *want)
{
    json_t *v = json_object_get(obj, key);
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), want) != 0))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: only %s = \"%s\" is supported", key, want);
    return REPQ_OK;
}

repq_status repq_arch_json_require_flag(repq_object *err, json_t *obj, const char *key, bool want)
{
    json_t *v = json_object_get(obj, key);
    if (v && (want ? !json_is_true(v) : !json_is_false(v)))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, "architecture: only %s = %s is supported", key,
                         want ? "true" : "false");
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

static repq_status parse_preprocess(repq_object *err, json_t *root, float *pixel_scale, float mean[3],
                                    float std[3])
{
    if (!json_is_object(root))
        return repq_fail(err, REPQ_ERR_FORMAT, "preprocess metadata is not a JSON object");
    repq_status st;
    if ((st = parse_float3(err, root, "mean", mean)) || (st = parse_float3(err, root, "std", std)))
        return st;
    for (int c = 0; c < 3; c++)
        if (!(std[c] >= FLT_MIN))
            return repq_fail(err, REPQ_ERR_FORMAT, "preprocess: std[%d] is not a positive normal float", c);
    json_t *scale = json_object_get(root, "scale");
    if (scale) {
        if (!json_is_number(scale) || !(json_number_value(scale) >= FLT_MIN) ||
            !(json_number_value(scale) <= FLT_MAX))
            return repq_fail(err, REPQ_ERR_FORMAT, "preprocess: scale is not a positive normal float");
        *pixel_scale = (float)json_number_value(scale);
    }
    return REPQ_OK;
}

repq_status repq_arch_json_preprocess(repq_object *err, const char *text, float *pixel_scale, float mean[3],
                                      float std[3])
{
    json_t *root;
    repq_status st = repq_arch_json_parse(err, "preprocess", text, &root);
    if (st)
        return st;
    st = parse_preprocess(err, root, pixel_scale, mean, std);
    json_decref(root);
    return st;
}

repq_status repq_arch_json_read(repq_object *err, const char *arch_json, const char *preprocess_json,
                                repq_arch_json_reader read, void *arch, float *pixel_scale, float mean[3],
                                float std[3])
{
    if (!arch_json)
        return repq_fail(err, REPQ_ERR_FORMAT, "the file has no 'architecture' metadata; name a preset instead");
    json_t *root;
    repq_status st = repq_arch_json_parse(err, "architecture", arch_json, &root);
    if (st)
        return st;
    st = read(err, root, arch);
    json_decref(root);
    if (st || !preprocess_json)
        return st;
    return repq_arch_json_preprocess(err, preprocess_json, pixel_scale, mean, std);
}
