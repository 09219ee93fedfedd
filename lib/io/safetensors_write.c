/* safetensors writer: collect tensors and metadata, then serialize. */
#include "io/safetensors.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "io/crc32c.h"
#include "io/replace_file.h"

#define ST_PREFIX "safetensors writer: "

typedef struct st_entry {
    char *name;
    repq_st_dtype dtype;
    int32_t ndim;
    int64_t shape[REPQ_ST_MAX_DIMS];
    const void *data; /* referenced, not owned */
    size_t nbytes;
} st_entry;

typedef struct st_pair {
    char *key;
    char *value;
} st_pair;

struct repq_st_writer {
    repq_object *err;
    repq_allocator al;
    st_entry *entries;
    size_t n, cap;
    st_pair *meta;
    size_t nmeta, capmeta;
};

static char *dup_string(const repq_allocator *al, const char *s)
{
    size_t len = strlen(s);
    char *d = repq_mem_alloc(al, len + 1);
    if (d)
        memcpy(d, s, len + 1);
    return d;
}

static bool is_utf8(const char *s)
{
    json_t *j = json_string(s);
    if (!j)
        return false;
    json_decref(j);
    return true;
}

/* Make room for one more element of `elem` bytes in *items (count n, capacity *cap). */
static bool grow(const repq_allocator *al, void **items, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 16, bytes;
    if (!repq_size_mul(ncap, elem, &bytes))
        return false;
    void *p = repq_mem_alloc(al, bytes);
    if (!p)
        return false;
    if (n)
        memcpy(p, *items, n * elem);
    repq_mem_free(al, *items);
    *items = p;
    *cap = ncap;
    return true;
}

repq_status repq_st_writer_new(repq_object *err, const repq_allocator *al, repq_st_writer **out)
{
    if (!out)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "out is NULL");
    *out = NULL;
    if (!al)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "allocator is NULL");
    repq_st_writer *w = repq_mem_alloc(al, sizeof *w);
    if (!w)
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "out of memory");
    w->err = err;
    w->al = *al;
    *out = w;
    return REPQ_OK;
}

void repq_st_writer_free(repq_st_writer *w)
{
    if (!w)
        return;
    repq_allocator al = w->al;
    for (size_t i = 0; i < w->n; i++)
        repq_mem_free(&al, w->entries[i].name);
    for (size_t i = 0; i < w->nmeta; i++) {
        repq_mem_free(&al, w->meta[i].key);
        repq_mem_free(&al, w->meta[i].value);
    }
    repq_mem_free(&al, w->entries);
    repq_mem_free(&al, w->meta);
    repq_mem_free(&al, w);
}

repq_status repq_st_writer_add(repq_st_writer *w, const char *name, repq_st_dtype dtype,
                               int32_t ndim, const int64_t *shape, const void *data,
                               size_t nbytes)
{
    if (!w)
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = w->err;
    if (!name || name[0] == '\0')
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "tensor name is NULL or empty");
    if (strcmp(name, "__metadata__") == 0)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "tensor name '__metadata__' is reserved");
    if (!is_utf8(name))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "tensor name is not valid UTF-8");
    size_t esize = repq_st_dtype_size(dtype);
    if (esize == 0)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "tensor '%s': unknown dtype %d",
                         name, (int)dtype);
    if (ndim < 0 || ndim > REPQ_ST_MAX_DIMS || (ndim > 0 && !shape))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT,
                         ST_PREFIX "tensor '%s': ndim %d outside [0, %d] or NULL shape", name,
                         (int)ndim, REPQ_ST_MAX_DIMS);
    size_t numel = 1;
    bool has_zero = false;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT,
                             ST_PREFIX "tensor '%s': extent %lld of dimension %d is negative", name,
                             (long long)shape[i], (int)i);
        has_zero |= shape[i] == 0;
    }
    if (has_zero) {
        numel = 0;
    } else {
        for (int32_t i = 0; i < ndim; i++)
            if ((uint64_t)shape[i] > SIZE_MAX || !repq_size_mul(numel, (size_t)shape[i], &numel))
                return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "tensor '%s': element count overflows",
                                 name);
    }
    size_t need;
    if (!repq_size_mul(numel, esize, &need))
        return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "tensor '%s': byte size overflows", name);
    if (need != nbytes)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT,
                         ST_PREFIX "tensor '%s': %zu bytes given, shape and dtype need %zu", name,
                         nbytes, need);
    if (nbytes > 0 && !data)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "tensor '%s': data is NULL", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "tensor '%s' added twice", name);
    if (!grow(&w->al, (void **)&w->entries, w->n, &w->cap, sizeof *w->entries))
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "out of memory adding '%s'", name);
    st_entry *e = &w->entries[w->n];
    memset(e, 0, sizeof *e);
    e->name = dup_string(&w->al, name);
    if (!e->name)
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "out of memory adding '%s'", name);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int32_t i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->data = data;
    e->nbytes = nbytes;
    w->n++;
    return REPQ_OK;
}

