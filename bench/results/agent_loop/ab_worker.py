# ab.py's worker: python ab_worker.py ROOT CORE TASK NUM_ENVS; then lines "run N" / "profile N" on stdin.
import os, sys, json, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, os.environ.get("AFTER", os.getcwd()))
import fastrnn  # from $AFTER, shared by both sides
root, core, task, envs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, root)
import agent.core.trainer
from agent.core.config import resolve_config
from agent.core.trainer import Trainer
from agent.infra.timing import PhaseTimer
assert agent.core.trainer.__file__.startswith(root), agent.core.trainer.__file__
tr = Trainer(resolve_config({"task": task, "core": core, "num_envs": envs}))
for _ in range(10): tr.update()
print("ready", flush=True)
for line in sys.stdin:
    cmd, n = line.split(); n = int(n)
    if cmd == "profile":
        tr.timer = PhaseTimer(enabled=True)
    t = time.perf_counter()
    for _ in range(n): tr.update()
    dt = time.perf_counter() - t
    out = {"seconds": dt, "steps": n * tr.config.unroll * tr.config.num_envs, "batched": n * tr.config.unroll}
    if cmd == "profile":
        out["totals"] = dict(tr.timer.totals); tr.timer = PhaseTimer(enabled=False)
    print(json.dumps(out), flush=True)
