"""`train --tensorboard`: the lines of metrics.jsonl, and the config as text, also written as
TensorBoard event files in RUN_DIR/tensorboard (view: tensorboard --logdir RUN_DIR/tensorboard).

A resumed run starts a writer with purge_step at the checkpoint's update, so TensorBoard drops
what the killed run logged after its last checkpoint, as metrics.jsonl is truncated there."""

from __future__ import annotations

import json
from pathlib import Path

TENSORBOARD_DIR = "tensorboard"


class TensorBoardLog:
    def __init__(self, run_dir: Path, config: dict, resumed_at_update: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # tensorboard is in requirements.txt; a leaner install may lack it
            raise ValueError(f"--tensorboard: needs the tensorboard package ({error}); pip install tensorboard") \
                from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR),
                                    purge_step=resumed_at_update + 1 if resumed_at_update else None)
        if not resumed_at_update:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)

    def write(self, line: dict) -> None:
        """One metrics.jsonl line: every number but the update counter, at step = update."""
        for name, value in line.items():
            if name != "update":
                self.writer.add_scalar(f"train/{name}", value, line["update"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
