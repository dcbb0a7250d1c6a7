"""The meta-RL agent of Wang et al. 2018 on fastrnn cores (run as python -m agent)."""
