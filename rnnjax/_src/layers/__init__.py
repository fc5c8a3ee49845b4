"""Layers: a cell run over a sequence with dropout and recurrent dropout
(:func:`rnnjax.layer`), and their composition (:func:`rnnjax.bidirectional`,
:func:`rnnjax.stack`).

May import: ``core``, ``cells`` (generic parts), ``scan``.
"""