repq_status repq_st_writer_set_metadata(repq_st_writer *w, const char *key, const char *value)
{
    if (!w)
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = w->err;
    if (!key || !value)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "metadata key or value is NULL");
    if (!is_utf8(key) || !is_utf8(value))
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT,
                         ST_PREFIX "metadata '%.60s' is not valid UTF-8", key);
    char *v = dup_string(&w->al, value);
    if (!v)
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "out of memory for metadata");
    for (size_t i = 0; i < w->nmeta; i++) {
        if (strcmp(w->meta[i].key, key) == 0) {
            repq_mem_free(&w->al, w->meta[i].value);
            w->meta[i].value = v;
            return REPQ_OK;
        }
    }
    char *k = dup_string(&w->al, key);
    if (!k || !grow(&w->al, (void **)&w->meta, w->nmeta, &w->capmeta, sizeof *w->meta)) {
        repq_mem_free(&w->al, k);
        repq_mem_free(&w->al, v);
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "out of memory for metadata");
    }
    w->meta[w->nmeta++] = (st_pair){k, v};
    return REPQ_OK;
}

/* Build the header JSON tree; *data_bytes receives the size of the data section. */
static repq_status build_json(repq_st_writer *w, json_t **out, size_t *data_bytes)
{
    repq_object *err = w->err;
    *out = NULL;
    json_t *root = json_object();
    if (!root)
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "out of memory building the header");
    size_t offset = 0;
    for (size_t i = 0; i < w->n; i++) {
        const st_entry *e = &w->entries[i];
        size_t end;
        if (!repq_size_add(offset, e->nbytes, &end) || end > (size_t)LLONG_MAX) {
            json_decref(root);
            return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "data section overflows at '%s'",
                             e->name);
        }
        json_t *shape = json_array();
        json_t *entry = json_object();
        json_t *offs = json_array();
        bool ok = shape && entry && offs;
        for (int32_t d = 0; ok && d < e->ndim; d++)
            ok = json_array_append_new(shape, json_integer((json_int_t)e->shape[d])) == 0;
        ok = ok && json_array_append_new(offs, json_integer((json_int_t)offset)) == 0 &&
             json_array_append_new(offs, json_integer((json_int_t)end)) == 0;
        ok = ok && json_object_set_new(entry, "dtype", json_string(repq_st_dtype_name(e->dtype))) == 0;
        if (ok) {
            ok = json_object_set_new(entry, "shape", shape) == 0;
            shape = NULL;
        }
        if (ok) {
            ok = json_object_set_new(entry, "data_offsets", offs) == 0;
            offs = NULL;
        }
        if (ok) {
            ok = json_object_set_new(root, e->name, entry) == 0;
            entry = NULL;
        }
        json_decref(shape);
        json_decref(offs);
        json_decref(entry);
        if (!ok) {
            json_decref(root);
            return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "cannot build the header entry of '%s'",
                             e->name);
        }
        offset = end;
    }
    {
        /* Every file carries its checksum; the placeholder is patched once the bytes
         * around it are known. A caller's entry of the same name is replaced. */
        json_t *meta = json_object();
        bool ok = meta != NULL;
        for (size_t i = 0; ok && i < w->nmeta; i++)
            if (strcmp(w->meta[i].key, REPQ_ST_CHECKSUM_KEY) != 0)
                ok = json_object_set_new(meta, w->meta[i].key, json_string(w->meta[i].value)) == 0;
        if (ok)
            ok = json_object_set_new(meta, REPQ_ST_CHECKSUM_KEY,
                                     json_string(REPQ_ST_CHECKSUM_PREFIX "00000000")) == 0;
        if (ok) {
            ok = json_object_set_new(root, "__metadata__", meta) == 0;
            meta = NULL;
        }
        json_decref(meta);
        if (!ok) {
            json_decref(root);
            return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "cannot build the metadata");
        }
    }
    *out = root;
    *data_bytes = offset;
    return REPQ_OK;
}

/* Serialize the length prefix and padded header into a buffer of `extra` more bytes
 * (left for the caller). *out_header_size is 8 + padded header length. */
