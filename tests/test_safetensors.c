/* Tests of lib/io/safetensors: round trips, conversions, hostile headers, truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <cmocka.h>

#include "io/crc32c.h"
#include "io/safetensors.h"

static repq_allocator c_al(void)
{
    return repq_allocator_of(NULL);
}

/* [u64 len][json][data_len zero bytes] in a malloc'd buffer. */
static uint8_t *craft_len(uint64_t len_field, const char *json, size_t data_len, size_t *size)
{
    size_t jl = strlen(json);
    *size = 8 + jl + data_len;
    uint8_t *b = calloc(1, *size ? *size : 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(len_field >> (8 * i));
    memcpy(b + 8, json, jl);
    return b;
}

static uint8_t *craft(const char *json, size_t data_len, size_t *size)
{
    return craft_len(strlen(json), json, data_len, size);
}

static repq_status parse_crafted(const char *json, size_t data_len, repq_object *err)
{
    size_t size;
    uint8_t *b = craft(json, data_len, &size);
    repq_allocator al = c_al();
    repq_st_file *f = (repq_st_file *)1;
    repq_status st = repq_st_parse(err, &al, b, size, &f);
    if (st != REPQ_OK)
        assert_null(f);
    repq_st_close(f);
    free(b);
    return st;
}

static void temp_path(char *buf, size_t cap)
{
    const char *dir = getenv("TMPDIR");
    snprintf(buf, cap, "%s/repq_st_XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(buf);
    assert_true(fd >= 0);
    close(fd);
}

/* ---- round trip ------------------------------------------------------------- */

static void round_trip_many_dtypes_and_shapes(void **state)
{
    (void)state;
    repq_allocator al = c_al();
    repq_object err = {0};
    float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    int8_t i8[4] = {-128, -1, 0, 127};
    uint8_t u8[8] = {0, 1, 2, 3, 250, 251, 254, 255};
    int32_t i32[3] = {INT32_MIN, 7, INT32_MAX};
    uint16_t f16[2] = {0x3C00, 0xC000};
    uint16_t bf16[2] = {0x3F80, 0x4040};
    double f64 = 2.718281828;
    int64_t s_f32[2] = {2, 3}, s_i8[1] = {4}, s_u8[3] = {2, 2, 2}, s_i32[1] = {3};
    int64_t s_f16[1] = {2}, s_bf16[2] = {1, 2}, s_empty[1] = {0}, s_empty3[3] = {3, 0, 2};

    repq_st_writer *w;
    assert_int_equal(repq_st_writer_new(&err, &al, &w), REPQ_OK);
    /* Added in non-sorted order; the file lists them by name. */
    assert_int_equal(repq_st_writer_add(w, "z.f32", REPQ_ST_F32, 2, s_f32, f32, sizeof f32), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "a.i8", REPQ_ST_I8, 1, s_i8, i8, sizeof i8), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "m.u8", REPQ_ST_U8, 3, s_u8, u8, sizeof u8), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "empty", REPQ_ST_I64, 1, s_empty, NULL, 0), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "b.i32", REPQ_ST_I32, 1, s_i32, i32, sizeof i32), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "scalar", REPQ_ST_F64, 0, NULL, &f64, sizeof f64), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "h.f16", REPQ_ST_F16, 1, s_f16, f16, sizeof f16), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "h.bf16", REPQ_ST_BF16, 2, s_bf16, bf16, sizeof bf16), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "empty3", REPQ_ST_F32, 3, s_empty3, NULL, 0), REPQ_OK);
    assert_int_equal(repq_st_writer_set_metadata(w, "architecture", "old"), REPQ_OK);
    assert_int_equal(repq_st_writer_set_metadata(w, "architecture", "{\"depth\": 12}"), REPQ_OK);
    assert_int_equal(repq_st_writer_set_metadata(w, "format", "pt"), REPQ_OK);

    char path[256];
    temp_path(path, sizeof path);
    assert_int_equal(repq_st_writer_write(w, path), REPQ_OK);
    uint8_t *mem;
    size_t mem_size;
    assert_int_equal(repq_st_writer_to_memory(w, &mem, &mem_size), REPQ_OK);
    repq_st_writer_free(w);

    /* Header length is a multiple of 8 and the file equals the memory image. */
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | mem[i];
    assert_int_equal(n % 8, 0);
    assert_int_equal(mem[8], '{');
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    uint8_t *disk = malloc(mem_size + 1);
    assert_int_equal(fread(disk, 1, mem_size + 1, fp), mem_size);
    fclose(fp);
    assert_memory_equal(disk, mem, mem_size);
    free(disk);

    for (int pass = 0; pass < 2; pass++) {
        repq_st_file *f;
        if (pass == 0)
            assert_int_equal(repq_st_open(&err, &al, path, &f), REPQ_OK);
        else
            assert_int_equal(repq_st_parse(&err, &al, mem, mem_size, &f), REPQ_OK);
        assert_int_equal(repq_st_count(f), 9);
        assert_string_equal(repq_st_tensor_at(f, 0)->name, "a.i8");
        assert_string_equal(repq_st_tensor_at(f, 8)->name, "z.f32");
        assert_null(repq_st_tensor_at(f, 9));
        assert_null(repq_st_find(f, "__metadata__"));
        assert_null(repq_st_find(f, "nope"));
        assert_string_equal(repq_st_metadata(f, "architecture"), "{\"depth\": 12}");
        assert_string_equal(repq_st_metadata(f, "format"), "pt");
        assert_null(repq_st_metadata(f, "missing"));

        const repq_st_tensor *t = repq_st_find(f, "z.f32");
        assert_non_null(t);
        assert_int_equal(t->dtype, REPQ_ST_F32);
        assert_int_equal(t->ndim, 2);
        assert_int_equal(t->shape[0], 2);
        assert_int_equal(t->shape[1], 3);
        assert_int_equal(t->numel, 6);
        assert_int_equal(t->nbytes, 24);
        float back[6];
        assert_int_equal(repq_st_read_f32(&err, t, back, 6), REPQ_OK);
        assert_memory_equal(back, f32, sizeof f32);

        t = repq_st_find(f, "a.i8");
        assert_int_equal(t->dtype, REPQ_ST_I8);
        assert_memory_equal(t->data, i8, sizeof i8);
        t = repq_st_find(f, "m.u8");
        assert_int_equal(t->ndim, 3);
        assert_memory_equal(t->data, u8, sizeof u8);
        t = repq_st_find(f, "b.i32");
        assert_int_equal(t->dtype, REPQ_ST_I32);
        assert_memory_equal(t->data, i32, sizeof i32);

        t = repq_st_find(f, "scalar");
        assert_int_equal(t->dtype, REPQ_ST_F64);
        assert_int_equal(t->ndim, 0);
        assert_int_equal(t->numel, 1);
        assert_int_equal(t->nbytes, 8);
        double d;
        memcpy(&d, t->data, sizeof d);
        assert_true(d == f64);

        t = repq_st_find(f, "empty");
        assert_int_equal(t->dtype, REPQ_ST_I64);
        assert_int_equal(t->ndim, 1);
        assert_int_equal(t->numel, 0);
        assert_int_equal(t->nbytes, 0);
        t = repq_st_find(f, "empty3");
        assert_int_equal(t->numel, 0);
        assert_int_equal(t->shape[2], 2);
        assert_int_equal(repq_st_read_f32(&err, t, NULL, 0), REPQ_OK);

        t = repq_st_find(f, "h.f16");
        assert_int_equal(repq_st_read_f32(&err, t, back, 2), REPQ_OK);
        assert_true(back[0] == 1.0f && back[1] == -2.0f);
        t = repq_st_find(f, "h.bf16");
        assert_int_equal(repq_st_read_f32(&err, t, back, 2), REPQ_OK);
        assert_true(back[0] == 1.0f && back[1] == 3.0f);
        repq_st_close(f);
    }
    repq_mem_free(&al, mem);
    remove(path);
}

