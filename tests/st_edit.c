#include "st_edit.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Every metadata key the library's files carry. */
static const char *const meta_keys[] = {"format", "format_version", "architecture", "preprocess", "quant", "note"};

void st_edit_write(const char *src, const char *dst, const st_edit *e)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_st_file *f;
    assert_int_equal(repq_st_open(NULL, &al, src, &f), REPQ_OK);
    repq_st_writer *w;
    assert_int_equal(repq_st_writer_new(NULL, &al, &w), REPQ_OK);
    uint8_t *copy = NULL; /* the writer references it until it writes */
    bool found = false;
    size_t want = 0;
    if (e->tensor && e->ndim > 0) {
        want = repq_st_dtype_size(e->dtype);
        for (int32_t k = 0; k < e->ndim; k++)
            want *= (size_t)e->shape[k];
        copy = calloc(1, want + 1);
        assert_non_null(copy);
        if (e->data)
            memcpy(copy, e->data, want);
    }
    for (size_t i = 0; i < repq_st_count(f); i++) {
        const repq_st_tensor *t = repq_st_tensor_at(f, i);
        if (e->tensor && strcmp(t->name, e->tensor) == 0) {
            found = true;
            if (e->drop)
                continue;
            if (e->ndim > 0) {
                if (!e->data)
                    memcpy(copy, t->data, want < t->nbytes ? want : t->nbytes);
                assert_int_equal(repq_st_writer_add(w, t->name, e->dtype, e->ndim, e->shape, copy, want), REPQ_OK);
                continue;
            }
            if (e->patch) {
                copy = malloc(t->nbytes + 1);
                assert_non_null(copy);
                memcpy(copy, t->data, t->nbytes);
                e->patch(copy, t->nbytes);
                assert_int_equal(repq_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, copy, t->nbytes), REPQ_OK);
                continue;
            }
        }
        assert_int_equal(repq_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes), REPQ_OK);
    }
    if (e->tensor && !found && e->ndim > 0)
        assert_int_equal(repq_st_writer_add(w, e->tensor, e->dtype, e->ndim, e->shape, copy, want), REPQ_OK);
    for (size_t i = 0; i < sizeof meta_keys / sizeof meta_keys[0]; i++) {
        const char *v = repq_st_metadata(f, meta_keys[i]);
        if (e->key && strcmp(e->key, meta_keys[i]) == 0)
            v = e->value;
        if (v)
            assert_int_equal(repq_st_writer_set_metadata(w, meta_keys[i], v), REPQ_OK);
    }
    assert_int_equal(repq_st_writer_write(w, dst), REPQ_OK);
    repq_st_writer_free(w);
    free(copy);
    repq_st_close(f);
}
