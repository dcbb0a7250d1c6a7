"""fastrnn is an LSTM library: outside its opt-in RL piece (fastrnn/rl/, csrc/rl_*.cpp)
nothing in its modules, backends or kernels speaks of actions, heads, rollouts or sampling."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RL_WORDS = re.compile(r"\b(actions?|rollouts?|gumbel|argmax|heads?)\b", re.IGNORECASE)


def _library_files():
    for folder, pattern in (("fastrnn", "*.py"), ("kernels", "*.py"), ("csrc", "*.[ch]*")):
        for path in sorted((ROOT / folder).rglob(pattern)):
            if "rl" in path.relative_to(ROOT / folder).parts[:-1] or path.name.startswith("rl_"):
                continue
            yield path


def test_the_lstm_library_names_no_rl_concept_outside_fastrnn_rl():
    """Every library file outside the RL piece is free of RL words (kernels' argparse flags
    such as action="store_true" are an API, not a concept, and are skipped)."""
    found = []
    for path in _library_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if RL_WORDS.search(line.replace('action="store_true"', "").replace('action="append"', "")):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "RL words in the LSTM library:\n" + "\n".join(found)


def test_the_rl_piece_is_found_by_the_boundary_scan():
    """The scan would see an RL word: the RL piece itself has them (so the regex is live)."""
    assert any(RL_WORDS.search(line) for line in (ROOT / "fastrnn" / "rl" / "step.py").read_text().splitlines())
