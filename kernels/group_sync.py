"""The barrier that lets one persistent launch split a time step over several CTAs.

A sequence kernel runs as groups of ``n_split`` CTAs (program_id(1) is the member index);
each member computes a slice of the hidden units, and step t+1 needs all of step t's slices.
Members meet at a counter in global memory, one int32 per group, each on its own 128-byte
line (COUNTER_STRIDE apart), so groups spinning on their counters never share a cache line
and the atomics of one group do not serialise another's: every member adds 1 with
release semantics once its stores are done, then waits until the counter reaches
``phase * n_split``. The counter only grows, so the n-th barrier of a launch waits for
``n * n_split`` arrivals and needs no reset.

This is the cooperative-groups grid sync pattern (CTA barrier, one thread does the
gpu-scope release/acquire, CTA barrier): the CTA barrier orders every thread's stores before
thread 0's release, and the closing CTA barrier orders thread 0's acquire before every
thread's loads. Data written by other CTAs is read with cache_modifier=".cg" (L2, not the
non-coherent L1) as well.

It is only safe when every CTA of a group is resident at once; the launchers keep the whole
grid within one CTA per SM (see kernels/README.md). Members == 1 never touch the counter, so
the Triton interpreter, which runs programs one after another, uses that path.
"""

import triton
import triton.language as tl


COUNTER_STRIDE = tl.constexpr(32)  # int32 elements: 128 bytes, one L2 line per group's counter


@triton.jit
def group_barrier(counter_ptr, phase, n_split):
    """Wait until all n_split members of this group arrived at barrier number `phase` (1-based)."""
    tl.debug_barrier()
    if n_split > 1:
        tl.atomic_add(counter_ptr, 1, sem="release", scope="gpu")
        while tl.atomic_add(counter_ptr, 0, sem="acquire", scope="gpu") < phase * n_split:
            pass
        tl.debug_barrier()
