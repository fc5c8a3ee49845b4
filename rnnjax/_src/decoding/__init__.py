"""Decoding one step at a time (greedy, sampled, beam search: :func:`rnnjax.decode`) and
attention as a cell wrapper (:func:`rnnjax.attention`).

May import: ``core``, ``cells`` (generic parts), ``scan``, ``layers``.
"""
