"""Tools around the engine: command line, benchmarks, the experiments and the embedded-model recipe.

Nothing else in ``pfvg_core`` imports this subpackage (the engine never depends on its tools).
"""
