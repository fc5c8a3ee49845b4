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
from rnnjax._src.cells import simple_rnn as simple_rnn
from rnnjax._src.driver import rnn as rnn

__version__ = "0.1.0"

__all__ = (
    "Cell",
    "GRUParams",
    "LSTMParams",
    "LSTMState",
    "SimpleRNNParams",
    "gru",
    "lstm",
    "rnn",
    "simple_rnn",
)
