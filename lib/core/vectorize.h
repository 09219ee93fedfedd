/* Internal: VECTORIZED marks a function whose loops gcc should vectorize and clone for
 * AVX-512, AVX2 and the baseline, picked at load time (glibc ifunc). Such functions
 * must give the same result in every clone: no reassociation (no -ffast-math), FMA
 * contraction stays off in ISO C mode, reductions over explicit lanes. Elsewhere it
 * expands to nothing. */
#ifndef REPQ_CORE_VECTORIZE_H
#define REPQ_CORE_VECTORIZE_H

/* ThreadSanitizer instruments the ifunc resolvers, which run before its runtime is
 * initialized: no clones in TSan builds. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) && \
    defined(__has_attribute) && !defined(__SANITIZE_THREAD__)
#if __has_attribute(target_clones) && __has_attribute(optimize)
#define VECTORIZED                                                                         \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"),            \
                   optimize("tree-vectorize", "vect-cost-model=dynamic")))
#endif
#endif
#ifndef VECTORIZED
#define VECTORIZED
#endif

/* isfinite(x) for VECTORIZED loops: gcc tests isfinite on the float's bits, which keeps
 * it from vectorizing the loop; x - x is 0 exactly when x is finite (NaN otherwise). */
static inline int repq_finite_lane(float x)
{
    return x - x == 0.0f;
}

#endif
