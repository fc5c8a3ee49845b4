"""The drivers that run a cell over a sequence: :func:`rnnjax.rnn` (masking, reversal,
resets, the fused backward pass, parallel and Newton evaluation), :func:`rnnjax.newton_rnn`,
and truncated backpropagation through time in chunks.

May import: ``core``, ``linear``, ``newton``, and of ``cells`` only what is generic.
"""
