"""Triton kernels of fastrnn's GPU backend (installed as fastrnn.kernels).

One job per file, each kernel beside its launcher (the Triton tutorials' layout):

- step.py              fused step: h W_hh^T + input projection, gates, state update, reset
- projection.py        the step's output projection (proj_size)
- sequence_forward.py  persistent forward over all T steps
- sequence_backward.py persistent reverse recurrence: dgates, dh0, dc0 (and dy for proj)
- group_sync.py        the barrier that lets a group of CTAs share a time step
- activations.py       sigmoid / tanh in float32
- flags.py             runtime 0/1 flags folded into load masks
- config.py            the tile-size rule, keyed on H, R and dtype (pure Python)
- launch_plan.py       grid shape per batch size, TF32 policy

README.md explains the design; importing this package imports triton.
"""

from . import interpreter_compat

interpreter_compat.apply()
