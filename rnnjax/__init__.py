"""rnnjax: recurrent neural networks (vanilla RNN, LSTM, GRU) as pure JAX functions.

>>> import jax, jax.numpy as jnp, rnnjax
>>> cell = rnnjax.gru(16)
>>> params = cell.init(jax.random.key(0), input_size=4)
>>> carry, ys = rnnjax.rnn(cell, params, jnp.zeros((8, 10, 4)))
>>> ys.shape
(8, 10, 16)
"""

from rnnjax._src.cells import Cell as Cell
from rnnjax._src.cells import GRUParams as GRUParams
from rnnjax._src.cells import LSTMParams as LSTMParams
from rnnjax._src.cells import LSTMState as LSTMState
from rnnjax._src.cells import SimpleRNNParams as SimpleRNNParams
from rnnjax._src.cells import gru as gru
from rnnjax._src.cells import lstm as lstm
from rnnjax._src.cells import matmul as matmul
from rnnjax._src.cells import simple_rnn as simple_rnn
from rnnjax._src.driver import rnn as rnn
from rnnjax._src.layers import BidirectionalParams as BidirectionalParams
from rnnjax._src.layers import Layer as Layer
from rnnjax._src.layers import bidirectional as bidirectional
from rnnjax._src.layers import layer as layer
from rnnjax._src.layers import rnn_with_resets as rnn_with_resets
from rnnjax._src.layers import stack as stack
from rnnjax._src.layers import tbptt as tbptt

__version__ = "0.1.0"

__all__ = (
    "BidirectionalParams",
    "Cell",
    "GRUParams",
    "LSTMParams",
    "LSTMState",
    "Layer",
    "SimpleRNNParams",
    "bidirectional",
    "gru",
    "layer",
    "lstm",
    "matmul",
    "rnn",
    "rnn_with_resets",
    "simple_rnn",
    "stack",
    "tbptt",
)
