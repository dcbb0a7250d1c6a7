"""Dose-response of the risky_safe manipulations on trained runs (docs/controls-and-ablations.md): P(risky) on the
next free trial after the targeted outcome, minus control, same 300 test episodes (seed 2018), offsets +1 +2 +4
after a risky loss and -2 -8 -4 after a risky win (the task's names plus temporary ones).

    python scripts/risky_safe_dose.py RUN [RUN ...]
"""
import dataclasses, sys
import numpy as np, torch
sys.path.insert(0, ".")
torch.set_num_threads(1)
import agent.simulations.risky_safe.task as rs
from agent.commands.evaluate import play_frozen
from agent.core.config import TrainConfig
from agent.infra.checkpoint import load_checkpoint
from agent.simulations.risky_safe.analysis import choice_after_outcome
rs.RiskySafe.options = {"manipulation": dataclasses.replace(rs.RiskySafe.options["manipulation"], choices=None)}
doses = {"stim_after_risky_loss_x2": (True, False, 2.0), "stim_after_risky_loss_x4": (True, False, 4.0),
         "inhibit_after_risky_win_x0.5": (True, True, -2.0), "inhibit_after_risky_win_x2": (True, True, -8.0)}
rs.MANIPULATIONS.update(doses)
for run in sys.argv[1:]:
    saved = load_checkpoint(run); cfg = TrainConfig.from_dict(saved["config"])
    out = []
    base = None
    for name in ("control", "stim_after_risky_loss", *doses, "inhibit_after_risky_win"):
        trials, task, _ = play_frozen(cfg, saved["trainer"]["agent"], {"manipulation": name}, episodes=300, seed=2018, device="cpu", core="fast")
        after = choice_after_outcome(trials, 300)
        p = {o: after[o][0].sum() / after[o][1].sum() for o in after}
        if base is None: base = p; continue
        o = "risky_loss" if "loss" in name else "risky_win"
        off = rs.MANIPULATIONS[name][2]
        out.append(f"{off:+.0f}:{p[o]-base[o]:+.3f}")
    print(run.split("/")[-1], cfg.reward_input, " ".join(out))
