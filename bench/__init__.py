"""Benchmarks of the engine (``python -m bench loop|train|cache|compile|steps|threads|f1|train-f1``).

Outside the installed package: they import ``pfvg_core`` as a user does and print ratios measured in one run.
"""
