#include "data_file.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

void data_file_read(const char *path, void *dst, size_t size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    const size_t got = fread(dst, 1, size, f);
    const int extra = fgetc(f);
    fclose(f);
    if (got != size || extra != EOF)
        fail_msg("%s is not %zu bytes", path, size);
}
