#include "core/object.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct repq_context {
    repq_object base;
};

static void *c_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    size_t rounded = (size + alignment - 1) / alignment * alignment;
    return aligned_alloc(alignment, rounded);
}

static void c_release(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

static const repq_allocator c_allocator = {c_alloc, c_release, NULL};

repq_allocator repq_allocator_of(const repq_context *ctx)
{
    return ctx ? ctx->base.allocator : c_allocator;
}

repq_object *repq_context_object(repq_context *ctx)
{
    return repq_object_is(ctx, REPQ_KIND_CONTEXT) ? &ctx->base : NULL;
}

void repq_object_init(repq_object *obj, repq_object_kind kind, repq_allocator allocator)
{
    obj->kind = (uint32_t)kind;
    obj->allocator = allocator;
    obj->error[0] = '\0';
}

bool repq_object_is(const void *handle, repq_object_kind kind)
{
    return handle != NULL && ((const repq_object *)handle)->kind == (uint32_t)kind;
}

void *repq_mem_alloc(const repq_allocator *allocator, size_t size)
{
    if (size == 0 || size > SIZE_MAX - REPQ_ALIGNMENT)
        return NULL;
    void *p = allocator->alloc(allocator->user, size, REPQ_ALIGNMENT);
    if (p)
        memset(p, 0, size);
    return p;
}

void repq_mem_free(const repq_allocator *allocator, void *ptr)
{
    if (ptr)
        allocator->release(allocator->user, ptr);
}

void *repq_mem_chain_alloc(const repq_allocator *allocator, repq_mem_chain *chain, size_t count, size_t size)
{
    size_t bytes, total;
    if (!repq_size_mul(count, size, &bytes) || !repq_size_add(bytes, REPQ_ALIGNMENT, &total))
        return NULL;
    uint8_t *p = repq_mem_alloc(allocator, total);
    if (!p)
        return NULL;
    memcpy(p, &chain->head, sizeof(void *));
    chain->head = p;
    chain->bytes += total;
    return p + REPQ_ALIGNMENT;
}

void repq_mem_chain_free(const repq_allocator *allocator, repq_mem_chain *chain)
{
    while (chain->head) {
        void *next;
        memcpy(&next, chain->head, sizeof(void *));
        repq_mem_free(allocator, chain->head);
        chain->head = next;
    }
    chain->bytes = 0;
}

repq_status repq_fail(repq_object *obj, repq_status status, const char *fmt, ...)
{
    if (obj) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(obj->error, sizeof obj->error, fmt, ap);
        va_end(ap);
    }
    return status;
}

void repq_clear_error(repq_object *obj)
{
    if (obj)
        obj->error[0] = '\0';
}

repq_status repq_fail_default(repq_object *obj, repq_status status, const char *fn)
{
    if (status != REPQ_OK && obj && obj->error[0] == '\0')
        repq_fail(obj, status, "%s failed: %s", fn, repq_status_string(status));
    return status;
}

bool repq_size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

bool repq_size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return false;
    *out = a + b;
    return true;
}

REPQ_API repq_status repq_context_new(repq_context **out_ctx)
{
    if (!out_ctx)
        return REPQ_ERR_INVALID_ARGUMENT;
    *out_ctx = NULL;
    repq_context *ctx = repq_mem_alloc(&c_allocator, sizeof *ctx);
    if (!ctx)
        return REPQ_ERR_NOMEM;
    repq_object_init(&ctx->base, REPQ_KIND_CONTEXT, c_allocator);
    *out_ctx = ctx;
    return REPQ_OK;
}

REPQ_API void repq_context_free(repq_context *ctx)
{
    if (!repq_object_is(ctx, REPQ_KIND_CONTEXT))
        return;
    ctx->base.kind = 0;
    /* The context itself always lives in the C allocator. */
    repq_mem_free(&c_allocator, ctx);
}

REPQ_API repq_status repq_context_set_allocator(repq_context *ctx, repq_alloc_fn alloc,
                                                repq_release_fn release, void *user)
{
    if (!repq_object_is(ctx, REPQ_KIND_CONTEXT))
        return REPQ_ERR_INVALID_ARGUMENT;
    if (!alloc || !release)
        return repq_fail(&ctx->base, REPQ_ERR_INVALID_ARGUMENT,
                         "repq_context_set_allocator: alloc and release must both be set");
    ctx->base.allocator = (repq_allocator){alloc, release, user};
    return REPQ_OK;
}

REPQ_API const char *repq_last_error(const void *handle)
{
    if (!handle)
        return "";
    const repq_object *obj = handle;
    if ((obj->kind & 0xffff0000u) != 0x52510000u)
        return "";
    return obj->error;
}

REPQ_API const char *repq_status_string(repq_status status)
{
    switch (status) {
    case REPQ_OK: return "REPQ_OK: success";
    case REPQ_ERR_INVALID_ARGUMENT: return "REPQ_ERR_INVALID_ARGUMENT: invalid argument";
    case REPQ_ERR_NOMEM: return "REPQ_ERR_NOMEM: out of memory";
    case REPQ_ERR_IO: return "REPQ_ERR_IO: input/output error";
    case REPQ_ERR_FORMAT: return "REPQ_ERR_FORMAT: malformed file";
    case REPQ_ERR_UNSUPPORTED: return "REPQ_ERR_UNSUPPORTED: not supported";
    case REPQ_ERR_SHAPE: return "REPQ_ERR_SHAPE: shape or dtype mismatch";
    case REPQ_ERR_STATE: return "REPQ_ERR_STATE: call out of order";
    case REPQ_ERR_NUMERIC: return "REPQ_ERR_NUMERIC: NaN or infinity";
    case REPQ_ERR_OVERFLOW: return "REPQ_ERR_OVERFLOW: size overflow";
    }
    return "unknown repq_status";
}

#define REPQ_STRINGIFY_(x) #x
#define REPQ_STRINGIFY(x) REPQ_STRINGIFY_(x)

REPQ_API const char *repq_version_string(void)
{
    return REPQ_STRINGIFY(REPQ_VERSION_MAJOR) "." REPQ_STRINGIFY(REPQ_VERSION_MINOR) "." REPQ_STRINGIFY(
        REPQ_VERSION_PATCH);
}

REPQ_API int32_t repq_version_number(void)
{
    return REPQ_VERSION_NUMBER;
}
