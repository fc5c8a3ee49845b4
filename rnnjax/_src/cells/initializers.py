"""Weight initialisation schemes of the peers, so a fresh model starts where theirs would.

A scheme maps ``(key, input_size, hidden_size, gates, dtype)`` to the three weight blocks
``kernel [input_size, gates * hidden_size]``, ``recurrent_kernel [hidden_size, gates *
hidden_size]`` and ``bias [gates * hidden_size]``, plus a second bias of the same shape where a
cell keeps one (the GRU's recurrent bias). Cells adjust the result (the LSTM forget bias).
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

Initializer = Literal["keras", "torch", "flax"]
INITIALIZERS: tuple[str, ...] = ("keras", "torch", "flax")


class WeightBlocks(NamedTuple):
    kernel: jax.Array
    recurrent_kernel: jax.Array
    bias: jax.Array
    recurrent_bias: jax.Array


def _per_gate_orthogonal(key: jax.Array, hidden_size: int, gates: int) -> jax.Array:
    """``gates`` independent orthogonal ``[H, H]`` blocks side by side: ``[H, gates * H]``."""
    orthogonal = jax.nn.initializers.orthogonal()
    keys = jax.random.split(key, gates)
    return jnp.concatenate([orthogonal(k, (hidden_size, hidden_size)) for k in keys], axis=1)


def init_weights(
    scheme: str,
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    gates: int,
    dtype: DTypeLike,
) -> WeightBlocks:
    """Draws a cell's weights the way Keras, PyTorch or Flax would, then casts them to ``dtype``.

    * ``"keras"``: Glorot-uniform kernel (fans of the whole ``[I, G*H]`` matrix), orthogonal
      recurrent kernel (the whole ``[H, G*H]`` matrix), zero biases.
    * ``"torch"``: every weight and bias ``U(-1/sqrt(H), 1/sqrt(H))``. PyTorch keeps two biases
      (``b_ih``, ``b_hh``); a cell with one bias gets their sum, so its distribution matches.
    * ``"flax"``: LeCun-normal kernel, one orthogonal ``[H, H]`` block per gate, zero biases
      (``flax.linen.LSTMCell`` / ``GRUCell``).

    Everything is drawn in float32 (QR, behind the orthogonal draws, has no bfloat16 kernel).
    """
    width = gates * hidden_size
    k_kernel, k_recurrent, k_bias, k_recurrent_bias = jax.random.split(key, 4)
    zeros = jnp.zeros((width,))
    if scheme == "keras":
        kernel = jax.nn.initializers.glorot_uniform()(k_kernel, (input_size, width))
        recurrent = jax.nn.initializers.orthogonal()(k_recurrent, (hidden_size, width))
        blocks = WeightBlocks(kernel, recurrent, zeros, zeros)
    elif scheme == "torch":
        bound = 1.0 / hidden_size**0.5

        def uniform(k: jax.Array, shape: tuple[int, ...]) -> jax.Array:
            return jax.random.uniform(k, shape, jnp.float32, -bound, bound)

        blocks = WeightBlocks(
            uniform(k_kernel, (input_size, width)),
            uniform(k_recurrent, (hidden_size, width)),
            uniform(k_bias, (width,)),
            uniform(k_recurrent_bias, (width,)),
        )
    elif scheme == "flax":
        kernel = jax.nn.initializers.lecun_normal()(k_kernel, (input_size, width))
        recurrent = _per_gate_orthogonal(k_recurrent, hidden_size, gates)
        blocks = WeightBlocks(kernel, recurrent, zeros, zeros)
    else:
        raise ValueError(f"initializer must be one of {INITIALIZERS}; got {scheme!r}")
    return WeightBlocks(*(block.astype(dtype) for block in blocks))


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4, 5))
def input_weights(
    scheme: str, key: jax.Array, input_size: int, hidden_size: int, gates: int, dtype: DTypeLike
) -> tuple[jax.Array, jax.Array]:
    """``(kernel, bias)`` of :func:`init_weights`, for cells without a recurrent kernel.

    Compiled, so the recurrent kernel they do not use (an orthogonal draw: a QR of ``[H, H]``,
    minutes at ``H`` in the thousands) is never computed.
    """
    blocks = init_weights(scheme, key, input_size, hidden_size, gates, dtype)
    return blocks.kernel, blocks.bias