static repq_status build_header(repq_st_writer *w, size_t extra, uint8_t **out_buf,
                                size_t *out_header_size, size_t *out_data_bytes)
{
    repq_object *err = w->err;
    *out_buf = NULL;
    json_t *root;
    size_t data_bytes = 0;
    repq_status st = build_json(w, &root, &data_bytes);
    if (st != REPQ_OK)
        return st;
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS;
    size_t json_len = json_dumpb(root, NULL, 0, flags);
    if (json_len == 0) {
        json_decref(root);
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "cannot serialize the header");
    }
    size_t padded = (json_len + 7) / 8 * 8;
    size_t total = 8 + padded;
    if (extra == SIZE_MAX)
        extra = data_bytes;
    if (!repq_size_add(total, extra, &total)) {
        json_decref(root);
        return repq_fail(err, REPQ_ERR_OVERFLOW, ST_PREFIX "file size overflows");
    }
    uint8_t *buf = repq_mem_alloc(&w->al, total);
    if (!buf) {
        json_decref(root);
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "cannot allocate %zu bytes", total);
    }
    size_t written = json_dumpb(root, (char *)buf + 8, json_len, flags);
    json_decref(root);
    if (written != json_len) {
        repq_mem_free(&w->al, buf);
        return repq_fail(err, REPQ_ERR_NOMEM, ST_PREFIX "cannot serialize the header");
    }
    memset(buf + 8 + json_len, ' ', padded - json_len);
    uint64_t n = padded;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(n >> (8 * i));
    /* The checksum covers the whole file with its own eight digits read as "00000000",
     * which is what the placeholder holds now. */
    size_t digits_at = 0;
    if (repq_st_checksum_locate(buf, 8 + padded, &digits_at) != 1) {
        repq_mem_free(&w->al, buf);
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "cannot place the checksum in the header");
    }
    repq_crc32c crc;
    repq_crc32c_init(&crc);
    repq_crc32c_update(&crc, buf, 8 + padded);
    for (size_t i = 0; i < w->n; i++)
        if (w->entries[i].nbytes)
            repq_crc32c_update(&crc, w->entries[i].data, w->entries[i].nbytes);
    char digits[9];
    snprintf(digits, sizeof digits, "%08x", (unsigned)repq_crc32c_value(&crc));
    memcpy(buf + digits_at, digits, 8);
    *out_buf = buf;
    *out_header_size = 8 + padded;
    *out_data_bytes = data_bytes;
    return REPQ_OK;
}

repq_status repq_st_writer_to_memory(repq_st_writer *w, uint8_t **out_bytes, size_t *out_size)
{
    if (!w)
        return REPQ_ERR_INVALID_ARGUMENT;
    if (!out_bytes || !out_size)
        return repq_fail(w->err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "NULL output pointer");
    *out_bytes = NULL;
    *out_size = 0;
    uint8_t *buf;
    size_t header_size = 0, data_bytes = 0;
    repq_status st = build_header(w, SIZE_MAX, &buf, &header_size, &data_bytes);
    if (st != REPQ_OK)
        return st;
    uint8_t *p = buf + header_size;
    for (size_t i = 0; i < w->n; i++) {
        if (w->entries[i].nbytes)
            memcpy(p, w->entries[i].data, w->entries[i].nbytes);
        p += w->entries[i].nbytes;
    }
    *out_bytes = buf;
    *out_size = header_size + data_bytes;
    return REPQ_OK;
}

repq_status repq_st_writer_write(repq_st_writer *w, const char *path)
{
    if (!w)
        return REPQ_ERR_INVALID_ARGUMENT;
    repq_object *err = w->err;
    if (!path)
        return repq_fail(err, REPQ_ERR_INVALID_ARGUMENT, ST_PREFIX "path is NULL");
    uint8_t *header;
    size_t header_size = 0, data_bytes = 0;
    repq_status st = build_header(w, 0, &header, &header_size, &data_bytes);
    if (st != REPQ_OK)
        return st;
    repq_replace_file f;
    st = repq_replace_open(err, path, &f);
    if (st == REPQ_OK)
        st = repq_replace_write(err, &f, header, header_size);
    repq_mem_free(&w->al, header);
    for (size_t i = 0; st == REPQ_OK && i < w->n; i++)
        if (w->entries[i].nbytes)
            st = repq_replace_write(err, &f, w->entries[i].data, w->entries[i].nbytes);
    if (st == REPQ_OK)
        st = repq_replace_commit(err, &f);
    return st;
}
