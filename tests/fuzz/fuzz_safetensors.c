/* libFuzzer entry point for the safetensors reader.
 *
 * Parses the input from memory, touches every tensor (lookup by name, float
 * conversion of F32/F16/BF16) and the metadata, then checks a round trip: a file the
 * reader accepts, re-serialized by the writer, parses again to the same tensors.
 * Build: clang -fsanitize=fuzzer,address,undefined -I include -I lib \
 *   tests/fuzz/fuzz_safetensors.c lib/io/safetensors.c lib/io/safetensors_write.c \
 *   lib/core/object.c $(pkg-config --cflags --libs jansson) -lm
 * Seeds: tests/fuzz/corpus/safetensors/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static void round_trip(const repq_allocator *al, const repq_st_file *f)
{
    repq_object err = {0};
    repq_st_writer *w;
    if (repq_st_writer_new(&err, al, &w) != REPQ_OK)
        return;
    size_t n = repq_st_count(f);
    for (size_t i = 0; i < n; i++) {
        const repq_st_tensor *t = repq_st_tensor_at(f, i);
        if (repq_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes) != REPQ_OK) {
            repq_st_writer_free(w);
            return;
        }
    }
    uint8_t *mem;
    size_t size;
    if (repq_st_writer_to_memory(w, &mem, &size) == REPQ_OK) {
        repq_st_file *g;
        check(repq_st_parse(&err, al, mem, size, &g) == REPQ_OK);
        check(repq_st_count(g) == n);
        for (size_t i = 0; i < n; i++) {
            const repq_st_tensor *a = repq_st_tensor_at(f, i), *b = repq_st_tensor_at(g, i);
            check(strcmp(a->name, b->name) == 0 && a->dtype == b->dtype && a->ndim == b->ndim);
            check(a->nbytes == b->nbytes);
            check(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
        }
        repq_st_close(g);
        repq_mem_free(al, mem);
    }
    repq_st_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    repq_allocator al = repq_allocator_of(NULL);
    repq_object err = {0};
    repq_st_file *f = NULL;
    if (repq_st_parse(&err, &al, data, size, &f) != REPQ_OK) {
        check(f == NULL && err.error[0] != '\0');
        return 0;
    }
    size_t n = repq_st_count(f);
    for (size_t i = 0; i < n; i++) {
        const repq_st_tensor *t = repq_st_tensor_at(f, i);
        check(repq_st_find(f, t->name) == t);
        check(t->nbytes <= size && t->data >= data && t->data + t->nbytes <= data + size);
        if (t->dtype == REPQ_ST_F32 || t->dtype == REPQ_ST_F16 || t->dtype == REPQ_ST_BF16) {
            float *dst = t->numel ? malloc(t->numel * sizeof *dst) : NULL;
            if (t->numel == 0 || dst)
                check(repq_st_read_f32(&err, t, dst, t->numel) == REPQ_OK);
            free(dst);
        } else {
            float one;
            check(repq_st_read_f32(&err, t, &one, t->numel) == REPQ_ERR_UNSUPPORTED);
        }
    }
    (void)repq_st_metadata(f, "architecture");
    (void)repq_st_metadata(f, "");
    round_trip(&al, f);
    repq_st_close(f);
    return 0;
}
