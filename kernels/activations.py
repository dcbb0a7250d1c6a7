"""Gate nonlinearities shared by every kernel, in float32.

tanh is written through the sigmoid so the kernels use only tl.exp: libdevice's tanh has no
interpreter (TRITON_INTERPRET=1) counterpart on every Triton version, and 2*sigmoid(2x) - 1
is within a few float32 ulps of tanh (absolute), which is what an LSTM state needs.
"""

import triton
import triton.language as tl


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    return 2.0 / (1.0 + tl.exp(-2.0 * x)) - 1.0
