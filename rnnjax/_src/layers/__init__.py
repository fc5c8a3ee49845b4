"""Layers: a cell run over a sequence with dropout and recurrent dropout
(:func:`rnnjax.layer`), and their composition (:func:`rnnjax.bidirectional`,
:func:`rnnjax.stack`); pairs and stacks of cuDNN LSTM layers run as one cuDNN call
(``cudnn_fused``).

May import: ``core``, ``cells`` (generic parts), ``scan``.
"""
