// The kernels compiled for AVX2 + FMA (x86-64 only; chosen at run time when the CPU has it).
#if defined(__x86_64__)
#pragma GCC target("avx2,fma,bmi2")
#include <immintrin.h>
#define FASTRNN_HAVE_AVX2 1
#define FASTRNN_ISA avx2
#include "lstm_kernels.h"

namespace fastrnn_cpu {
// 16 vector registers: 2 rows x 4 gate vectors of accumulators + 4 weight vectors + 1.
KernelTable kernels_avx2() {
  return {"avx2", avx2::LstmKernels<float, 32, 2>::kernel_set(),
          avx2::LstmKernels<double, 32, 2>::kernel_set()};
}
}  // namespace fastrnn_cpu
#endif
