"""What a scan step does around the cell: a reset before it, padding after it.

Flags are ``[*batch]``; each carry leaf is ``[*batch, ...]`` with any trailing axes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rnnjax._src.core.contract import Carry

Array = jax.Array


def select(flag: Array, new: Array, old: Array) -> Array:
    """``new`` where ``flag [*batch]``, else ``old``, over ``old``'s trailing axes too."""
    flag = flag.reshape(flag.shape + (1,) * (jnp.ndim(old) - flag.ndim))
    return jnp.where(flag, new, old)


def reset(carry: Carry, fresh: Carry, reset_t: Array | None) -> Carry:
    """``carry``, with ``fresh`` where ``reset_t [*batch]`` is true."""
    if reset_t is None:
        return carry
    return jax.tree.map(lambda new, old: select(reset_t, new.astype(old.dtype), old), fresh, carry)


def advance(
    carry: Carry, new_carry: Carry, y: Array, valid_t: Array | None, output_dtype: Any
) -> tuple[Carry, Array]:
    """One scan update: a padded step keeps the carry and emits zeros; dtypes stay the carry's."""
    if valid_t is not None:
        new_carry = jax.tree.map(lambda new, old: select(valid_t, new, old), new_carry, carry)
        y = select(valid_t, y, jnp.zeros_like(y))
    new_carry = jax.tree.map(lambda new, old: new.astype(old.dtype), new_carry, carry)
    return new_carry, y.astype(output_dtype)
