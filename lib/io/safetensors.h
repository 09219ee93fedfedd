/* Internal: reading and writing the safetensors format.
 *
 * Layout of a file: an 8-byte little-endian unsigned header length N, then N bytes of
 * UTF-8 JSON (one object mapping tensor names to {"dtype", "shape", "data_offsets"},
 * plus an optional "__metadata__" object of string -> string), then the data section.
 * data_offsets [begin, end) are relative to the first byte of the data section.
 *
 * Errors are recorded with repq_fail on the `err` object passed in (which may be NULL);
 * messages name the problem and, where there is one, the tensor. Memory comes from the
 * allocator passed in, except jansson's own temporary allocations while parsing or
 * serializing the header. Nothing here prints, aborts or keeps global mutable state.
 * A parsed file is immutable: it may be read from several threads at once.
 * Multi-byte element data is little-endian; the library requires a little-endian host.
 */
#ifndef REPQ_IO_SAFETENSORS_H
#define REPQ_IO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/object.h"

#define REPQ_ST_MAX_DIMS 8
/* Largest header accepted by the reader (hostile files could claim anything). */
#define REPQ_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* Element types of the format. Internal: numbered for this file only. */
typedef enum repq_st_dtype {
    REPQ_ST_BOOL = 1,
    REPQ_ST_U8 = 2,
    REPQ_ST_I8 = 3,
    REPQ_ST_F8_E4M3 = 4,
    REPQ_ST_F8_E5M2 = 5,
    REPQ_ST_I16 = 6,
    REPQ_ST_U16 = 7,
    REPQ_ST_F16 = 8,
    REPQ_ST_BF16 = 9,
    REPQ_ST_I32 = 10,
    REPQ_ST_U32 = 11,
    REPQ_ST_F32 = 12,
    REPQ_ST_I64 = 13,
    REPQ_ST_U64 = 14,
    REPQ_ST_F64 = 15
} repq_st_dtype;

/* The format's name of a dtype ("F32", "BF16"...), or NULL for a value out of range. */
const char *repq_st_dtype_name(repq_st_dtype dtype);
/* Bytes per element (1, 2, 4 or 8), or 0 for a value out of range. */
size_t repq_st_dtype_size(repq_st_dtype dtype);
/* The dtype named `name` (exact, case-sensitive); false if unknown. */
bool repq_st_dtype_from_name(const char *name, repq_st_dtype *out);

/* One tensor of a parsed file. All pointers are owned by the file and stay valid
 * until repq_st_close. `data` has no particular alignment; use memcpy. */
typedef struct repq_st_tensor {
    const char *name;      /* NUL-terminated UTF-8 */
    repq_st_dtype dtype;
    int32_t ndim;          /* 0..REPQ_ST_MAX_DIMS; 0 is a scalar of one element */
    int64_t shape[REPQ_ST_MAX_DIMS];
    size_t numel;          /* product of shape (1 for a scalar, may be 0) */
    size_t nbytes;         /* numel * repq_st_dtype_size(dtype) */
    size_t offset;         /* begin of the tensor in the data section */
    const uint8_t *data;   /* nbytes bytes (not dereferenceable when nbytes is 0) */
} repq_st_tensor;

typedef struct repq_st_file repq_st_file;

/* Parse a whole file image held in memory. The file object BORROWS `bytes`: it copies
 * the names and metadata strings but not the tensor data, so `bytes` must stay valid
 * and unchanged until repq_st_close(*out). Tensors are listed sorted by name.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (NULL al/out, NULL bytes with size > 0),
 * REPQ_ERR_FORMAT (malformed or inconsistent header or data ranges), REPQ_ERR_UNSUPPORTED
 * (unknown dtype, more than REPQ_ST_MAX_DIMS dimensions), REPQ_ERR_OVERFLOW (a size
 * does not fit size_t), REPQ_ERR_NOMEM. On failure *out is NULL. */
repq_status repq_st_parse(repq_object *err, const repq_allocator *al, const uint8_t *bytes,
                          size_t size, repq_st_file **out);

/* Read the file at `path` completely into a buffer the file object owns, then parse it
 * as repq_st_parse does. Errors: as repq_st_parse, plus REPQ_ERR_IO (cannot open, stat
 * or read, not a regular file) and REPQ_ERR_FORMAT (file smaller than 8 bytes). */
repq_status repq_st_open(repq_object *err, const repq_allocator *al, const char *path,
                         repq_st_file **out);

/* Free a file object (and its buffer when it came from repq_st_open). Accepts NULL. */
void repq_st_close(repq_st_file *file);

