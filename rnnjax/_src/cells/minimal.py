"""Parallel-in-time cells: minGRU and minLSTM (Feng et al., "Were RNNs All We Needed?", 2024).

Their gates read the input only, never ``h``, so each step is ``h_t = a_t * h_{t-1} + b_t``
with ``a_t`` and ``b_t`` functions of ``x_t``: the :class:`~rnnjax.LinearScan` capability, which
:func:`rnnjax.rnn` runs over all time steps at once (:func:`rnnjax.linear_recurrence`).
``cell.step`` is the same update one token at a time, for decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.cells.initializers import init_weights
from rnnjax._src.cells.kit import batch_tuple, cell_factory, linear_scan_cell
from rnnjax._src.core.contract import BatchShape, Cell
from rnnjax._src.core.matmul import add_bias, matmul

Array = jax.Array


class MinRNNParams(NamedTuple):
    """Parameters of :func:`min_gru` and :func:`min_lstm`: one input projection, no recurrent
    kernel.

    Attributes:
      kernel: ``[input_size, gates * hidden]``, gates side by side (minGRU: z, h~; minLSTM:
        f, i, h~; mingru-pytorch's order differs, see :func:`min_gru`).
      bias: ``[gates * hidden]``, added to ``x W`` (mingru-pytorch has none: zeros).
    """

    kernel: Array
    bias: Array


def g(x: Array) -> Array:
    r"""The paper's positive activation for the candidate state:
    :math:`g(x) = x + 1/2` for :math:`x \ge 0`, :math:`\sigma(x)` below (continuous at 0)."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


Coefficients = Callable[[Array], tuple[Array, Array]]


def _min_cell(
    name: str, hidden: int, gates: int, initializer: str, coefficients: Coefficients
) -> Cell:
    """The cell with ``(a, b) = coefficients(x W + b)`` and ``h_t = a * h_{t-1} + b``."""
    width = gates * hidden

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> MinRNNParams:
        w = init_weights(initializer, key, input_size, hidden, gates, dtype)
        return MinRNNParams(w.kernel, w.bias)

    def initial_carry(
        params: MinRNNParams, batch_shape: BatchShape, dtype: DTypeLike | None = None
    ) -> Array:
        return jnp.zeros((*batch_tuple(batch_shape), hidden), dtype or params.kernel.dtype)

    def input_size(params: MinRNNParams) -> int:
        kernel = tuple(getattr(getattr(params, "kernel", None), "shape", ()))
        bias = tuple(getattr(getattr(params, "bias", None), "shape", ()))
        fields = isinstance(params, tuple) and len(params) == 2
        if not fields or len(kernel) != 2 or kernel[1] != width or bias != (width,):
            raise ValueError(
                f"rnnjax.{name}({hidden}): params must be MinRNNParams(kernel=[input_size,"
                f" {width}], bias=({width},)); got {type(params).__name__} with kernel={kernel},"
                f" bias={bias}"
            )
        return int(kernel[0])

    def coefficients_of(params: MinRNNParams, xs: Array) -> tuple[Array, Array]:
        return coefficients(add_bias(matmul(xs, params.kernel), params.bias))

    return linear_scan_cell(init, initial_carry, input_size, coefficients_of)


def _min_gru_coefficients(z: Array) -> tuple[Array, Array]:
    gate, candidate = jnp.split(z, 2, axis=-1)
    update = jax.nn.sigmoid(gate)
    return 1 - update, update * g(candidate)


def _min_lstm_coefficients(z: Array) -> tuple[Array, Array]:
    f, i, candidate = jnp.split(z, 3, axis=-1)
    # f / (f + i) = sigmoid(log f - log i): no 0 / 0 when both sigmoids underflow.
    log_ratio = jax.nn.log_sigmoid(f) - jax.nn.log_sigmoid(i)
    return jax.nn.sigmoid(log_ratio), jax.nn.sigmoid(-log_ratio) * g(candidate)


@cell_factory
def min_gru(hidden_size: int, *, initializer: str = "keras") -> Cell:
    r"""minGRU (Feng et al. 2024): a GRU whose gates read only ``x``, so it trains in parallel.

    With ``[z_z, z_h] = x_t W + b``:

    .. math::
        z_t = \sigma(z_z), \qquad \tilde h_t = g(z_h), \qquad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t, \qquad y_t = h_t

    where :math:`g(x) = x + 1/2` for :math:`x \ge 0` and :math:`\sigma(x)` otherwise (the
    paper's positive activation). :func:`rnnjax.rnn` runs it as a linear recurrence with
    ``a = 1 - z``, ``b = z * g(z_h)``.

    Block order: rnnjax's kernel holds (z, h~), the gate first; mingru-pytorch's
    ``to_hidden_and_gate`` holds (hidden, gate), as ``weight [2H, I]`` with no bias.
    :func:`rnnjax.interop.min_gru_params_from_mingru` converts its ``state_dict()``.

    Args:
      hidden_size: ``H``, the size of the state ``h`` and of each output.
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"``, for ``kernel``.

    Returns:
      A :class:`~rnnjax.Cell` with params :class:`~rnnjax.MinRNNParams` (``kernel [I, 2H]``)
      and carry ``h``, with the ``linear_scan`` capability.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.min_gru(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 100, 3))
      >>> _, parallel = rnnjax.rnn(cell, params, xs)               # over all steps at once
      >>> _, one_by_one = rnnjax.rnn(cell, params, xs, parallel=False)
      >>> bool(jnp.allclose(parallel, one_by_one, atol=1e-6))
      True
    """
    return _min_cell("min_gru", hidden_size, 2, initializer, _min_gru_coefficients)


@cell_factory
def min_lstm(hidden_size: int, *, initializer: str = "keras") -> Cell:
    r"""minLSTM (Feng et al. 2024): an LSTM whose gates read only ``x``, normalised to sum to 1.

    With ``[z_f, z_i, z_h] = x_t W + b``:

    .. math::
        f_t = \sigma(z_f), \quad i_t = \sigma(z_i), \quad
        f'_t = \frac{f_t}{f_t + i_t}, \quad i'_t = \frac{i_t}{f_t + i_t}, \\
        h_t = f'_t \odot h_{t-1} + i'_t \odot g(z_h), \qquad y_t = h_t

    with the paper's :math:`g` as in :func:`min_gru` (the length-independent form, no cell
    state ``c``). :func:`rnnjax.rnn` runs it as a linear recurrence with ``a = f'``,
    ``b = i' g(z_h)``.

    Block order: rnnjax's kernel holds (f, i, h~); mingru-pytorch's
    ``to_hidden_and_f_i_gate`` holds (hidden, f, i), as ``weight [3H, I]`` with no bias.
    :func:`rnnjax.interop.min_lstm_params_from_mingru` converts its ``state_dict()``.

    Args:
      hidden_size: ``H``, the size of the state ``h`` and of each output.
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"``, for ``kernel``.

    Returns:
      A :class:`~rnnjax.Cell` with params :class:`~rnnjax.MinRNNParams` (``kernel [I, 3H]``).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.min_lstm(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, y = cell.step(params, cell.initial_carry(params, 2), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)
    """
    return _min_cell("min_lstm", hidden_size, 3, initializer, _min_lstm_coefficients)
