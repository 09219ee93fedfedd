/* Internal: reading the JSON architecture and preprocessing metadata of a model file,
 * shared by the ViT and Swin descriptions. Every reader range-checks what it returns,
 * since the text comes from a file; failures are recorded on `err` (which may be NULL)
 * with the field's name. */
#ifndef REPQ_MODEL_ARCH_JSON_H
#define REPQ_MODEL_ARCH_JSON_H

#include <jansson.h>

#include "core/object.h"

/* Parse `text` (metadata entry `what`, for messages) into a new reference in *out,
 * rejecting duplicate keys. REPQ_ERR_FORMAT on invalid JSON. */
repq_status repq_arch_json_parse(repq_object *err, const char *what, const char *text, json_t **out);

/* Integer field `key` of `obj` in [lo, hi]; absent: `fallback` unless `required`.
 * REPQ_ERR_FORMAT (missing, not an integer), REPQ_ERR_UNSUPPORTED (out of range). */
repq_status repq_arch_json_int(repq_object *err, json_t *obj, const char *key, int64_t lo, int64_t hi,
                               bool required, int64_t fallback, int32_t *out);
/* Integer `v` (element `index` of array field `key`, for messages) in [lo, hi]. */
repq_status repq_arch_json_int_value(repq_object *err, json_t *v, const char *key, size_t index, int64_t lo,
                                     int64_t hi, int32_t *out);

/* Number field `key` (integer or real), `fallback` when absent. REPQ_ERR_FORMAT when not
 * a number; the caller checks the range. */
repq_status repq_arch_json_number(repq_object *err, json_t *obj, const char *key, double fallback,
                                  double *out);

/* Field "norm_eps" (`fallback` when absent) as the float it is used as, in [FLT_MIN, 1). */
repq_status repq_arch_json_norm_eps(repq_object *err, json_t *obj, double fallback, float *out);

/* String field `key`, when present, must equal `want` (else REPQ_ERR_UNSUPPORTED). */
repq_status repq_arch_json_require_string(repq_object *err, json_t *obj, const char *key, const char *want);
/* Boolean field `key`, when present, must be `want` (else REPQ_ERR_UNSUPPORTED). */
repq_status repq_arch_json_require_flag(repq_object *err, json_t *obj, const char *key, bool want);

/* Preprocessing from the JSON text of a "preprocess" entry: "mean", "std" (3 finite
 * floats, std positive normal) and "scale" (positive normal float) where present; the
 * outputs keep their values for absent fields. REPQ_ERR_FORMAT on anything else. */
repq_status repq_arch_json_preprocess(repq_object *err, const char *text, float *pixel_scale, float mean[3],
                                      float std[3]);

/* The whole of a file's metadata: fails with REPQ_ERR_FORMAT when `arch_json` is NULL (no
 * architecture entry), parses it and hands the root to `read` (which fills `arch`),
 * then reads the optional `preprocess_json` into the three preprocessing outputs. */
typedef repq_status (*repq_arch_json_reader)(repq_object *err, json_t *root, void *arch);
repq_status repq_arch_json_read(repq_object *err, const char *arch_json, const char *preprocess_json,
                                repq_arch_json_reader read, void *arch, float *pixel_scale, float mean[3],
                                float std[3]);

#endif
