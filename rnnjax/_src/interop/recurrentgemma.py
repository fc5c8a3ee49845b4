"""Weights from recurrentgemma (Griffin, Hawk): its RG-LRU layer's params as
:func:`rnnjax.rg_lru`'s."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rnnjax._src.cells.lru import RGLRUParams

Array = jax.Array


def rg_lru_params_from_recurrentgemma(tree: dict[str, Any]) -> RGLRUParams:
    """:func:`rnnjax.rg_lru` params from recurrentgemma's ``RGLRU`` layer (real-only, Griffin's).

    ``tree`` holds recurrentgemma's names and shapes: ``"a_param" [W]``, and ``"input_gate"``
    and ``"a_gate"``, each ``{"w": [heads, W / heads, W / heads], "b": [heads, W / heads]}``
    (block-diagonal linear layers). The blocks become one dense ``[W, W]`` matrix each, the
    value projection is the identity. With ``rnnjax.rg_lru(W,
    document_starts="recurrentgemma")`` and ``resets=(segment_pos == 0)`` passed to
    :func:`rnnjax.rnn` (a fresh start needs no reset at step 0), these params reproduce
    recurrentgemma's layer exactly, document starts included; the default ``rg_lru(W)`` scales
    each document's first token by ``sqrt(1 - a_t^2)``.

    Example:
      >>> import jax.numpy as jnp, rnnjax.interop
      >>> gate = {"w": jnp.ones((2, 2, 2)), "b": jnp.zeros((2, 2))}
      >>> params = rnnjax.interop.rg_lru_params_from_recurrentgemma(
      ...     {"a_param": jnp.zeros(4), "input_gate": gate, "a_gate": gate})
      >>> params.kernel.shape, params.bias.shape
      ((4, 12), (12,))
    """
    a_param = jnp.asarray(tree["a_param"])
    width = a_param.shape[0]

    def dense(block: dict[str, Any]) -> tuple[Array, Array]:
        w, b = jnp.asarray(block["w"]), jnp.asarray(block["b"])
        square = w.ndim == 3 and w.shape[1] == w.shape[2] and w.shape[0] * w.shape[1] == width
        if not square or b.shape != w.shape[::2]:
            raise ValueError(
                "rnnjax.interop.rg_lru_params_from_recurrentgemma: a gate must be {'w': [heads,"
                f" W/heads, W/heads], 'b': [heads, W/heads]}} with W = {width} (a_param's size);"
                f" got w {w.shape}, b {b.shape}"
            )
        return jax.scipy.linalg.block_diag(*w), b.reshape(-1)

    (w_a, b_a), (w_x, b_x) = dense(tree["a_gate"]), dense(tree["input_gate"])
    kernel = jnp.concatenate([w_a, w_x, jnp.eye(width, dtype=w_a.dtype)], axis=1)
    bias = jnp.concatenate([b_a, b_x, jnp.zeros(width, b_a.dtype)])
    return RGLRUParams(kernel, bias, a_param)