static void writer_rejects_bad_input(void **state)
{
    (void)state;
    repq_allocator al = c_al();
    repq_object err = {0};
    repq_st_writer *w;
    assert_int_equal(repq_st_writer_new(&err, &al, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_writer_new(&err, &al, &w), REPQ_OK);
    float x[4] = {0};
    int64_t s[2] = {2, 2}, neg[1] = {-1};
    assert_int_equal(repq_st_writer_add(w, "x", REPQ_ST_F32, 2, s, x, sizeof x), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "x", REPQ_ST_F32, 2, s, x, sizeof x), REPQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.error, "twice"));
    assert_int_equal(repq_st_writer_add(w, "y", REPQ_ST_F32, 2, s, x, 12), REPQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.error, "'y'"));
    assert_int_equal(repq_st_writer_add(w, "__metadata__", REPQ_ST_F32, 2, s, x, sizeof x),
                     REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_writer_add(w, "", REPQ_ST_F32, 2, s, x, sizeof x), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_writer_add(w, "\xff\xfe", REPQ_ST_F32, 2, s, x, sizeof x),
                     REPQ_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.error, "UTF-8"));
    assert_int_equal(repq_st_writer_add(w, "n", REPQ_ST_F32, 1, neg, x, 0), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_writer_add(w, "d", (repq_st_dtype)99, 2, s, x, sizeof x), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_writer_add(w, "k", REPQ_ST_F32, 9, s, x, sizeof x), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_writer_add(w, "p", REPQ_ST_F32, 2, s, NULL, sizeof x), REPQ_ERR_INVALID_ARGUMENT);
    int64_t huge[2] = {INT64_C(1) << 62, INT64_C(1) << 62};
    assert_int_equal(repq_st_writer_add(w, "h", REPQ_ST_F32, 2, huge, x, sizeof x), REPQ_ERR_OVERFLOW);
    assert_int_equal(repq_st_writer_set_metadata(w, "k", NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_writer_set_metadata(w, "k", "\xc3"), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_writer_write(w, "/nonexistent-dir/x/y.safetensors"), REPQ_ERR_IO);
    assert_non_null(strstr(err.error, "nonexistent-dir"));
    repq_st_writer_free(w);
    repq_st_writer_free(NULL);
    repq_st_close(NULL);
}

