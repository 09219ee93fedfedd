/* Internal: CPU feature detection and the kernel level a caller dispatches on. */
#ifndef REPQ_KERNELS_CPU_H
#define REPQ_KERNELS_CPU_H

#include <stdint.h>

/* Feature bits returned by repq_cpu_detect(). REPQ_CPU_SCALAR is always set. */
#define REPQ_CPU_SCALAR 0x1u
#define REPQ_CPU_AVX2 0x2u       /* AVX2 + FMA, with YMM state enabled by the OS */
#define REPQ_CPU_AVX512VNNI 0x4u /* AVX-512 F/BW/VL/VNNI, with ZMM state enabled */
#define REPQ_CPU_AMX_INT8 0x8u   /* AMX tile + int8, and the OS granted XTILEDATA */
#define REPQ_CPU_AVXVNNI 0x10u   /* AVX-VNNI: VEX-encoded 256-bit vpdpbusd (with AVX2) */

/* Ordered by speed; repq_kernels (public) is this plus one, AUTO being 0. A higher level does not always imply a lower one (AVX-512
 * VNNI CPUs may lack AVX-VNNI): ask repq_kernel_level_clamp for what is usable. */
typedef enum repq_kernel_level {
    REPQ_LEVEL_SCALAR = 0,
    REPQ_LEVEL_AVX2 = 1,
    REPQ_LEVEL_AVXVNNI = 2, /* AVX2 kernels, plus a 256-bit vpdpbusd GEMM */
    REPQ_LEVEL_AVX512VNNI = 3,
    REPQ_LEVEL_AMX = 4
} repq_kernel_level;

/* Queries cpuid/xgetbv each call (cheap, but callers should store the result).
 * If the CPU has AMX this also asks the kernel for permission to use tile data
 * (arch_prctl), which is per process and idempotent. Thread-safe. */
uint32_t repq_cpu_detect(void);

/* The best level every feature of which is in `mask`. */
repq_kernel_level repq_kernel_level_best(uint32_t mask);

/* The highest level <= requested whose features are all in mask: how tests,
 * benchmarks and sessions force a lower level. */
repq_kernel_level repq_kernel_level_clamp(uint32_t mask, repq_kernel_level requested);

/* Short lowercase name ("scalar", "avx2", "avxvnni", "avx512vnni", "amx"). */
const char *repq_kernel_level_name(repq_kernel_level level);

#endif
