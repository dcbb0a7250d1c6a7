"""The command-line spelling of a setting, shared by the training settings (core/config.py), the
tasks' own options (simulations/base.py) and the command line (cli.py)."""


def flag_name(name: str) -> str:
    """The command-line flag of a setting: learning_rate -> --learning-rate."""
    return "--" + name.replace("_", "-")