/* ---- conversions ------------------------------------------------------------ */

static void f16_and_bf16_convert_exactly(void **state)
{
    (void)state;
    assert_true(repq_st_f16_to_f32(0x3C00) == 1.0f);
    assert_true(repq_st_f16_to_f32(0xC000) == -2.0f);
    assert_true(repq_st_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(repq_st_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    assert_true(repq_st_f16_to_f32(0x03FF) == ldexpf(1023.0f, -24));
    assert_true(repq_st_f16_to_f32(0x0200) == ldexpf(1.0f, -15));
    assert_true(repq_st_f16_to_f32(0x0400) == ldexpf(1.0f, -14));
    assert_true(repq_st_f16_to_f32(0x3555) == 1365.0f / 4096.0f);
    assert_true(repq_st_f16_to_f32(0x0000) == 0.0f && !signbit(repq_st_f16_to_f32(0x0000)));
    assert_true(repq_st_f16_to_f32(0x8000) == 0.0f && signbit(repq_st_f16_to_f32(0x8000)));
    assert_true(repq_st_f16_to_f32(0x8001) == -ldexpf(1.0f, -24));
    assert_true(isinf(repq_st_f16_to_f32(0x7C00)) && repq_st_f16_to_f32(0x7C00) > 0);
    assert_true(isinf(repq_st_f16_to_f32(0xFC00)) && repq_st_f16_to_f32(0xFC00) < 0);
    assert_true(isnan(repq_st_f16_to_f32(0x7E00)));
    assert_true(isnan(repq_st_f16_to_f32(0x7C01)));
    assert_true(isnan(repq_st_f16_to_f32(0xFFFF)));
    /* Every finite half: exact value m * 2^(e - 25) with the implicit bit. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
        if (e == 0x1f)
            continue;
        float expect = e ? ldexpf((float)(m | 0x400), (int)e - 25) : ldexpf((float)m, -24);
        if (h & 0x8000)
            expect = -expect;
        assert_true(repq_st_f16_to_f32((uint16_t)h) == expect);
    }

    assert_true(repq_st_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(repq_st_bf16_to_f32(0xC000) == -2.0f);
    assert_true(repq_st_bf16_to_f32(0x4049) == 3.140625f);
    assert_true(repq_st_bf16_to_f32(0x0001) == ldexpf(1.0f, -133));
    assert_true(isinf(repq_st_bf16_to_f32(0xFF80)) && repq_st_bf16_to_f32(0xFF80) < 0);
    assert_true(isnan(repq_st_bf16_to_f32(0x7FC0)));
}

/* The data of F16/BF16/F32 tensors at odd offsets is read without alignment faults. */
static void read_f32_handles_unaligned_data(void **state)
{
    (void)state;
    const char *json = "{\"pad\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[1,9]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[9,13]},"
                       "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[13,21]},"
                       "\"i\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[21,24]}}";
    size_t size;
    uint8_t *b = craft(json, 24, &size);
    uint8_t *d = b + 8 + strlen(json);
    const uint8_t h[8] = {0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00};
    const uint8_t bf[4] = {0x80, 0x3F, 0x00, 0xC0};
    float fv[2] = {0.5f, -7.25f};
    memcpy(d + 1, h, 8);
    memcpy(d + 9, bf, 4);
    memcpy(d + 13, fv, 8);
    repq_allocator al = c_al();
    repq_object err = {0};
    repq_st_file *f;
    assert_int_equal(repq_st_parse(&err, &al, b, size, &f), REPQ_OK);
    float out[4];
    assert_int_equal(repq_st_read_f32(&err, repq_st_find(f, "h"), out, 4), REPQ_OK);
    assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 65504.0f && out[3] == ldexpf(1.0f, -24));
    assert_int_equal(repq_st_read_f32(&err, repq_st_find(f, "b"), out, 2), REPQ_OK);
    assert_true(out[0] == 1.0f && out[1] == -2.0f);
    assert_int_equal(repq_st_read_f32(&err, repq_st_find(f, "f"), out, 2), REPQ_OK);
    assert_true(out[0] == 0.5f && out[1] == -7.25f);
    assert_int_equal(repq_st_read_f32(&err, repq_st_find(f, "f"), out, 3), REPQ_ERR_SHAPE);
    assert_non_null(strstr(err.error, "'f'"));
    assert_int_equal(repq_st_read_f32(&err, repq_st_find(f, "i"), out, 3), REPQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.error, "I8"));
    assert_int_equal(repq_st_read_f32(&err, NULL, out, 3), REPQ_ERR_INVALID_ARGUMENT);
    repq_st_close(f);
    free(b);
}

/* ---- hostile headers -------------------------------------------------------- */

typedef struct hostile_case {
    const char *name;
    const char *json;
    size_t data_len;
    repq_status expect;
    const char *word; /* must appear in the message */
} hostile_case;

#define ENTRY(body) "{\"t\":{" body "}}"
#define F32_OK "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"

static const hostile_case hostile_cases[] = {
    {"json_syntax_error", "{\"t\": {\"dtype\": }", 0, REPQ_ERR_FORMAT, "line 1"},
    {"json_trailing_garbage", "{} x", 0, REPQ_ERR_FORMAT, "JSON"},
    {"header_not_utf8", "{\"t\xff\":1}", 0, REPQ_ERR_FORMAT, "decode byte 0xff"},
    {"top_level_array", "[1, 2]", 0, REPQ_ERR_FORMAT, "not a JSON object"},
    {"top_level_string", "\"abc\"", 0, REPQ_ERR_FORMAT, "JSON"},
    {"entry_not_object", "{\"w\": 5}", 0, REPQ_ERR_FORMAT, "'w'"},
    {"dtype_missing", ENTRY("\"shape\":[2],\"data_offsets\":[0,8]"), 8, REPQ_ERR_FORMAT, "missing dtype"},
    {"dtype_not_string", ENTRY("\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]"), 8, REPQ_ERR_FORMAT, "dtype"},
    {"dtype_unknown", ENTRY("\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]"), 8,
     REPQ_ERR_UNSUPPORTED, "F128"},
    {"dtype_lowercase", ENTRY("\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]"), 8,
     REPQ_ERR_UNSUPPORTED, "f32"},
    {"shape_missing", ENTRY("\"dtype\":\"F32\",\"data_offsets\":[0,8]"), 8, REPQ_ERR_FORMAT, "missing shape"},
    {"shape_not_array", ENTRY("\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]"), 8, REPQ_ERR_FORMAT,
     "shape"},
    {"shape_negative", ENTRY("\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]"), 8, REPQ_ERR_FORMAT,
     "negative"},
    {"shape_real", ENTRY("\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]"), 8, REPQ_ERR_FORMAT,
     "not an integer"},
    {"shape_string", ENTRY("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]"), 8, REPQ_ERR_FORMAT,
     "not an integer"},
    {"shape_too_big_integer", ENTRY("\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]"),
     8, REPQ_ERR_FORMAT, "JSON"},
    {"shape_nine_dims", ENTRY("\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]"), 1,
     REPQ_ERR_UNSUPPORTED, "9 dimensions"},
    {"numel_overflow", ENTRY("\"dtype\":\"U8\",\"shape\":[4611686018427387904,4611686018427387904],"
                             "\"data_offsets\":[0,8]"), 8, REPQ_ERR_OVERFLOW, "element count"},
    {"nbytes_overflow", ENTRY("\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]"), 8,
     REPQ_ERR_OVERFLOW, "byte size"},
    {"offsets_missing", ENTRY("\"dtype\":\"F32\",\"shape\":[2]"), 8, REPQ_ERR_FORMAT, "missing data_offsets"},
    {"offsets_one_value", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]"), 8, REPQ_ERR_FORMAT,
     "two integers"},
    {"offsets_three_values", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]"), 8,
     REPQ_ERR_FORMAT, "two integers"},
    {"offsets_not_array", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}"), 8, REPQ_ERR_FORMAT,
     "data_offsets"},
    {"offsets_real", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]"), 8, REPQ_ERR_FORMAT,
     "not an integer"},
    {"offsets_negative", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]"), 8, REPQ_ERR_FORMAT,
     "negative"},
    {"offsets_reversed", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]"), 8, REPQ_ERR_FORMAT,
     "after end"},
    {"offsets_past_data", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"), 7, REPQ_ERR_FORMAT,
     "truncated"},
    {"offsets_span_mismatch", ENTRY("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]"), 12,
     REPQ_ERR_FORMAT, "span"},
    {"tensors_overlap", "{\"a\":{" F32_OK "},\"b\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[7,9]}}",
     9, REPQ_ERR_FORMAT, "overlap"},
    {"tensors_identical_ranges", "{\"a\":{" F32_OK "},\"b\":{" F32_OK "}}", 8, REPQ_ERR_FORMAT, "overlap"},
    {"tensor_inside_another", "{\"a\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[0,10]},"
                              "\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[20,21]},"
                              "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}",
     21, REPQ_ERR_FORMAT, "overlap"},
    {"duplicate_names", "{\"a\":{" F32_OK "},\"a\":{" F32_OK "}}", 8, REPQ_ERR_FORMAT, "duplicate"},
    {"metadata_not_object", "{\"__metadata__\":\"x\"}", 0, REPQ_ERR_FORMAT, "__metadata__"},
    {"metadata_value_not_string", "{\"__metadata__\":{\"k\":3}}", 0, REPQ_ERR_FORMAT, "'k'"},
    {"metadata_value_object", "{\"__metadata__\":{\"k\":{}}}", 0, REPQ_ERR_FORMAT, "not a string"},
    {"nul_in_name", "{\"a\\u0000b\":{" F32_OK "}}", 8, REPQ_ERR_FORMAT, "NUL"},
    {"nul_in_metadata", "{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, REPQ_ERR_FORMAT, "\\u0000"},
    {"lone_surrogate_name", "{\"\\ud800\":{" F32_OK "}}", 8, REPQ_ERR_FORMAT, "JSON"},
};

