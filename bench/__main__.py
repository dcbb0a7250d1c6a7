"""`python -m bench SUITE [options]`: each suite is a module of this package with main(argv)."""

import importlib
import sys

SUITES = {
    "cpu": ("bench.cpu", "fastrnn cpp vs torch.nn.LSTM/LSTMCell (oneDNN) vs the reference, on CPU"),
    "gpu": ("bench.gpu", "fastrnn triton vs cuDNN, LSTMCell loops, torch.compile and the reference"),
    "agent": ("bench.agent", "meta-RL training throughput, fast core vs reference core"),
    "scaling": ("bench.scaling", "meta-RL training throughput by number of envs and hidden size, per core"),
    "rollout": ("bench.rollout", "one RL rollout step: fastrnn.rl rollout_plan vs rollout_step vs composed vs torch.nn.LSTM, CPU"),
    "ranks": ("bench.ranks", "data-parallel training throughput, 1 rank vs N ranks (torchrun), scaling efficiency"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SUITES:
        lines = [f"  {name:6s} {text}" for name, (_, text) in SUITES.items()]
        print("usage: python -m bench SUITE [options]\n\nsuites:\n" + "\n".join(lines), file=sys.stderr)
        return 2
    module = importlib.import_module(SUITES[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
