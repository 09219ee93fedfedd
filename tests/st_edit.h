/* Edited copies of safetensors files, for the tests of hostile input: one tensor
 * dropped, rewritten, reshaped or added, and/or one metadata entry replaced. */
#ifndef REPQ_TESTS_ST_EDIT_H
#define REPQ_TESTS_ST_EDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

typedef struct st_edit {
    const char *tensor;                      /* tensor to change or add (NULL: none) */
    bool drop;                               /* leave it out */
    void (*patch)(uint8_t *bytes, size_t n); /* rewrite its bytes */
    /* With ndim > 0: write it with this dtype and shape, its bytes `data` if given, else
     * its old bytes as far as they go and zeros after; added when the file lacks it. */
    repq_st_dtype dtype;
    int32_t ndim;
    int64_t shape[3];
    const void *data;
    const char *key, *value; /* metadata entry to replace (value NULL: drop) */
} st_edit;

/* Write `src` with the edit applied to `dst` (failing the running cmocka test on any
 * error). */
void st_edit_write(const char *src, const char *dst, const st_edit *e);

#endif