static void hostile_header(void **state)
{
    const hostile_case *c = *state;
    repq_object err = {0};
    repq_status st = parse_crafted(c->json, c->data_len, &err);
    if (st != c->expect || !strstr(err.error, c->word))
        print_error("case %s: status %d, message \"%s\" (want %d with \"%s\")\n", c->name, (int)st,
                    err.error, (int)c->expect, c->word);
    assert_int_equal(st, c->expect);
    assert_non_null(strstr(err.error, c->word));
    /* Tensor-level messages (not JSON syntax errors) name the tensor. */
    if (strncmp(c->json, "{\"t\":", 5) == 0 && !strstr(err.error, "JSON error"))
        assert_non_null(strstr(err.error, "'t'"));
}

static void header_length_checks(void **state)
{
    (void)state;
    repq_allocator al = c_al();
    repq_object err = {0};
    repq_st_file *f;
    size_t size;
    uint8_t *b;
    static const uint8_t five[5] = {2, 0, 0, 0, 0};
    assert_int_equal(repq_st_parse(&err, &al, five, 5, &f), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "shorter"));
    assert_int_equal(repq_st_parse(&err, &al, NULL, 0, &f), REPQ_ERR_FORMAT);

    b = craft_len(0, "{}", 0, &size);
    assert_int_equal(repq_st_parse(&err, &al, b, size, &f), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "too small"));
    free(b);
    b = craft_len(1, "{}", 0, &size);
    assert_int_equal(repq_st_parse(&err, &al, b, size, &f), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "too small"));
    free(b);
    b = craft_len(3, "{}", 0, &size);
    assert_int_equal(repq_st_parse(&err, &al, b, size, &f), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "truncated"));
    free(b);
    b = craft_len(100000001, "{}", 0, &size);
    assert_int_equal(repq_st_parse(&err, &al, b, size, &f), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "limit"));
    free(b);
    b = craft_len(UINT64_MAX, "{}", 0, &size);
    assert_int_equal(repq_st_parse(&err, &al, b, size, &f), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "limit"));
    free(b);
    /* A header shorter than the bytes that follow leaves them to the data section. */
    b = craft_len(2, "{}   ", 0, &size);
    assert_int_equal(repq_st_parse(&err, &al, b, size, &f), REPQ_OK);
    assert_int_equal(repq_st_count(f), 0);
    repq_st_close(f);
    free(b);
    assert_int_equal(repq_st_parse(&err, &al, five, 5, NULL), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_parse(&err, NULL, five, 5, &f), REPQ_ERR_INVALID_ARGUMENT);
    assert_int_equal(repq_st_parse(NULL, &al, five, 5, &f), REPQ_ERR_FORMAT);
}

