/* Which kernel levels a test program checks. meson runs each program that compares
 * levels once per level, naming it in REPQ_TEST_LEVEL: "scalar" checks the scalar
 * references against hand cases and definitions, "avx2", "avxvnni", "avx512vnni" or
 * "amx" compares that level, and only that one, with the scalar reference. A level
 * the CPU (or, for AMX, the OS) lacks is reported to meson as skipped, so a run on a
 * smaller machine says what it did not test. Without REPQ_TEST_LEVEL a program checks
 * the scalar references and every level the CPU has, as one run by hand expects. */
#ifndef REPQ_TESTS_KERNEL_LEVELS_H
#define REPQ_TESTS_KERNEL_LEVELS_H

#include <stdbool.h>

#include "kernels/cpu.h"

/* Reads REPQ_TEST_LEVEL; call first in main. If it names a level this machine cannot
 * run, prints why and exits with 77 (meson's "skipped") before any test runs; an
 * unknown name exits with 1, so a misspelt level fails instead of being skipped. */
void kernel_levels_select(void);

/* Whether this run checks `level`: the selected one, or, with no selection, every level
 * the CPU has. */
bool kernel_level_checked(repq_kernel_level level);

/* Whether this run compares at least one SIMD level with the scalar reference. */
bool kernel_levels_simd_checked(void);

/* For a test that only checks scalar references (hand cases, definitions): skips the
 * running cmocka test unless this run checks the scalar level. */
void skip_unless_scalar_checked(void);

/* For a test that only compares SIMD levels with the scalar reference: skips the
 * running cmocka test when this run checks no SIMD level. */
void skip_unless_simd_checked(void);

#endif
