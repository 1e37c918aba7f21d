"""Research runners around the engine: the experiments, the embedded model's recipe, the timed protocol run,
the throughput probe, the compact export of trained runs and the FSDP check.

Outside the installed package: they import ``pfvg_core`` as a user does (``python -m research.<module>``).
"""
