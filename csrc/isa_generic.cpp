// The kernels for the baseline instruction set of the build target (SSE2 on x86-64, NEON on
// aarch64): 128-bit vectors, which every CPU of either architecture has.
#define FASTRNN_ISA generic
#include "lstm_kernels.h"

namespace fastrnn_cpu {
KernelTable kernels_generic() {
  return {"generic", generic::LstmKernels<float, 16, 2>::kernel_set(),
          generic::LstmKernels<double, 16, 2>::kernel_set()};
}
}  // namespace fastrnn_cpu