/* Number of tensors (the "__metadata__" entry is not a tensor). */
size_t repq_st_count(const repq_st_file *file);
/* Tensor `index` in name order, or NULL if index >= count. */
const repq_st_tensor *repq_st_tensor_at(const repq_st_file *file, size_t index);
/* The tensor called `name`, or NULL if there is none. */
const repq_st_tensor *repq_st_find(const repq_st_file *file, const char *name);
/* The value of metadata entry `key`, or NULL if absent. Owned by the file. */
const char *repq_st_metadata(const repq_st_file *file, const char *key);

/* ---- Checksum -------------------------------------------------------------------
 * Every file the writer makes holds the metadata entry "repq_checksum":
 * "crc32c:<8 lowercase hex digits>", the CRC-32C of the whole file with those eight
 * digits read as "00000000". The reader verifies it before parsing the header when the
 * entry is present in exactly this form, and refuses a file whose header holds the key
 * in any other form; files without the entry (written elsewhere or by older versions)
 * are read as before. */
#define REPQ_ST_CHECKSUM_KEY "repq_checksum"
#define REPQ_ST_CHECKSUM_PREFIX "crc32c:"

/* How many times the entry's key and prefix ("repq_checksum":"crc32c:) occur in the
 * header bytes of `file` (its first `size` bytes, the header length taken from them);
 * *digits_at receives the offset of the first occurrence's digits. A quote can only
 * end a JSON string, so the pattern cannot hide inside another string. */
size_t repq_st_checksum_locate(const uint8_t *file, size_t size, size_t *digits_at);

/* Convert the F32, F16 or BF16 tensor `t` to `count` floats in `dst` (F16 handles
 * subnormals, infinities and NaNs exactly). Errors: REPQ_ERR_INVALID_ARGUMENT (NULL
 * t, NULL dst with count > 0), REPQ_ERR_SHAPE (count differs from t->numel),
 * REPQ_ERR_UNSUPPORTED (any other dtype). */
repq_status repq_st_read_f32(repq_object *err, const repq_st_tensor *t, float *dst,
                             size_t count);

/* Single-value conversions (bit patterns as stored). */
float repq_st_f16_to_f32(uint16_t bits);
float repq_st_bf16_to_f32(uint16_t bits);

/* ---- Writer --------------------------------------------------------------------
 * A builder that collects tensors and metadata, then writes one file. Names, shapes
 * and metadata strings are copied when added; tensor DATA IS REFERENCED, not copied:
 * each `data` buffer must stay valid and unchanged until the last write call or
 * repq_st_writer_free. Failures of every writer call are recorded on the `err` given
 * to repq_st_writer_new, which must therefore outlive the writer (or be NULL).
 * Output: header keys sorted by name (byte order), data in insertion order with
 * contiguous data_offsets, header padded with spaces to a multiple of 8 bytes. */
typedef struct repq_st_writer repq_st_writer;

/* Errors: REPQ_ERR_INVALID_ARGUMENT (NULL al/out), REPQ_ERR_NOMEM. */
repq_status repq_st_writer_new(repq_object *err, const repq_allocator *al,
                               repq_st_writer **out);
/* Add a tensor of `ndim` (0..REPQ_ST_MAX_DIMS) extents >= 0; `nbytes` must equal
 * product(shape) * dtype size; `data` may be NULL only when nbytes is 0.
 * Errors: REPQ_ERR_INVALID_ARGUMENT (NULL, bad dtype/ndim/extent, empty, non-UTF-8 or
 * reserved or duplicate name, wrong nbytes), REPQ_ERR_OVERFLOW, REPQ_ERR_NOMEM. */
repq_status repq_st_writer_add(repq_st_writer *w, const char *name, repq_st_dtype dtype,
                               int32_t ndim, const int64_t *shape, const void *data,
                               size_t nbytes);
/* Set (or replace) a "__metadata__" entry; both strings are copied and must be UTF-8.
 * Errors: REPQ_ERR_INVALID_ARGUMENT, REPQ_ERR_NOMEM. */
repq_status repq_st_writer_set_metadata(repq_st_writer *w, const char *key, const char *value);
/* Write the file to `path` without ever losing the file it replaces: a temporary file
 * beside it, fsync, rename (io/replace_file.h). Errors: REPQ_ERR_INVALID_ARGUMENT,
 * REPQ_ERR_IO (the destination is a directory or not a regular file, a create, write,
 * flush or rename failed; nothing is left behind), REPQ_ERR_OVERFLOW, REPQ_ERR_NOMEM. */
repq_status repq_st_writer_write(repq_st_writer *w, const char *path);
/* Serialize to a new buffer from the writer's allocator, to be released with
 * repq_mem_free(al, *out_bytes). Same content as repq_st_writer_write. */
repq_status repq_st_writer_to_memory(repq_st_writer *w, uint8_t **out_bytes, size_t *out_size);
/* Free the writer (not the referenced data). Accepts NULL. */
void repq_st_writer_free(repq_st_writer *w);

#endif