/* Valid edge cases: empty tensors anywhere, gaps, padding, unknown entry keys. */
static void accepts_valid_edge_cases(void **state)
{
    (void)state;
    repq_object err = {0};
    assert_int_equal(parse_crafted("{}", 0, &err), REPQ_OK);
    assert_int_equal(parse_crafted("{\"__metadata__\":{}}        ", 0, &err), REPQ_OK);
    assert_int_equal(parse_crafted("{\"a\":{" F32_OK "},"
                                   "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                                   "\"s\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[10,11]},"
                                   "\"z\":{\"dtype\":\"BOOL\",\"shape\":[0,5],\"data_offsets\":[8,8],\"x\":1}}",
                                   12, &err),
                     REPQ_OK);
}

static void open_reports_file_errors(void **state)
{
    (void)state;
    repq_allocator al = c_al();
    repq_object err = {0};
    repq_st_file *f = (repq_st_file *)1;
    assert_int_equal(repq_st_open(&err, &al, "/nonexistent-dir/none.safetensors", &f), REPQ_ERR_IO);
    assert_null(f);
    assert_non_null(strstr(err.error, "none.safetensors"));
    assert_int_equal(repq_st_open(&err, &al, "/", &f), REPQ_ERR_IO);
    assert_non_null(strstr(err.error, "regular"));
    char path[256];
    temp_path(path, sizeof path);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite("\x02\0\0\0\0", 1, 5, fp), 5);
    fclose(fp);
    assert_int_equal(repq_st_open(&err, &al, path, &f), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "8-byte"));
    fp = fopen(path, "wb");
    assert_int_equal(fwrite("\x02\0\0\0\0\0\0\0{}", 1, 10, fp), 10);
    fclose(fp);
    assert_int_equal(repq_st_open(&err, &al, path, &f), REPQ_OK);
    assert_int_equal(repq_st_count(f), 0);
    repq_st_close(f);
    fp = fopen(path, "wb");
    assert_int_equal(fwrite("\x02\0\0\0\0\0\0\0{]", 1, 10, fp), 10);
    fclose(fp);
    assert_int_equal(repq_st_open(&err, &al, path, &f), REPQ_ERR_FORMAT);
    remove(path);
    assert_int_equal(repq_st_open(&err, &al, NULL, &f), REPQ_ERR_INVALID_ARGUMENT);
}

