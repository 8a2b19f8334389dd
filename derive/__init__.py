"""pdlt.derive: stage 1 of the pipeline (sympy only)."""
