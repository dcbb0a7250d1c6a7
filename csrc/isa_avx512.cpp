// The kernels compiled for AVX-512 (x86-64 only; chosen at run time when the CPU has it).
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma,bmi2")
#include <immintrin.h>
#define FASTRNN_HAVE_AVX512 1
#define FASTRNN_ISA avx512
#include "lstm_kernels.h"

namespace fastrnn_cpu {
// 32 vector registers: 6 rows x 4 gate vectors of accumulators + 4 weight vectors + 1.
KernelTable kernels_avx512() {
  return {"avx512", avx512::LstmKernels<float, 64, 6>::kernel_set(),
          avx512::LstmKernels<double, 64, 6>::kernel_set()};
}
}  // namespace fastrnn_cpu
#endif
