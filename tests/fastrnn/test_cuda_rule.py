"""The rule that sends a CUDA sequence to cuDNN under backend="auto", checked against the
H200 measurements it was read from (bench/results/gpu.md), without a GPU: the device's
132 SMs are given to the launch planner."""

import pytest
import torch

from fastrnn import dispatch as cuda_rule
from fastrnn.kernels import launch_plan

H200 = torch.device("cuda", 0)


@pytest.fixture
def h200(monkeypatch):
    monkeypatch.setattr(launch_plan, "resident_ctas", lambda device: 132)
    monkeypatch.setattr(launch_plan, "grid_sync_enabled", lambda device: True)


MEASURED = [  # (dtype, H, B, faster on the H200 in both seq_fwd and seq_fwd_bwd)
    (torch.bfloat16, 48, 4096, "triton"),   # 3.1x / 5.3x cuDNN
    (torch.bfloat16, 128, 256, "triton"),   # 1.7x / 2.1x
    (torch.bfloat16, 128, 4096, "cudnn"),   # 0.58x / 1.09x: four passes
    (torch.bfloat16, 256, 256, "triton"),   # 2.1x / 2.3x
    (torch.bfloat16, 256, 4096, "cudnn"),   # 0.27x / 0.43x
    (torch.bfloat16, 512, 16, "triton"),    # 1.9x / 1.7x
    (torch.bfloat16, 512, 256, "cudnn"),    # 0.94x / 0.76x: two passes
    (torch.bfloat16, 1024, 256, "cudnn"),   # 0.34x / 0.27x
    (torch.float32, 48, 1, "cudnn"),        # 0.26x / 0.73x
    (torch.float32, 256, 16, "triton"),     # 1.3x / 1.4x
    (torch.float32, 512, 16, "cudnn"),      # 1.5x / 0.96x
    (torch.float32, 1024, 1, "cudnn"),      # 0.54x / 0.56x
]


@pytest.mark.parametrize("dtype,hidden,batch,faster", MEASURED)
def test_auto_takes_the_backend_measured_faster(h200, dtype, hidden, batch, faster):
    chosen = "cudnn" if cuda_rule.cudnn_is_faster(dtype, hidden, hidden, batch, H200) else "triton"
    assert chosen == faster


def test_more_than_one_pass_always_goes_to_cudnn(h200):
    for hidden in (48, 100, 256, 700):
        single = cuda_rule.sequence_passes(torch.bfloat16, hidden, hidden, 1, H200)
        assert single == 1
        big = 10 ** 6
        assert cuda_rule.sequence_passes(torch.bfloat16, hidden, hidden, big, H200) > 1
        assert cuda_rule.cudnn_is_faster(torch.bfloat16, hidden, hidden, big, H200)
