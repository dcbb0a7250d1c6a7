"""Runtime flags (0/1 kernel arguments) folded into load masks.

The flags stay runtime arguments (do_not_specialize), so one compiled kernel serves every
combination. Comparing the scalar first, `mask & (flag != 0)`, is what Triton 3.9's
interpreter rejects: it types the scalar comparison as int32, and the mask becomes int32
("mask has unsupported dtype"). Comparing after broadcasting gives an int1 mask on every
version; compiled, the splat folds away.
"""

import triton
import triton.language as tl


@triton.jit
def and_flag(mask, flag):
    """mask where flag != 0, else all False."""
    return mask & (tl.full(mask.shape, flag, tl.int32) != 0)
