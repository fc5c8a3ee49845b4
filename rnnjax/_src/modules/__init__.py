"""The Flax modules (``rnnjax.nnx``, ``rnnjax.linen``): thin shells over any cell, and the
named kinds of the registry, built on one shared core (``common``).

May import everything below it; not ``interop`` or ``training``.
"""
