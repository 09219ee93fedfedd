/* The level selection of tests/kernel_levels.h. */
#include "kernel_levels.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Set once by kernel_levels_select, before any test runs, then only read. */
static bool selected;
static repq_kernel_level selected_level;
static uint32_t cpu_mask;

/* What a level needs that `mask` may lack, for the skip message. */
static const char *missing_features(repq_kernel_level level, uint32_t mask)
{
    if (!(mask & REPQ_CPU_AVX2))
        return "AVX2 and FMA with YMM state enabled by the OS";
    if (level == REPQ_LEVEL_AVXVNNI)
        return "AVX-VNNI (VEX-encoded vpdpbusd)";
    if (!(mask & REPQ_CPU_AVX512VNNI))
        return "AVX-512 F/BW/VL/VNNI with ZMM state enabled by the OS";
    return "AMX-INT8 with tile data granted by the OS";
}

void kernel_levels_select(void)
{
    cpu_mask = repq_cpu_detect();
    const char *name = getenv("REPQ_TEST_LEVEL");
    if (!name || !*name)
        return;
    for (int l = REPQ_LEVEL_SCALAR; l <= REPQ_LEVEL_AMX; l++)
        if (strcmp(name, repq_kernel_level_name((repq_kernel_level)l)) == 0) {
            selected = true;
            selected_level = (repq_kernel_level)l;
        }
    if (!selected) {
        fprintf(stderr, "REPQ_TEST_LEVEL=%s is not a kernel level (scalar, avx2, avxvnni, avx512vnni, amx)\n", name);
        exit(1);
    }
    if (repq_kernel_level_clamp(cpu_mask, selected_level) != selected_level) {
        /* The last line of stdout is the reason scripts/test.sh prints for a skipped test. */
        printf("not tested: this CPU lacks %s\n", missing_features(selected_level, cpu_mask));
        fflush(stdout);
        exit(77);
    }
}

bool kernel_level_checked(repq_kernel_level level)
{
    if (selected)
        return level == selected_level;
    return repq_kernel_level_clamp(cpu_mask, level) == level;
}

bool kernel_levels_simd_checked(void)
{
    for (int l = REPQ_LEVEL_AVX2; l <= REPQ_LEVEL_AMX; l++)
        if (kernel_level_checked((repq_kernel_level)l))
            return true;
    return false;
}

void skip_unless_scalar_checked(void)
{
    if (!kernel_level_checked(REPQ_LEVEL_SCALAR))
        skip();
}

void skip_unless_simd_checked(void)
{
    if (!kernel_levels_simd_checked())
        skip();
}
