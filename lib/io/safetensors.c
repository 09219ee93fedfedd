/* safetensors reader: dtype table, header validation, F16/BF16 conversion. */
#include "io/safetensors.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "io/crc32c.h"

/* Tensor bytes are exposed as stored (little-endian); multi-byte integers read through
 * the data pointer would be wrong on a big-endian host. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "librepq needs a little-endian host");
#else
#error "librepq needs a little-endian host and a compiler that defines __BYTE_ORDER__"
#endif

#define ST_PREFIX "safetensors: "

static const struct {
    const char *name;
    size_t size;
} dtype_table[] = {
    [REPQ_ST_BOOL] = {"BOOL", 1},    [REPQ_ST_U8] = {"U8", 1},
    [REPQ_ST_I8] = {"I8", 1},        [REPQ_ST_F8_E4M3] = {"F8_E4M3", 1},
    [REPQ_ST_F8_E5M2] = {"F8_E5M2", 1}, [REPQ_ST_I16] = {"I16", 2},
    [REPQ_ST_U16] = {"U16", 2},      [REPQ_ST_F16] = {"F16", 2},
    [REPQ_ST_BF16] = {"BF16", 2},    [REPQ_ST_I32] = {"I32", 4},
    [REPQ_ST_U32] = {"U32", 4},      [REPQ_ST_F32] = {"F32", 4},
    [REPQ_ST_I64] = {"I64", 8},      [REPQ_ST_U64] = {"U64", 8},
    [REPQ_ST_F64] = {"F64", 8},
};
#define DTYPE_COUNT (sizeof dtype_table / sizeof dtype_table[0])

const char *repq_st_dtype_name(repq_st_dtype dtype)
{
    if ((unsigned)dtype == 0 || (unsigned)dtype >= DTYPE_COUNT)
        return NULL;
    return dtype_table[dtype].name;
}

size_t repq_st_dtype_size(repq_st_dtype dtype)
{
    if ((unsigned)dtype == 0 || (unsigned)dtype >= DTYPE_COUNT)
        return 0;
    return dtype_table[dtype].size;
}

bool repq_st_dtype_from_name(const char *name, repq_st_dtype *out)
{
    for (unsigned i = 1; i < DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (repq_st_dtype)i;
            return true;
        }
    }
    return false;
}

typedef struct st_meta {
    const char *key;
    const char *value;
} st_meta;

struct repq_st_file {
    repq_allocator al;
    uint8_t *owned;          /* the file image when opened from a path, else NULL */
    size_t ntensors;
    repq_st_tensor *tensors; /* sorted by name */
    size_t nmeta;
    st_meta *meta;           /* sorted by key */
    char *strings;           /* names, keys and values, each NUL-terminated */
};

void repq_st_close(repq_st_file *file)
{
    if (!file)
        return;
    repq_allocator al = file->al;
    repq_mem_free(&al, file->tensors);
    repq_mem_free(&al, file->meta);
    repq_mem_free(&al, file->strings);
    repq_mem_free(&al, file->owned);
    repq_mem_free(&al, file);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const repq_st_tensor *)a)->name, ((const repq_st_tensor *)b)->name);
}

