"""The programs: the `billing` CLI and what only it runs (demo, workload, export).

Each command imports its own package when it runs, so `billing --help` loads none
of them.
"""