/* Every proper prefix of a valid file fails cleanly. */
static void every_truncation_fails_cleanly(void **state)
{
    (void)state;
    repq_allocator al = c_al();
    repq_object err = {0};
    repq_st_writer *w;
    assert_int_equal(repq_st_writer_new(&err, &al, &w), REPQ_OK);
    float a[3] = {1, 2, 3};
    uint16_t h[2] = {0x3C00, 0x4000};
    int8_t q[5] = {1, 2, 3, 4, 5};
    int64_t s3[1] = {3}, s2[2] = {1, 2}, s5[1] = {5}, s0[1] = {0};
    assert_int_equal(repq_st_writer_add(w, "a", REPQ_ST_F32, 1, s3, a, sizeof a), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "h", REPQ_ST_F16, 2, s2, h, sizeof h), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "e", REPQ_ST_F32, 1, s0, NULL, 0), REPQ_OK);
    assert_int_equal(repq_st_writer_add(w, "q", REPQ_ST_I8, 1, s5, q, sizeof q), REPQ_OK);
    assert_int_equal(repq_st_writer_set_metadata(w, "note", "truncation"), REPQ_OK);
    uint8_t *mem;
    size_t size;
    assert_int_equal(repq_st_writer_to_memory(w, &mem, &size), REPQ_OK);
    repq_st_writer_free(w);
    for (size_t len = 0; len < size; len++) {
        /* A private copy so that sanitizers catch any read past the prefix. */
        uint8_t *prefix = malloc(len ? len : 1);
        memcpy(prefix, mem, len);
        repq_st_file *f = (repq_st_file *)1;
        err.error[0] = '\0';
        repq_status st = repq_st_parse(&err, &al, prefix, len, &f);
        assert_int_equal(st, REPQ_ERR_FORMAT);
        assert_null(f);
        assert_true(err.error[0] != '\0');
        free(prefix);
    }
    repq_st_file *f;
    assert_int_equal(repq_st_parse(&err, &al, mem, size, &f), REPQ_OK);
    assert_int_equal(repq_st_count(f), 4);
    repq_st_close(f);
    repq_mem_free(&al, mem);
}

/* An allocator that fails after `budget` successful allocations. */
typedef struct budget_alloc {
    int budget;
    int live;
} budget_alloc;

static void *budget_alloc_fn(void *user, size_t size, size_t align)
{
    budget_alloc *b = user;
    if (b->budget-- <= 0)
        return NULL;
    size_t rounded = (size + align - 1) / align * align;
    void *p = aligned_alloc(align, rounded);
    if (p)
        b->live++;
    return p;
}

