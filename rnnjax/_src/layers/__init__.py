"""Layers: a cell run over a sequence with dropout and recurrent dropout
(:func:`rnnjax.layer`), and their composition (:func:`rnnjax.bidirectional`,
:func:`rnnjax.stack`); a bidirectional pair of cuDNN LSTM layers runs as one cuDNN call
(``cudnn_pair``).

May import: ``core``, ``cells`` (generic parts), ``scan``.
"""
