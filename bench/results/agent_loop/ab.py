# Interleaved A/B of whole Trainer.update blocks in two persistent worker processes, one busy at a
# time: A = the checkout at $BEFORE (agent/ from there), B = $AFTER (default: the current directory).
# Both import fastrnn from B. Usage: BEFORE=DIR python ab.py [core] [task] [pairs] [updates] [--profile]
import subprocess, sys, json, statistics, os
from pathlib import Path
core = sys.argv[1] if len(sys.argv) > 1 else "fast"; task = sys.argv[2] if len(sys.argv) > 2 else "two_step"
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 8; n = int(sys.argv[4]) if len(sys.argv) > 4 else 50
roots = {"A": os.environ["BEFORE"], "B": os.environ.get("AFTER", os.getcwd())}
env = dict(os.environ, OMP_NUM_THREADS="1", AFTER=roots["B"])
procs = {}
for k, r in roots.items():
    procs[k] = subprocess.Popen([sys.executable, str(Path(__file__).with_name("ab_worker.py")), r, core, task, "32"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env, cwd="/tmp")  # not a checkout: each worker puts its own root first
    assert procs[k].stdout.readline().strip() == "ready"
def ask(k, cmd):
    procs[k].stdin.write(cmd + "\n"); procs[k].stdin.flush()
    return json.loads(procs[k].stdout.readline())
rates = {"A": [], "B": []}
for i in range(reps):
    for k in (("A", "B") if i % 2 == 0 else ("B", "A")):
        r = ask(k, f"run {n}"); rates[k].append(r["steps"] / r["seconds"])
ratios = [b / a for a, b in zip(rates["A"], rates["B"])]
print(f"{core} {task}: A(before) median {statistics.median(rates['A']):.0f} max {max(rates['A']):.0f} | "
      f"B(after) median {statistics.median(rates['B']):.0f} max {max(rates['B']):.0f} env steps/s | "
      f"B/A median of ratios {statistics.median(ratios):.3f} (min {min(ratios):.3f} max {max(ratios):.3f})")
if "--profile" in sys.argv:
    profs = {"A": [], "B": []}
    for i in range(4):
        for k in (("A", "B") if i % 2 == 0 else ("B", "A")):
            profs[k].append(ask(k, f"profile {n}"))
    phases = ["core step", "heads + sampling", "env step", "bookkeeping", "learn forward", "learn backward", "optimizer"]
    print(f"{'phase (us per batched step, min of 4)':40s} {'before':>9s} {'after':>9s}")
    for ph in phases + ["other", "total"]:
        vals = {}
        for k in "AB":
            xs = []
            for p in profs[k]:
                if ph == "total": t = p["seconds"]
                elif ph == "other": t = p["seconds"] - sum(p["totals"].values())
                else: t = p["totals"].get(ph, 0.0)
                xs.append(t / p["batched"] * 1e6)
            vals[k] = min(xs)
        print(f"{ph:40s} {vals['A']:9.1f} {vals['B']:9.1f}")
for p in procs.values(): p.stdin.close(); p.wait()
