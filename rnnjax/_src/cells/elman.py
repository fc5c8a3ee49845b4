"""The vanilla (Elman) RNN: Keras's ``SimpleRNN``, PyTorch's ``nn.RNN``."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.cells.initializers import init_weights
from rnnjax._src.cells.kit import (
    cell_factory,
    gated_cell,
    identity,
    params_check,
    recurrent_matmul,
    zeros_carry,
)
from rnnjax._src.core.contract import Cell

Array = jax.Array


class SimpleRNNParams(NamedTuple):
    """Parameters of :func:`simple_rnn`.

    Attributes:
      kernel: ``[input_size, hidden]``, the input weights ``W``.
      recurrent_kernel: ``[hidden, hidden]``, the recurrent weights ``U``.
      bias: ``[hidden]``, the bias ``b`` of ``h' = activation(x W + h U + b)``.
    """

    kernel: Array
    recurrent_kernel: Array
    bias: Array


@cell_factory
def simple_rnn(
    hidden_size: int,
    activation: Callable[[Array], Array] = jnp.tanh,
    *,
    initializer: str = "keras",
) -> Cell:
    r"""The vanilla (Elman) RNN cell, Keras's ``SimpleRNN`` and PyTorch's ``nn.RNN``.

    .. math:: h_t = \mathrm{activation}(x_t W + h_{t-1} U + b), \qquad y_t = h_t

    Args:
      hidden_size: ``H``, the size of ``h``.
      activation: elementwise nonlinearity (``jnp.tanh``; ``jax.nn.relu`` for PyTorch's
        ``nonlinearity="relu"``).
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"``; see docs/guides/cells.md.

    Returns:
      A :class:`Cell` whose params are :class:`SimpleRNNParams`. Equal settings return the
      same object, so a cell can be a static argument of ``jax.jit``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.simple_rnn(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, y = cell.step(params, cell.initial_carry(params, 2), jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> SimpleRNNParams:
        w = init_weights(initializer, key, input_size, hidden_size, 1, dtype)
        bias = w.bias + w.recurrent_bias if initializer == "torch" else w.bias
        return SimpleRNNParams(w.kernel, w.recurrent_kernel, bias)

    def gates(params: SimpleRNNParams, h: Array, z: Array) -> tuple[Array, Array]:
        h_new = activation(z)
        return h_new, h_new

    input_size = params_check(
        f"simple_rnn({hidden_size})", SimpleRNNParams, hidden_size, hidden_size
    )
    return gated_cell(init, zeros_carry, input_size, identity, recurrent_matmul, jnp.add, gates)
