/* Preloaded (LD_PRELOAD) into ONNX Runtime's process by `ort.sh` under LIBREPQ_ORT_NO_AMX=1,
 * so that a CPU with AMX can measure ONNX Runtime as on one without it. Linux grants AMX's
 * tile state only to a process that asks for it (arch_prctl ARCH_REQ_XCOMP_PERM, through
 * libc's syscall()); ONNX Runtime's MLAS asks once and, refused, keeps to its AVX-512 VNNI
 * kernels. Every other system call passes through unchanged. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/syscall.h>

#define ARCH_REQ_XCOMP_PERM 0x1023

long syscall(long number, ...)
{
    /* x86-64 passes at most six arguments in registers; reading six is safe whatever the call. */
    va_list ap;
    long arg[6];
    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        arg[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_arch_prctl && arg[0] == ARCH_REQ_XCOMP_PERM) {
        fputs("no_amx: refused AMX tile state to this process\n", stderr);
        errno = EPERM;
        return -1;
    }
    long (*next)(long, ...) = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    return next(number, arg[0], arg[1], arg[2], arg[3], arg[4], arg[5]);
}