static int cmp_meta_key(const void *a, const void *b)
{
    return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

static int cmp_tensor_range(const void *a, const void *b)
{
    const repq_st_tensor *x = *(const repq_st_tensor *const *)a;
    const repq_st_tensor *y = *(const repq_st_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

/* Copy `len` bytes of `s` plus a NUL to *cursor and return the copy. */
static const char *arena_put(char **cursor, const char *s, size_t len)
{
    char *dst = *cursor;
    memcpy(dst, s, len);
    dst[len] = '\0';
    *cursor = dst + len + 1;
    return dst;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "unknown";
}

/* Validate one tensor entry and fill *t (except name and data). */
static repq_status parse_entry(repq_object *err, const char *name, json_t *entry,
                               size_t data_size, repq_st_tensor *t)
{
    if (!json_is_object(entry))
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "tensor '%s': entry is %s, not an object",
                         name, json_type_name(entry));

    json_t *jdtype = json_object_get(entry, "dtype");
    if (!jdtype)
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "tensor '%s': missing dtype", name);
    if (!json_is_string(jdtype))
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "tensor '%s': dtype is %s, not a string",
                         name, json_type_name(jdtype));
    if (!repq_st_dtype_from_name(json_string_value(jdtype), &t->dtype))
        return repq_fail(err, REPQ_ERR_UNSUPPORTED, ST_PREFIX "tensor '%s': unknown dtype '%.40s'",
                         name, json_string_value(jdtype));

    json_t *jshape = json_object_get(entry, "shape");
    if (!jshape)
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "tensor '%s': missing shape", name);
    if (!json_is_array(jshape))
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "tensor '%s': shape is %s, not an array",
                         name, json_type_name(jshape));
    size_t ndim = json_array_size(jshape);
    if (ndim > REPQ_ST_MAX_DIMS)
        return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                         ST_PREFIX "tensor '%s': %zu dimensions, at most %d supported", name, ndim,
                         REPQ_ST_MAX_DIMS);
    t->ndim = (int32_t)ndim;
    bool has_zero = false;
    for (size_t i = 0; i < ndim; i++) {
        json_t *d = json_array_get(jshape, i);
        if (!json_is_integer(d))
            return repq_fail(err, REPQ_ERR_FORMAT,
                             ST_PREFIX "tensor '%s': shape[%zu] is %s, not an integer", name, i,
                             json_type_name(d));
        json_int_t v = json_integer_value(d);
        if (v < 0)
            return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "tensor '%s': shape[%zu] = %lld is negative",
                             name, i, (long long)v);
        t->shape[i] = (int64_t)v;
        has_zero |= (v == 0);
    }
    size_t numel = 1;
    if (has_zero) {
        numel = 0;
    } else {
        for (size_t i = 0; i < ndim; i++) {
            if ((uint64_t)t->shape[i] > SIZE_MAX || !repq_size_mul(numel, (size_t)t->shape[i], &numel))
                return repq_fail(err, REPQ_ERR_OVERFLOW,
                                 ST_PREFIX "tensor '%s': element count overflows size_t", name);
        }
    }
    size_t nbytes;
    if (!repq_size_mul(numel, repq_st_dtype_size(t->dtype), &nbytes))
        return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "tensor '%s': byte size overflows size_t",
                         name);
    t->numel = numel;
    t->nbytes = nbytes;

    json_t *joff = json_object_get(entry, "data_offsets");
    if (!joff)
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "tensor '%s': missing data_offsets", name);
    if (!json_is_array(joff) || json_array_size(joff) != 2)
        return repq_fail(err, REPQ_ERR_FORMAT,
                         ST_PREFIX "tensor '%s': data_offsets is not an array of two integers", name);
    json_int_t off[2];
    for (size_t i = 0; i < 2; i++) {
        json_t *o = json_array_get(joff, i);
        if (!json_is_integer(o))
            return repq_fail(err, REPQ_ERR_FORMAT,
                             ST_PREFIX "tensor '%s': data_offsets[%zu] is %s, not an integer", name,
                             i, json_type_name(o));
        off[i] = json_integer_value(o);
        if (off[i] < 0)
            return repq_fail(err, REPQ_ERR_FORMAT,
                             ST_PREFIX "tensor '%s': data_offsets[%zu] = %lld is negative", name, i,
                             (long long)off[i]);
    }
    if (off[0] > off[1])
        return repq_fail(err, REPQ_ERR_FORMAT,
                         ST_PREFIX "tensor '%s': data_offsets begin %lld is after end %lld", name,
                         (long long)off[0], (long long)off[1]);
    if ((uint64_t)off[1] > data_size)
        return repq_fail(err, REPQ_ERR_FORMAT,
                         ST_PREFIX "tensor '%s': data ends at %lld, past the %zu-byte data section "
                         "(truncated file)",
                         name, (long long)off[1], data_size);
    size_t span = (size_t)(off[1] - off[0]);
    if (span != nbytes)
        return repq_fail(err, REPQ_ERR_FORMAT,
                         ST_PREFIX "tensor '%s': data_offsets span %zu bytes but %s shape needs %zu",
                         name, span, repq_st_dtype_name(t->dtype), nbytes);
    t->offset = (size_t)off[0];
    return REPQ_OK;
}

