"""Harness for tests and benchmarks (not shipped): start the programs as processes,
append positioned logs, wait for outputs. Imports the product, never tests/.
"""
