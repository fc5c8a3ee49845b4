"""Diagonal recurrent cells: IndRNN, ParaGRU and ParaLSTM.

Each recurrent weight is a vector (one number per hidden unit and gate) where the vanilla RNN,
the GRU and the LSTM have a matrix, so unit ``u`` of the new state reads unit ``u`` of the old
one only. Two things follow:

* A step costs one input matmul (hoistable over all steps) and elementwise work. The cells are
  built like :func:`rnnjax.gru`, from ``project``, an elementwise ``recurrent`` and ``gates``,
  so :func:`rnnjax.rnn` gives them the same hand-scheduled backward pass (the weights'
  gradients, the recurrent vectors' included, outside the reverse scan).
* The Jacobian of the new carry with respect to the old one is diagonal over the units (``k x
  k`` blocks for a carry of ``k`` arrays; 2 x 2 for ParaLSTM's ``(h, c)``): the
  :class:`~rnnjax.DiagonalJacobian` capability, with which Newton's method solves the whole
  sequence as linear recurrences. The cells are built with :func:`rnnjax.diagonal_cell`,
  which derives it from the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.cells.gru import gru_combine, gru_gates
from rnnjax._src.cells.initializers import input_weights
from rnnjax._src.cells.kit import batch_tuple, cell_factory, diagonal_cell, identity
from rnnjax._src.cells.lstm import LSTMState
from rnnjax._src.core.contract import BatchShape, Carry, Cell

Array = jax.Array


class DiagonalParams(NamedTuple):
    """Parameters of :func:`indrnn`, :func:`para_gru` and :func:`para_lstm`.

    Attributes:
      kernel: ``[input_size, gates * hidden]``, gates side by side in the order each cell's
        docstring gives.
      recurrent_weight: ``[gates * hidden]``, one recurrent weight per unit and gate (the
        diagonal of the recurrent matrix the dense cell would have).
      bias: ``[gates * hidden]``.
    """

    kernel: Array
    recurrent_weight: Array
    bias: Array


def _diagonal_cell(
    name: str,
    hidden: int,
    gates: int,
    init: Callable[..., DiagonalParams],
    initial_carry: Callable[..., Carry],
    output: Callable[[Carry], Array],
    combine: Any,
    gates_fn: Any,
) -> Cell:
    """The cell whose step is ``gates(p, carry, combine(x W + b, tile(h) * recurrent_weight))``,
    with the projection, gate-split and diagonal-Jacobian capabilities."""
    width = gates * hidden

    def recurrent(params: DiagonalParams, h: Array) -> Array:
        tiled = jnp.broadcast_to(h[..., None, :], (*h.shape[:-1], gates, hidden))
        weight = params.recurrent_weight.reshape((1,) * (h.ndim - 1) + (width,))
        return tiled.reshape(*h.shape[:-1], width) * weight

    def input_size(params: DiagonalParams) -> int:
        shapes = {f: tuple(getattr(getattr(params, f, None), "shape", ())) for f in _FIELDS}
        fits = isinstance(params, tuple) and len(params) == 3
        kernel = shapes["kernel"]
        fits = fits and len(kernel) == 2 and kernel[1] == width
        if not (fits and shapes["recurrent_weight"] == (width,) and shapes["bias"] == (width,)):
            got = ", ".join(f"{f}={s}" for f, s in shapes.items())
            raise ValueError(
                f"rnnjax.{name}({hidden}): params must be DiagonalParams(kernel=[input_size,"
                f" {width}], recurrent_weight=({width},), bias=({width},)); got"
                f" {type(params).__name__} with {got}"
            )
        return int(kernel[0])

    return diagonal_cell(init, initial_carry, input_size, output, recurrent, combine, gates_fn)


_FIELDS = DiagonalParams._fields


def _init_fn(
    hidden: int, gates: int, initializer: str, low: float, forget_bias: bool = False
) -> Callable[..., DiagonalParams]:
    """``init``: the input kernel and bias as the dense cell's ``initializer`` draws them, the
    recurrent vector ``U(low, 1)``; ``forget_bias``: the first gate's bias starts at 1
    (Keras's forget-gate bias, under ``"keras"``)."""

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> DiagonalParams:
        k_weights, k_recurrent = jax.random.split(key)
        kernel, bias = input_weights(initializer, k_weights, input_size, hidden, gates, dtype)
        recurrent = jax.random.uniform(k_recurrent, (gates * hidden,), jnp.float32, low, 1.0)
        if forget_bias and initializer == "keras":
            bias = bias.at[:hidden].set(1)
        return DiagonalParams(kernel, recurrent.astype(dtype), bias)

    return init


def _zeros_fn(hidden: int) -> Callable[..., Array]:
    def initial_carry(
        params: DiagonalParams, batch_shape: BatchShape, dtype: DTypeLike | None = None
    ) -> Array:
        return jnp.zeros((*batch_tuple(batch_shape), hidden), dtype or params.kernel.dtype)

    return initial_carry


@cell_factory
def indrnn(
    hidden_size: int,
    activation: Callable[[Array], Array] = jax.nn.relu,
    *,
    initializer: str = "keras",
) -> Cell:
    r"""IndRNN, the independently recurrent network (Li et al., "Independently Recurrent
    Neural Network (IndRNN)", CVPR 2018).

    .. math:: h_t = \mathrm{activation}(x_t W + u \odot h_{t-1} + b), \qquad y_t = h_t

    with ``u`` a vector: each unit sees only its own past, so stacked layers (not the
    recurrence) mix the units, and ``|u|`` bounds how fast a unit forgets (the paper
    constrains it to keep ``|u|^T`` away from 0 and infinity).

    Args:
      hidden_size: ``H``, the number of units (the size of ``h`` and of each output).
      activation: elementwise nonlinearity, ReLU as in the paper.
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"`` for ``kernel`` and
        ``bias``; ``recurrent_weight`` starts ``U(0, 1)`` under all three.

    Returns:
      A :class:`~rnnjax.Cell` with params :class:`~rnnjax.DiagonalParams` (``kernel [I, H]``,
      ``recurrent_weight [H]``), carry ``h`` and the ``projection``, ``gate_split`` and
      ``diagonal_jacobian`` capabilities.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.indrnn(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params.recurrent_weight.shape
      (8,)
      >>> (carry, y), jacobian = cell.diagonal_jacobian.step(
      ...     params, cell.initial_carry(params, 2), jnp.ones((2, 3)))
      >>> jacobian.shape                  # [batch, H, 1, 1]: d h'_u / d h_u
      (2, 8, 1, 1)
    """

    def gates(params: DiagonalParams, h: Array, z: Array) -> tuple[Array, Array]:
        h_new = activation(z)
        return h_new, h_new

    init = _init_fn(hidden_size, 1, initializer, low=0.0)
    return _diagonal_cell(
        "indrnn", hidden_size, 1, init, _zeros_fn(hidden_size), identity, jnp.add, gates
    )


@cell_factory
def para_gru(hidden_size: int, *, initializer: str = "keras") -> Cell:
    r"""ParaGRU (Danieli et al., "ParaRNN: Unlocking Parallel Training of Nonlinear RNNs for
    Large Language Models", ICLR 2026): the GRU with diagonal recurrent weights.

    Gates stacked r, z, n as in :func:`rnnjax.gru`; ``a`` is ``recurrent_weight``:

    .. math::
        r = \sigma(x W_r + b_r + a_r \odot h_{t-1}), \quad
        z = \sigma(x W_z + b_z + a_z \odot h_{t-1}), \\
        n = \tanh(x W_n + b_n + r \odot a_n \odot h_{t-1}), \qquad
        h_t = (1 - z) \odot n + z \odot h_{t-1}, \qquad y_t = h_t

    With a diagonal recurrent weight and no recurrent bias, the reset gate acting before or
    after the recurrent product is the same thing, so there is one form. ParaRNN writes the
    update gate the other way round (its ``z`` is ``1 - z`` here); this is the convention of
    :func:`rnnjax.gru` (PyTorch, Keras), and the cell equals ``gru`` with
    ``recurrent_kernel`` the diagonal blocks and a zero ``recurrent_bias``.

    Args:
      hidden_size: ``H``, the number of units (the size of ``h`` and of each output).
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"`` for ``kernel`` and
        ``bias``; ``recurrent_weight`` starts ``U(-1, 1)``.

    Returns:
      A :class:`~rnnjax.Cell` with params :class:`~rnnjax.DiagonalParams` (``kernel [I, 3H]``,
      ``recurrent_weight [3H]``), carry ``h``, and the ``projection``, ``gate_split`` and
      ``diagonal_jacobian`` capabilities.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.para_gru(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, ys = rnnjax.rnn(cell, params, jnp.ones((2, 5, 3)))
      >>> ys.shape, params.recurrent_weight.shape
      ((2, 5, 8), (24,))
    """
    init = _init_fn(hidden_size, 3, initializer, low=-1.0)
    return _diagonal_cell(
        "para_gru",
        hidden_size,
        3,
        init,
        _zeros_fn(hidden_size),
        identity,
        gru_combine,
        gru_gates,
    )


def _lstm_carry_fn(hidden: int) -> Callable[..., LSTMState]:
    zeros = _zeros_fn(hidden)

    def initial_carry(
        params: DiagonalParams, batch_shape: BatchShape, dtype: DTypeLike | None = None
    ) -> LSTMState:
        h = zeros(params, batch_shape, dtype)
        return LSTMState(h, h)

    return initial_carry


def _lstm_output(carry: LSTMState) -> Array:
    return carry.h


def _para_lstm_gates(params: DiagonalParams, carry: LSTMState, z: Array) -> tuple[LSTMState, Array]:
    f, g, o = jnp.split(z, 3, axis=-1)
    forget = jax.nn.sigmoid(f)
    c = forget * carry.c + (1 - forget) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return LSTMState(h, c), h


@cell_factory
def para_lstm(hidden_size: int, *, initializer: str = "keras") -> Cell:
    r"""ParaLSTM (Danieli et al., "ParaRNN", ICLR 2026): the coupled input-forget gate (CIFG)
    LSTM with diagonal recurrent weights.

    Gates stacked f, g, o; the input gate is ``1 - f`` (Greff et al. 2017's CIFG variant);
    ``a`` is ``recurrent_weight``:

    .. math::
        f = \sigma(x W_f + b_f + a_f \odot h_{t-1}), \quad
        g = \tanh(x W_g + b_g + a_g \odot h_{t-1}), \quad
        o = \sigma(x W_o + b_o + a_o \odot h_{t-1}), \\
        c_t = f \odot c_{t-1} + (1 - f) \odot g, \qquad h_t = o \odot \tanh(c_t), \qquad
        y_t = h_t

    The carry ``(h, c)`` has two arrays, so its Jacobian is a 2 x 2 block per unit. ParaRNN's
    cell also has peephole vectors; this one has none (a peephole LSTM is a custom cell
    away: ``gates`` sees the params).

    Args:
      hidden_size: ``H``, the size of ``h`` and ``c``.
      initializer: ``"keras"`` (default; forget-gate bias 1), ``"torch"`` or ``"flax"``
        for ``kernel`` and ``bias``; ``recurrent_weight`` starts ``U(-1, 1)``.

    Returns:
      A :class:`~rnnjax.Cell` with params :class:`~rnnjax.DiagonalParams` (``kernel [I, 3H]``),
      carry :class:`~rnnjax.LSTMState` and the ``projection``, ``gate_split`` and
      ``diagonal_jacobian`` capabilities.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.para_lstm(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> _, jacobian = cell.diagonal_jacobian.step(
      ...     params, cell.initial_carry(params, 2), jnp.ones((2, 3)))
      >>> jacobian.shape                  # 2 x 2 blocks over (h, c) per unit
      (2, 8, 2, 2)
    """
    init = _init_fn(hidden_size, 3, initializer, low=-1.0, forget_bias=True)
    return _diagonal_cell(
        "para_lstm",
        hidden_size,
        3,
        init,
        _lstm_carry_fn(hidden_size),
        _lstm_output,
        jnp.add,
        _para_lstm_gates,
    )