/* Byte ranges must not overlap; empty tensors may sit anywhere. */
static repq_status check_overlaps(repq_object *err, repq_st_file *f)
{
    if (f->ntensors < 2)
        return REPQ_OK;
    size_t bytes;
    if (!repq_size_mul(f->ntensors, sizeof(repq_st_tensor *), &bytes))
        return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "too many tensors");
    const repq_st_tensor **order = repq_mem_alloc(&f->al, bytes);
    if (!order)
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "out of memory sorting %zu tensors",
                         f->ntensors);
    for (size_t i = 0; i < f->ntensors; i++)
        order[i] = &f->tensors[i];
    qsort(order, f->ntensors, sizeof *order, cmp_tensor_range);
    repq_status st = REPQ_OK;
    const repq_st_tensor *prev = NULL; /* the non-empty tensor reaching furthest so far */
    for (size_t i = 0; i < f->ntensors; i++) {
        const repq_st_tensor *t = order[i];
        if (t->nbytes == 0)
            continue;
        if (prev && t->offset < prev->offset + prev->nbytes) {
            st = repq_fail(err, REPQ_ERR_FORMAT,
                           ST_PREFIX "tensors '%s' and '%s' overlap in the data section",
                           prev->name, t->name);
            break;
        }
        prev = t;
    }
    repq_mem_free(&f->al, order);
    return st;
}

static repq_status parse_metadata(repq_object *err, json_t *meta, size_t *strings_bytes)
{
    if (!json_is_object(meta))
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "__metadata__ is %s, not an object",
                         json_type_name(meta));
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value))
            return repq_fail(err, REPQ_ERR_FORMAT,
                             ST_PREFIX "__metadata__ entry '%s' is %s, not a string", key,
                             json_type_name(value));
        size_t klen = strlen(key), vlen = json_string_length(value);
        if (klen != json_object_iter_key_len(json_object_key_to_iter(key)) ||
            strlen(json_string_value(value)) != vlen)
            return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "__metadata__ entry contains a NUL byte");
        if (!repq_size_add(*strings_bytes, klen + vlen + 2, strings_bytes))
            return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "metadata too large");
    }
    return REPQ_OK;
}

static repq_status parse_json(repq_object *err, const repq_allocator *al, json_t *root,
                              const uint8_t *data, size_t data_size, repq_st_file *f)
{
    if (!json_is_object(root))
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "header is %s, not a JSON object",
                         json_type_name(root));

    /* Pass 1: count entries and string bytes, validate metadata. */
    size_t strings_bytes = 0, ntensors = 0;
    json_t *meta = NULL;
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        size_t klen = strlen(key);
        if (klen != json_object_iter_key_len(json_object_key_to_iter(key)))
            return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "a tensor name contains a NUL byte");
        if (strcmp(key, "__metadata__") == 0) {
            meta = value;
            repq_status st = parse_metadata(err, meta, &strings_bytes);
            if (st != REPQ_OK)
                return st;
            continue;
        }
        ntensors++;
        if (!repq_size_add(strings_bytes, klen + 1, &strings_bytes))
            return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "names too large");
    }

    size_t nmeta = meta ? json_object_size(meta) : 0;
    size_t tbytes, mbytes;
    if (!repq_size_mul(ntensors, sizeof(repq_st_tensor), &tbytes) ||
        !repq_size_mul(nmeta, sizeof(st_meta), &mbytes))
        return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "too many entries");
    f->tensors = ntensors ? repq_mem_alloc(al, tbytes) : NULL;
    f->meta = nmeta ? repq_mem_alloc(al, mbytes) : NULL;
    f->strings = strings_bytes ? repq_mem_alloc(al, strings_bytes) : NULL;
    if ((ntensors && !f->tensors) || (nmeta && !f->meta) || (strings_bytes && !f->strings))
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "out of memory for %zu tensors", ntensors);

    /* Pass 2: fill. */
    char *cursor = f->strings;
    json_object_foreach(root, key, value) {
        if (value == meta)
            continue;
        repq_st_tensor *t = &f->tensors[f->ntensors];
        repq_status st = parse_entry(err, key, value, data_size, t);
        if (st != REPQ_OK)
            return st;
        t->name = arena_put(&cursor, key, strlen(key));
        t->data = data + t->offset;
        f->ntensors++;
    }
    if (meta) {
        json_object_foreach(meta, key, value) {
            st_meta *m = &f->meta[f->nmeta++];
            m->key = arena_put(&cursor, key, strlen(key));
            m->value = arena_put(&cursor, json_string_value(value), json_string_length(value));
        }
    }
    if (f->ntensors > 1)
        qsort(f->tensors, f->ntensors, sizeof *f->tensors, cmp_tensor_name);
    if (f->nmeta > 1)
        qsort(f->meta, f->nmeta, sizeof *f->meta, cmp_meta_key);
    return check_overlaps(err, f);
}

#define CHECKSUM_PATTERN "\"" REPQ_ST_CHECKSUM_KEY "\":\"" REPQ_ST_CHECKSUM_PREFIX

