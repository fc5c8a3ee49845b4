"""The cells' matmul: ``x @ weight`` with any leading axes folded into rows, and with
low-precision weights, low-precision operands and a float32 result."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def add_bias(z: Array, bias: Array) -> Array:
    """``z + bias`` with the broadcast spelled out (fine under ``jax_numpy_rank_promotion``)."""
    return z + bias.reshape((1,) * (z.ndim - 1) + bias.shape)


def matmul(x: Array, weight: Array) -> Array:
    """``x @ weight``; with low-precision weights, ``x`` in their dtype and a float32 result.

    Low precision here is a floating dtype narrower than float32 (bfloat16, float16): the
    operands go to the matmul unit in that dtype and the products accumulate in float32. The
    derivatives' matmuls take operands in that dtype too (their results are rounded to it),
    native on GPUs and TPUs; XLA's CPU backend computes such a dot in float32.

    Example:
      >>> import jax.numpy as jnp, rnnjax
      >>> h, weight = jnp.ones((2, 3)), jnp.ones((3, 4), jnp.bfloat16)
      >>> from rnnjax._src.core.matmul import matmul
      >>> matmul(h, weight).dtype      # bfloat16 operands, float32 accumulation
      dtype('float32')
      >>> matmul(h, weight.astype(jnp.float32)).dtype
      dtype('float32')
    """
    rows = x.reshape(-1, x.shape[-1])  # leading axes folded: a 2-D matmul, and its transposes
    if jnp.finfo(weight.dtype).bits < 32:
        product = _low_precision_matmul(rows.astype(weight.dtype), weight)
    else:
        product = rows @ weight
    return product.reshape(*x.shape[:-1], weight.shape[-1])


@jax.custom_jvp
def _low_precision_matmul(x: Array, weight: Array) -> Array:
    return jnp.matmul(x, weight, preferred_element_type=jnp.float32)


@_low_precision_matmul.defjvp
def _low_precision_matmul_jvp(
    primals: tuple[Array, Array], tangents: tuple[Array, Array]
) -> tuple[Array, Array]:
    # Tangent products in the operands' dtype: JAX transposes them into matmuls whose operands
    # (the output cotangent among them) are all low precision, never a float32 x bfloat16 mix.
    (x, weight), (dx, dweight) = primals, tangents
    tangent = jnp.matmul(dx, weight) + jnp.matmul(x, dweight)
    return _low_precision_matmul(x, weight), tangent.astype(jnp.float32)


def apply_mask(h: Array, mask: Array | None) -> Array:
    """``h * mask``, ``mask [*batch, hidden]`` broadcast over any extra leading axes of ``h``."""
    if mask is None:
        return h
    return h * mask.reshape((1,) * (h.ndim - mask.ndim) + mask.shape)