static void budget_release_fn(void *user, void *ptr)
{
    budget_alloc *b = user;
    if (ptr)
        b->live--;
    free(ptr);
}

static void allocation_failures_are_clean(void **state)
{
    (void)state;
    float a[2] = {1, 2};
    int64_t s2[1] = {2};
    bool done_write = false, done_parse = false;
    for (int budget = 0; budget < 64 && !(done_write && done_parse); budget++) {
        budget_alloc ba = {budget, 0};
        repq_allocator al = {budget_alloc_fn, budget_release_fn, &ba};
        repq_object err = {0};
        repq_st_writer *w = NULL;
        uint8_t *mem = NULL;
        size_t size = 0;
        repq_status st = repq_st_writer_new(&err, &al, &w);
        if (st == REPQ_OK)
            st = repq_st_writer_add(w, "a", REPQ_ST_F32, 1, s2, a, sizeof a);
        if (st == REPQ_OK)
            st = repq_st_writer_set_metadata(w, "k", "v");
        if (st == REPQ_OK)
            st = repq_st_writer_to_memory(w, &mem, &size);
        if (st != REPQ_OK) {
            assert_int_equal(st, REPQ_ERR_NOMEM);
            repq_st_writer_free(w);
            assert_int_equal(ba.live, 0);
            continue;
        }
        done_write = true;
        repq_st_writer_free(w);
        repq_st_file *f = NULL;
        st = repq_st_parse(&err, &al, mem, size, &f);
        if (st == REPQ_OK) {
            done_parse = true;
            assert_string_equal(repq_st_metadata(f, "k"), "v");
            repq_st_close(f);
        } else {
            assert_int_equal(st, REPQ_ERR_NOMEM);
            assert_null(f);
        }
        repq_mem_free(&al, mem);
        assert_int_equal(ba.live, 0);
    }
    assert_true(done_write && done_parse);
}

/* CRC-32C against the published check values (the standard "123456789" check, and
 * RFC 3720's 32 zero and 32 0xFF bytes), fed whole and in pieces. */
static void crc32c_matches_reference_values(void **state)
{
    (void)state;
    repq_crc32c c;
    repq_crc32c_init(&c);
    repq_crc32c_update(&c, "123456789", 9);
    assert_int_equal(repq_crc32c_value(&c), 0xE3069283u);
    repq_crc32c_init(&c);
    repq_crc32c_update(&c, "1234", 4);
    repq_crc32c_update(&c, "", 0);
    repq_crc32c_update(&c, "56789", 5);
    assert_int_equal(repq_crc32c_value(&c), 0xE3069283u);
    uint8_t bytes[32];
    memset(bytes, 0, sizeof bytes);
    repq_crc32c_init(&c);
    repq_crc32c_update(&c, bytes, sizeof bytes);
    assert_int_equal(repq_crc32c_value(&c), 0x8A9136AAu);
    memset(bytes, 0xFF, sizeof bytes);
    repq_crc32c_init(&c);
    repq_crc32c_update(&c, bytes, sizeof bytes);
    assert_int_equal(repq_crc32c_value(&c), 0x62A8AB43u);
}

/* The writer stores the checksum; the reader refuses a flipped data byte, a second
 * checksum entry and an escaped key, and reads a file that has no checksum. */