size_t repq_st_checksum_locate(const uint8_t *file, size_t size, size_t *digits_at)
{
    if (size < 8)
        return 0;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | file[i];
    size_t end = n < size - 8 ? 8 + (size_t)n : size;
    const size_t plen = sizeof CHECKSUM_PATTERN - 1;
    size_t count = 0;
    for (size_t i = 8; i + plen <= end; i++) {
        if (file[i] == '"' && memcmp(file + i, CHECKSUM_PATTERN, plen) == 0) {
            if (count++ == 0)
                *digits_at = i + plen;
        }
    }
    return count;
}

/* Verify the checksum entry when the header holds one; *verified says whether it did. */
static repq_status verify_checksum(repq_object *err, const uint8_t *bytes, size_t size, bool *verified)
{
    *verified = false;
    size_t at = 0;
    size_t count = repq_st_checksum_locate(bytes, size, &at);
    if (count == 0)
        return REPQ_OK;
    if (count > 1)
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "the header holds %zu checksum entries (damaged file)",
                         count);
    uint32_t stored = 0;
    bool well_formed = at + 9 <= size && bytes[at + 8] == '"';
    for (size_t i = 0; well_formed && i < 8; i++) {
        uint8_t c = bytes[at + i];
        if (c >= '0' && c <= '9')
            stored = stored << 4 | (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            stored = stored << 4 | (uint32_t)(c - 'a' + 10);
        else
            well_formed = false;
    }
    if (!well_formed)
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "the checksum entry is not 8 lowercase hex digits "
                         "(damaged file)");
    repq_crc32c crc;
    repq_crc32c_init(&crc);
    repq_crc32c_update(&crc, bytes, at);
    repq_crc32c_update(&crc, "00000000", 8);
    repq_crc32c_update(&crc, bytes + at + 8, size - at - 8);
    uint32_t actual = repq_crc32c_value(&crc);
    if (actual != stored)
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "checksum mismatch: the file is damaged (its CRC-32C "
                         "is %08x, its header records %08x)", (unsigned)actual, (unsigned)stored);
    *verified = true;
    return REPQ_OK;
}

/* What a file that is not safetensors may be, for the message: CIFAR-10's binary format is
 * the other file users hand to the library. */
static const char *what_it_looks_like(const uint8_t *bytes, size_t size)
{
    const size_t record = 3073;
    if (size == 0 || size % record != 0)
        return "not a safetensors file";
    for (size_t at = 0; at < size && at < 64 * record; at += record)
        if (bytes[at] > 9)
            return "not a safetensors file";
    return "it looks like a CIFAR-10 binary file (3073-byte records, a label byte first): read it with "
           "repq_cifar_load";
}

repq_status repq_st_parse(repq_object *err, const repq_allocator *al, const uint8_t *bytes,
                          size_t size, repq_st_file **out)
{
    if (!out)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "out is NULL");
    *out = NULL;
    if (!al || (!bytes && size > 0))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "NULL allocator or bytes");
    if (size < 8)
        return repq_fail(err, REPQ_ERR_FORMAT,
                         ST_PREFIX "file of %zu bytes is shorter than the 8-byte header length (truncated)",
                         size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | bytes[i];
    if (n < 2)
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "header length %llu is too small",
                         (unsigned long long)n);
    if (n > REPQ_ST_MAX_HEADER)
        return repq_fail(err, REPQ_ERR_FORMAT,
                         ST_PREFIX "header length %llu exceeds the limit of %llu bytes (%s)",
                         (unsigned long long)n, (unsigned long long)REPQ_ST_MAX_HEADER,
                         what_it_looks_like(bytes, size));
    if (n > size - 8)
        return repq_fail(err, REPQ_ERR_FORMAT,
                         ST_PREFIX "header length %llu exceeds the %zu bytes after it (truncated file, or %s)",
                         (unsigned long long)n, size - 8, what_it_looks_like(bytes, size));

    bool verified;
    repq_status st = verify_checksum(err, bytes, size, &verified);
    if (st != REPQ_OK)
        return st;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)bytes + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "header JSON error at line %d, column %d: %s",
                         jerr.line, jerr.column, jerr.text);

    repq_st_file *f = repq_mem_alloc(al, sizeof *f);
    if (!f) {
        json_decref(root);
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "out of memory");
    }
    f->al = *al;
    st = parse_json(err, al, root, bytes + 8 + n, size - 8 - (size_t)n, f);
    json_decref(root);
    /* The key spelled another way (a JSON escape) would skip the verification. */
    if (st == REPQ_OK && !verified && repq_st_metadata(f, REPQ_ST_CHECKSUM_KEY))
        st = repq_fail(err, REPQ_ERR_FORMAT, ST_PREFIX "the checksum entry is not in the form the writer uses "
                       "(damaged file)");
    if (st != REPQ_OK) {
        repq_st_close(f);
        return st;
    }
    *out = f;
    return REPQ_OK;
}

