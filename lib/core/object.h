/* Internal: the header every public handle starts with, the allocator it carries,
 * error recording, and checked size arithmetic. */
#ifndef REPQ_CORE_OBJECT_H
#define REPQ_CORE_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "repq/common.h"

#define REPQ_ERROR_CAPACITY 256
/* SIMD buffers are aligned to a cache line (and an AVX-512 register). */
#define REPQ_ALIGNMENT 64

typedef struct repq_allocator {
    repq_alloc_fn alloc;
    repq_release_fn release;
    void *user;
} repq_allocator;

typedef enum repq_object_kind {
    REPQ_KIND_CONTEXT = 0x52510001u,
    REPQ_KIND_TENSOR = 0x52510002u,
    REPQ_KIND_MODEL = 0x52510003u,
    REPQ_KIND_OPTIONS = 0x52510004u,
    REPQ_KIND_CALIB = 0x52510005u,
    REPQ_KIND_QMODEL = 0x52510006u,
    REPQ_KIND_SESSION = 0x52510007u,
    REPQ_KIND_IMAGE_LOADER = 0x52510008u,
    REPQ_KIND_IMAGE_FOLDER = 0x52510009u
} repq_object_kind;

typedef struct repq_object {
    uint32_t kind;
    repq_allocator allocator;
    char error[REPQ_ERROR_CAPACITY];
} repq_object;

/* The allocator a new handle inherits from a context (the C allocator for NULL). */
repq_allocator repq_allocator_of(const repq_context *ctx);
/* The object that receives messages of a creating call (NULL when ctx is NULL). */
repq_object *repq_context_object(repq_context *ctx);

void repq_object_init(repq_object *obj, repq_object_kind kind, repq_allocator allocator);
/* True if `handle` is non-NULL and a live object of `kind`. */
bool repq_object_is(const void *handle, repq_object_kind kind);

/* Zeroed, REPQ_ALIGNMENT-aligned memory, or NULL (also for size 0). */
void *repq_mem_alloc(const repq_allocator *allocator, size_t size);
void repq_mem_free(const repq_allocator *allocator, void *ptr);

/* Blocks freed together: each allocation is linked into the chain (its first bytes hold
 * the previous head) and counted, and one call frees them all. */
typedef struct repq_mem_chain {
    void *head;
    size_t bytes; /* allocated so far, links included */
} repq_mem_chain;
/* Zeroed, REPQ_ALIGNMENT-aligned room for count x size bytes linked into `chain`, or
 * NULL (overflow or out of memory). */
void *repq_mem_chain_alloc(const repq_allocator *allocator, repq_mem_chain *chain, size_t count, size_t size);
void repq_mem_chain_free(const repq_allocator *allocator, repq_mem_chain *chain);

/* Record a formatted message on `obj` (which may be NULL) and return `status`. */
repq_status repq_fail(repq_object *obj, repq_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void repq_clear_error(repq_object *obj);
/* The end of a public call that cleared `obj`'s message when it started: a failure that
 * an inner step returned without a message gets "<fn> failed: <status name>", so that a
 * failing call never leaves an older, unrelated message in place. Returns `status`. */
repq_status repq_fail_default(repq_object *obj, repq_status status, const char *fn);

/* Checked arithmetic: false on overflow. */
bool repq_size_mul(size_t a, size_t b, size_t *out);
bool repq_size_add(size_t a, size_t b, size_t *out);

#endif