static void checksum_is_written_and_verified(void **state)
{
    (void)state;
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_writer *w;
    assert_int_equal(repq_st_writer_new(NULL, &al, &w), REPQ_OK);
    float v[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    assert_int_equal(repq_st_writer_add(w, "v", REPQ_ST_F32, 1, shape, v, sizeof v), REPQ_OK);
    assert_int_equal(repq_st_writer_set_metadata(w, REPQ_ST_CHECKSUM_KEY, "ignored"), REPQ_OK);
    uint8_t *bytes;
    size_t size;
    assert_int_equal(repq_st_writer_to_memory(w, &bytes, &size), REPQ_OK);
    repq_st_writer_free(w);
    size_t at = 0;
    assert_int_equal(repq_st_checksum_locate(bytes, size, &at), 1);
    /* Recompute it here from the definition: the file with the digits read as zeros. */
    char stored[9];
    memcpy(stored, bytes + at, 8);
    stored[8] = '\0';
    memcpy(bytes + at, "00000000", 8);
    repq_crc32c c;
    repq_crc32c_init(&c);
    repq_crc32c_update(&c, bytes, size);
    char want[9];
    snprintf(want, sizeof want, "%08x", (unsigned)repq_crc32c_value(&c));
    assert_string_equal(stored, want);
    memcpy(bytes + at, stored, 8);

    repq_object err = {0};
    repq_st_file *f;
    assert_int_equal(repq_st_parse(&err, &al, bytes, size, &f), REPQ_OK);
    assert_string_equal(repq_st_metadata(f, REPQ_ST_CHECKSUM_KEY) + strlen(REPQ_ST_CHECKSUM_PREFIX), stored);
    repq_st_close(f);
    bytes[size - 1] ^= 1;
    assert_int_equal(repq_st_parse(&err, &al, bytes, size, &f), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "checksum mismatch"));
    bytes[size - 1] ^= 1;
    /* An escaped spelling of the key escapes the search: refused after parsing. */
    size_t key = at - strlen(REPQ_ST_CHECKSUM_KEY "\":\"" REPQ_ST_CHECKSUM_PREFIX);
    assert_memory_equal(bytes + key, "repq_", 5);
    uint8_t *escaped = malloc(size + 5);
    memcpy(escaped, bytes, key);
    memcpy(escaped + key, "\\u0072", 6); /* "r" */
    memcpy(escaped + key + 6, bytes + key + 1, size - key - 1);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | escaped[i];
    n += 5;
    for (int i = 0; i < 8; i++)
        escaped[i] = (uint8_t)(n >> (8 * i));
    assert_int_equal(repq_st_parse(&err, &al, escaped, size + 5, &f), REPQ_ERR_FORMAT);
    assert_non_null(strstr(err.error, "not in the form the writer uses"));
    free(escaped);
    /* Another key of the same length: a file without a checksum, read as before. */
    bytes[key] = 'x';
    assert_int_equal(repq_st_parse(&err, &al, bytes, size, &f), REPQ_OK);
    repq_st_close(f);
    repq_mem_free(&al, bytes);
}

static void real_model_parses(void **state)
{
    (void)state;
    const char *path = REPQ_TEST_DATA "/vit_tiny_cifar10.safetensors";
    if (access(path, R_OK) != 0)
        skip();
    repq_allocator al = c_al();
    repq_object err = {0};
    repq_st_file *f;
    repq_status st = repq_st_open(&err, &al, path, &f);
    if (st != REPQ_OK)
        print_error("%s\n", err.error);
    assert_int_equal(st, REPQ_OK);
    assert_int_equal(repq_st_count(f), 152);
    const repq_st_tensor *t = repq_st_find(f, "blocks.0.attn.qkv.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, REPQ_ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 576);
    assert_int_equal(t->shape[1], 192);
    assert_non_null(repq_st_metadata(f, "architecture"));
    assert_non_null(strstr(repq_st_metadata(f, "architecture"), "\"embed_dim\": 192"));
    size_t total = 0;
    for (size_t i = 0; i < repq_st_count(f); i++) {
        const repq_st_tensor *ti = repq_st_tensor_at(f, i);
        assert_int_equal(ti->dtype, REPQ_ST_F32);
        total += ti->numel;
    }
    float *w = malloc(t->numel * sizeof *w);
    assert_int_equal(repq_st_read_f32(&err, t, w, t->numel), REPQ_OK);
    for (size_t i = 0; i < t->numel; i++)
        assert_true(isfinite(w[i]));
    free(w);
    assert_true(total > 5000000 / 4);
    repq_st_close(f);
}

int main(void)
{
    enum { NCASES = sizeof hostile_cases / sizeof hostile_cases[0] };
    struct CMUnitTest tests[NCASES + 16];
    size_t n = 0;
    const struct CMUnitTest fixed[] = {
        cmocka_unit_test(round_trip_many_dtypes_and_shapes),
        cmocka_unit_test(writer_rejects_bad_input),
        cmocka_unit_test(f16_and_bf16_convert_exactly),
        cmocka_unit_test(read_f32_handles_unaligned_data),
        cmocka_unit_test(header_length_checks),
        cmocka_unit_test(accepts_valid_edge_cases),
        cmocka_unit_test(open_reports_file_errors),
        cmocka_unit_test(every_truncation_fails_cleanly),
        cmocka_unit_test(allocation_failures_are_clean),
        cmocka_unit_test(real_model_parses),
        cmocka_unit_test(crc32c_matches_reference_values),
        cmocka_unit_test(checksum_is_written_and_verified),
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        tests[n++] = fixed[i];
    for (size_t i = 0; i < NCASES; i++)
        tests[n++] = (struct CMUnitTest){hostile_cases[i].name, hostile_header, NULL, NULL,
                                         (void *)&hostile_cases[i]};
    return _cmocka_run_group_tests("safetensors", tests, n, NULL, NULL);
}
