"""Weight converters and apply functions for PyTorch, Keras 3 and Flax models
(``rnnjax.interop``). torch and keras are imported inside the functions that need them.

May import everything below it; not ``modules`` or ``training``.
"""
