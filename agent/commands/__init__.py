"""The bodies of the train, eval and verify commands (agent/cli.py parses their arguments)."""