repq_status repq_st_open(repq_object *err, const repq_allocator *al, const char *path,
                         repq_st_file **out)
{
    if (!out)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "out is NULL");
    *out = NULL;
    if (!al || !path)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "NULL allocator or path");
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return repq_fail(err, REPQ_ERR_IO, ST_PREFIX "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) {
        int e = errno;
        fclose(fp);
        return repq_fail(err, REPQ_ERR_IO, ST_PREFIX "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        fclose(fp);
        return repq_fail(err, REPQ_ERR_IO, ST_PREFIX "'%s' is not a regular file", path);
    }
    if (sb.st_size < 8) {
        fclose(fp);
        return repq_fail(err, REPQ_ERR_FORMAT,
                         ST_PREFIX "'%s' has %lld bytes, fewer than the 8-byte header length",
                         path, (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX - REPQ_ALIGNMENT) {
        fclose(fp);
        return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "'%s' is too large to read", path);
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *buf = repq_mem_alloc(al, size);
    if (!buf) {
        fclose(fp);
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "cannot allocate %zu bytes for '%s'", size,
                         path);
    }
    size_t got = 0;
    while (got < size) {
        size_t r = fread(buf + got, 1, size - got, fp);
        if (r == 0)
            break;
        got += r;
    }
    bool read_error = ferror(fp) != 0;
    fclose(fp);
    if (read_error || got != size) {
        repq_mem_free(al, buf);
        return repq_fail(err, REPQ_ERR_IO, ST_PREFIX "read %zu of %zu bytes of '%s'%s", got, size,
                         path, read_error ? " (read error)" : " (file shrank)");
    }
    repq_st_file *f;
    repq_status st = repq_st_parse(err, al, buf, size, &f);
    if (st != REPQ_OK) {
        repq_mem_free(al, buf);
        return st;
    }
    f->owned = buf;
    *out = f;
    return REPQ_OK;
}

size_t repq_st_count(const repq_st_file *file)
{
    return file ? file->ntensors : 0;
}

const repq_st_tensor *repq_st_tensor_at(const repq_st_file *file, size_t index)
{
    if (!file || index >= file->ntensors)
        return NULL;
    return &file->tensors[index];
}

const repq_st_tensor *repq_st_find(const repq_st_file *file, const char *name)
{
    if (!file || !name || file->ntensors == 0)
        return NULL;
    repq_st_tensor key = {.name = name};
    return bsearch(&key, file->tensors, file->ntensors, sizeof key, cmp_tensor_name);
}

const char *repq_st_metadata(const repq_st_file *file, const char *key)
{
    if (!file || !key || file->nmeta == 0)
        return NULL;
    st_meta k = {.key = key};
    const st_meta *m = bsearch(&k, file->meta, file->nmeta, sizeof k, cmp_meta_key);
    return m ? m->value : NULL;
}

float repq_st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13); /* infinity, or NaN keeping its payload */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13); /* rebias 15 -> 127 */
    } else if (mant == 0) {
        bits = sign;
    } else {
        /* Subnormal mant * 2^-24: shift until the implicit bit appears. */
        uint32_t e = 113;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float repq_st_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

repq_status repq_st_read_f32(repq_object *err, const repq_st_tensor *t, float *dst, size_t count)
{
    if (!t || (!dst && count > 0))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "read_f32: NULL tensor or dst");
    if (count != t->numel)
        return repq_fail(err, REPQ_ERR_SHAPE,
                         ST_PREFIX "tensor '%s': read_f32 asked for %zu elements, tensor has %zu",
                         t->name, count, t->numel);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case REPQ_ST_F32:
        if (count)
            memcpy(dst, p, count * sizeof(float));
        return REPQ_OK;
    case REPQ_ST_F16:
        for (size_t i = 0; i < count; i++)
            dst[i] = repq_st_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return REPQ_OK;
    case REPQ_ST_BF16:
        for (size_t i = 0; i < count; i++)
            dst[i] = repq_st_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return REPQ_OK;
    default:
        break;
    }
    const char *dn = repq_st_dtype_name(t->dtype);
    return repq_fail(err, REPQ_ERR_UNSUPPORTED,
                     ST_PREFIX "tensor '%s': cannot convert dtype %s to float", t->name,
                     dn ? dn : "?");
}
