// The kernels compiled for AVX2 + FMA (x86-64 only; chosen at run time when the CPU has it).
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,bmi2")
#include <immintrin.h>
#define FASTRNN_HAVE_AVX2 1
#define FASTRNN_ISA avx2
#include "lstm_kernels.h"

namespace fastrnn_cpu {
// 16 vector registers. float: 3 rows x 4 gate vectors of accumulators, the rest for the
// weight vectors (the compiler reads some as FMA memory operands) and the broadcast row value;
// 2 rows leave only 8 FMAs in flight per k step, which the FMA latency x 2 ports needs all of:
// measured (2026-11-28, one thread, T=50 forward, H 128-512, B 64-256) 3 rows ran 10-25% faster
// than 2, and 4 rows slower than 3. double keeps 2 rows (not measured with 3).
KernelTable kernels_avx2() {
  return {"avx2", avx2::LstmKernels<float, 32, 3>::kernel_set(),
          avx2::LstmKernels<double, 32, 2>::kernel_set()};
}
}  // namespace fastrnn_cpu
#endif
