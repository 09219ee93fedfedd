/* CPU feature detection: cpuid says what the core implements, XCR0 says which
 * register states the OS saves on context switch; both must agree before a
 * level is reported. */
/* syscall() is a BSD/GNU extension outside plain POSIX. */
#define _DEFAULT_SOURCE
#include "kernels/cpu.h"

#include <stdbool.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    /* xgetbv is encoded by hand so no -mxsave flag is needed. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static bool amx_permission_granted(void)
{
#if defined(__linux__) && defined(SYS_arch_prctl)
    /* Linux keeps AMX tile data disabled until a process asks for it. */
    const long arch_req_xcomp_perm = 0x1023, arch_get_xcomp_perm = 0x1022;
    const int xfeature_xtiledata = 18;
    if (syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) != 0)
        return false;
    unsigned long bits = 0;
    if (syscall(SYS_arch_prctl, arch_get_xcomp_perm, &bits) != 0)
        return false;
    return (bits & (1ul << xfeature_xtiledata)) != 0;
#else
    return false;
#endif
}

uint32_t repq_cpu_detect(void)
{
    uint32_t mask = REPQ_CPU_SCALAR;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return mask;
    const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx)
        return mask;
    const uint64_t xcr0 = read_xcr0();
    const bool ymm_state = (xcr0 & 0x6) == 0x6;          /* SSE + AVX */
    const bool zmm_state = (xcr0 & 0xe6) == 0xe6;        /* + opmask, ZMM_Hi256, Hi16_ZMM */
    const bool tile_state = (xcr0 & 0x60000) == 0x60000; /* XTILECFG + XTILEDATA */
    if (__get_cpuid_max(0, NULL) < 7)
        return mask;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = (b >> 5) & 1;
    const bool avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    const bool avx512vnni = (c >> 11) & 1;
    const bool amx_tile = (d >> 24) & 1, amx_int8 = (d >> 25) & 1;
    if (!ymm_state || !avx2 || !fma)
        return mask;
    mask |= REPQ_CPU_AVX2;
    unsigned a1, b1, c1, d1;
    __cpuid_count(7, 1, a1, b1, c1, d1);
    if ((a1 >> 4) & 1)
        mask |= REPQ_CPU_AVXVNNI;
    if (zmm_state && avx512f && avx512bw && avx512vl && avx512vnni) {
        mask |= REPQ_CPU_AVX512VNNI;
        if (amx_tile && amx_int8 && tile_state && amx_permission_granted())
            mask |= REPQ_CPU_AMX_INT8;
    }
    return mask;
}
#else
uint32_t repq_cpu_detect(void)
{
    return REPQ_CPU_SCALAR;
}
#endif

/* The features a level's kernels use. */
static uint32_t level_needs(repq_kernel_level level)
{
    switch (level) {
    case REPQ_LEVEL_SCALAR: return REPQ_CPU_SCALAR;
    case REPQ_LEVEL_AVX2: return REPQ_CPU_AVX2;
    case REPQ_LEVEL_AVXVNNI: return REPQ_CPU_AVX2 | REPQ_CPU_AVXVNNI;
    case REPQ_LEVEL_AVX512VNNI: return REPQ_CPU_AVX2 | REPQ_CPU_AVX512VNNI;
    case REPQ_LEVEL_AMX: return REPQ_CPU_AVX2 | REPQ_CPU_AVX512VNNI | REPQ_CPU_AMX_INT8;
    }
    return ~0u;
}

repq_kernel_level repq_kernel_level_clamp(uint32_t mask, repq_kernel_level requested)
{
    /* Not simply min(requested, best): AVX-VNNI is missing from many AVX-512 VNNI
     * CPUs (Ice Lake, Zen 4), so a lower level is not always usable. */
    for (int level = (int)requested; level > REPQ_LEVEL_SCALAR; level--)
        if ((mask & level_needs((repq_kernel_level)level)) == level_needs((repq_kernel_level)level))
            return (repq_kernel_level)level;
    return REPQ_LEVEL_SCALAR;
}

repq_kernel_level repq_kernel_level_best(uint32_t mask)
{
    return repq_kernel_level_clamp(mask, REPQ_LEVEL_AMX);
}

const char *repq_kernel_level_name(repq_kernel_level level)
{
    switch (level) {
    case REPQ_LEVEL_SCALAR: return "scalar";
    case REPQ_LEVEL_AVX2: return "avx2";
    case REPQ_LEVEL_AVXVNNI: return "avxvnni";
    case REPQ_LEVEL_AVX512VNNI: return "avx512vnni";
    case REPQ_LEVEL_AMX: return "amx";
    }
    return "unknown";
}
