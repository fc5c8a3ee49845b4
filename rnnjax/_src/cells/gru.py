"""The GRU (Cho et al. 2014) in both of its common forms: PyTorch's, cuDNN's and Keras's."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.cells.initializers import init_weights
from rnnjax._src.cells.kit import (
    cell_factory,
    gated_cell,
    identity,
    input_projection,
    params_check,
    zeros_carry,
)
from rnnjax._src.core.contract import Cell, Projection
from rnnjax._src.core.matmul import add_bias, apply_mask, matmul

Array = jax.Array


class GRUParams(NamedTuple):
    """Parameters of :func:`gru`; gates in the order r, z, n (as PyTorch and cuDNN).

    Attributes:
      kernel: ``[input_size, 3 * hidden]``.
      recurrent_kernel: ``[hidden, 3 * hidden]``.
      bias: ``[3 * hidden]``, the input bias (PyTorch's ``b_ih``).
      recurrent_bias: ``[3 * hidden]``, the recurrent bias (PyTorch's ``b_hh``) with
        ``reset_after=True``; ``None`` with ``reset_after=False``, where one bias is all the
        equations can tell apart.
    """

    kernel: Array
    recurrent_kernel: Array
    bias: Array
    recurrent_bias: Array | None


@cell_factory
def gru(hidden_size: int, reset_after: bool = True, *, initializer: str = "keras") -> Cell:
    r"""The GRU cell (Cho et al. 2014) in both of its common forms.

    Gates are stacked r, z, n (PyTorch's and cuDNN's order; Keras stores z, r, n). With
    ``reset_after=True`` (PyTorch, cuDNN and the Keras default):

    .. math::
        r = \sigma(x W_r + b_r + h U_r + \beta_r),\;
        z = \sigma(x W_z + b_z + h U_z + \beta_z), \\
        n = \tanh(x W_n + b_n + r \odot (h U_n + \beta_n)), \qquad
        h_t = (1 - z) \odot n + z \odot h_{t-1}

    where ``b`` is ``bias`` and ``beta`` is ``recurrent_bias``. With ``reset_after=False`` (the
    original paper, Keras ``reset_after=False``) the reset gate acts before the matmul and there
    is one bias: ``n = tanh(x W_n + (r * h) U_n + b_n)``.

    Args:
      hidden_size: ``H``, the size of ``h``.
      reset_after: which form, as above.
      initializer: ``"keras"`` (default), ``"torch"`` or ``"flax"``.

    Returns:
      A :class:`Cell` whose params are :class:`GRUParams`.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.gru(4, reset_after=False)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> params.recurrent_bias is None
      True
      >>> carry, y = cell.step(params, cell.initial_carry(params, 2), jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> GRUParams:
        w = init_weights(initializer, key, input_size, hidden_size, 3, dtype)
        recurrent_bias = w.recurrent_bias if reset_after else None
        return GRUParams(w.kernel, w.recurrent_kernel, w.bias, recurrent_bias)

    name = f"gru({hidden_size}, reset_after={reset_after})"
    input_size = params_check(name, GRUParams, hidden_size, 3 * hidden_size, reset_after)
    if reset_after:
        return gated_cell(
            init, zeros_carry, input_size, identity, gru_recurrent, gru_combine, gru_gates
        )

    # reset_after=False: the reset gate acts before the second matmul, so there is no
    # recurrent/gates split (and no fused backward pass).
    def projected_step(
        params: GRUParams, h: Array, projected: Array, recurrent_mask: Array | None = None
    ) -> tuple[Array, Array]:
        x_rz, x_n = jnp.split(projected, [2 * hidden_size], axis=-1)
        u_rz, u_n = jnp.split(params.recurrent_kernel, [2 * hidden_size], axis=-1)
        h_in = apply_mask(h, recurrent_mask)
        r, z = jnp.split(jax.nn.sigmoid(x_rz + matmul(h_in, u_rz)), 2, axis=-1)
        n = jnp.tanh(x_n + matmul(r * h_in, u_n))
        h_new = (1 - z) * n + z * h
        return h_new, h_new

    def step(params: GRUParams, h: Array, x: Array) -> tuple[Array, Array]:
        return projected_step(params, h, input_projection(params, x))

    projection = Projection(input_projection, projected_step)
    return Cell(init, zeros_carry, step, input_size, identity, projection)


def gru_recurrent(params: GRUParams, h: Array) -> Array:
    assert params.recurrent_bias is not None, "reset_after=True needs recurrent_bias"
    return add_bias(matmul(h, params.recurrent_kernel), params.recurrent_bias)


def gru_combine(projected: Array, recurrent: Array) -> tuple[Array, Array, Array]:
    # The r and z pre-activations (2H), the candidate's input part and its recurrent part:
    # three arrays, not one concatenation, which each step (and its tangent) would write.
    x_rz, x_n = jnp.split(projected, [2 * (projected.shape[-1] // 3)], axis=-1)
    h_rz, h_n = jnp.split(recurrent, [2 * (recurrent.shape[-1] // 3)], axis=-1)
    return x_rz + h_rz, x_n, h_n


def gru_gates(
    params: GRUParams, h: Array, preactivations: tuple[Array, Array, Array]
) -> tuple[Array, Array]:
    rz, x_n, h_n = preactivations
    r, z = jnp.split(jax.nn.sigmoid(rz), 2, axis=-1)
    n = jnp.tanh(x_n + r * h_n)
    h_new = (1 - z) * n + z * h
    return h_new, h_new
