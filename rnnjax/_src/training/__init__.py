"""Training utilities (``rnnjax.training``): the jitted train step, the fit loop with
progress, checkpoints and resumption, data parallelism, bucketing and padding.

May import everything below it; not ``modules`` or ``interop``.
"""
