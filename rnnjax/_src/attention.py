r"""``attention``: a cell wrapper whose step attends over an encoder's outputs.

:func:`attention` returns a complete :class:`~rnnjax.Cell` around any cell (the optax pattern of
``optax.masked``): its params are :class:`AttentionParams` (the inner cell's params plus the
attention weights), its carry :class:`AttentionState` (the inner carry, the last attentional
output and the last attention weights). It closes over the encoder's outputs, so it is built
inside the function that has them (a loss, a decoding step), and runs through
:func:`rnnjax.rnn` (teacher forcing) and through its own ``step`` (decoding).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from rnnjax._src.cells import matmul
from rnnjax._src.checks import check_carry, check_seq_lengths, shape_error
from rnnjax._src.contract import BatchShape, Carry, Cell, Params

Array = jax.Array

KINDS: tuple[str, ...] = ("bahdanau", "luong")


class AttentionParams(NamedTuple):
    """Parameters of an :func:`attention` cell (``H``: the inner cell's hidden size, ``F``: the
    memory's features, ``A``: ``attention_size``).

    Attributes:
      cell: the inner cell's params, for inputs of size ``input_size + A`` (input feeding).
      query_kernel: ``W_q [H, A]`` (Bahdanau) or ``W_a [H, F]`` (Luong).
      memory_kernel: ``W_m [F, A]`` (Bahdanau); ``None`` (Luong).
      score_vector: ``v [A]`` (Bahdanau); ``None`` (Luong).
      output_kernel: ``W_c [F + H, A]``, applied to ``[context ; h]``.
    """

    cell: Params
    query_kernel: Array
    memory_kernel: Array | None
    score_vector: Array | None
    output_kernel: Array


class AttentionState(NamedTuple):
    """The carry of an :func:`attention` cell.

    Attributes:
      cell: the inner cell's carry (an :class:`~rnnjax.LSTMState` for the LSTM). A decoder
        usually starts from the encoder's final carry:
        ``att_cell.initial_carry(params, batch)._replace(cell=encoder_carry)``.
      attention: ``[*batch, A]``, the last attentional output ``y_{t-1}``, fed back into the
        next step's input (zeros before the first step).
      weights: ``[*batch, source_time]``, the attention weights of the last step (zeros before
        the first step); ``jax.lax.scan`` over ``step`` collects them for a heatmap.
    """

    cell: Carry
    attention: Array
    weights: Array


def _batch_tuple(batch_shape: BatchShape) -> tuple[int, ...]:
    return (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)


def _check_memory(memory: Any, memory_lengths: Any, kind: str, attention_size: Any) -> None:
    where = "rnnjax.attention"
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {KINDS}; got {kind!r}")
    if attention_size is not None and (
        not isinstance(attention_size, int)
        or isinstance(attention_size, bool)
        or attention_size < 1
    ):
        raise ValueError(
            f"{where}: attention_size must be None or a positive int; got {attention_size!r}"
        )
    if not hasattr(memory, "shape") or jnp.ndim(memory) < 2:
        actual = getattr(memory, "shape", type(memory))
        raise shape_error("memory", "[*batch, source_time, features] (rank >= 2)", actual, where)
    if not jnp.issubdtype(memory.dtype, jnp.floating):
        raise TypeError(
            f"{where}: memory must be floating point; got {memory.dtype}{list(memory.shape)}"
        )
    if memory_lengths is not None:
        batch_shape, source_time = tuple(memory.shape[:-2]), memory.shape[-2]
        check_seq_lengths(
            memory_lengths,
            batch_shape,
            source_time,
            where,
            "memory_lengths",
            f"memory {tuple(memory.shape)}",
        )


def _glorot(key: Array, shape: tuple[int, ...], dtype: DTypeLike) -> Array:
    return jax.nn.initializers.glorot_uniform()(key, shape, dtype)


def attention(
    cell: Cell,
    memory: Array,
    memory_lengths: Array | None = None,
    *,
    kind: Literal["bahdanau", "luong"] = "bahdanau",
    attention_size: int | None = None,
) -> Cell:
    r"""``cell`` with attention over ``memory`` and input feeding (Luong et al. 2015).

    With ``m_s`` the memory at source position ``s`` and ``h_t`` the inner cell's output:

    .. math::
        (\mathrm{carry}_t, h_t) = \mathrm{cell.step}(\mathrm{carry}_{t-1},
            [x_t ; \tilde y_{t-1}]), \\
        e_{ts} = v^\top \tanh(h_t W_q + m_s W_m) \;\text{(Bahdanau, additive)} \quad\text{or}
        \quad e_{ts} = h_t W_a m_s^\top \;\text{(Luong, "general")}, \\
        a_{ts} = \mathrm{softmax}_s(e_{ts}) \text{ over } s < \mathrm{memory\_lengths},
        \qquad a_{ts} = 0 \text{ for } s \ge \mathrm{memory\_lengths}, \\
        c_t = \textstyle\sum_s a_{ts} m_s, \qquad
        \tilde y_t = \tanh([c_t ; h_t] W_c), \qquad y_t = \tilde y_t

    Positions past a length get a score of the dtype's most negative value before the softmax
    and a weight of exactly 0 after it; the memory there is zeroed first, so no value in the
    padding (not even NaN) reaches an output or a gradient. A source of length 0 has all
    weights 0 and context ``c_t = 0``. The scores are computed from ``h_t`` (after the inner
    step), as in Luong et al.; ``m_s W_m`` is written inside the step (XLA hoists it out of a
    jitted forward scan; the backward pass accumulates its gradient step by step). For long
    sources ``kind="luong"`` is cheaper: its score ``(h_t W_a) \cdot m_s`` needs no matmul
    per source position.

    Args:
      cell: the inner :class:`~rnnjax.Cell` (e.g. ``rnnjax.lstm(64)``), or any cell.
      memory: ``[*batch, source_time, features]``, the encoder's outputs. The cell closes
        over it: build the attention cell inside the function that has the memory (the loss,
        the decoding step), not once globally.
      memory_lengths: integer ``[*batch]``; positions ``s >= memory_lengths[b]`` are padding.
        Default: all positions are valid.
      kind: ``"bahdanau"`` (additive) or ``"luong"`` (multiplicative, "general").
      attention_size: ``A``, the size of the attentional output ``y_t`` (and of Bahdanau's
        additive layer). Default: the inner cell's hidden size.

    Returns:
      A :class:`~rnnjax.Cell`: params :class:`AttentionParams` from ``init(key, input_size)``
      (the inner cell gets ``input_size + A`` inputs), carry :class:`AttentionState` (zeros
      for ``attention`` and ``weights`` from ``initial_carry``), output ``y_t [*batch, A]``.
      ``x_t`` must have the memory's batch shape.

    Raises:
      ValueError, TypeError: at trace time, for a memory of rank < 2 or not floating,
        ``memory_lengths`` whose shape is not memory's batch shape or not integer, an unknown
        ``kind``; ``step``, ``rnn`` and ``initial_carry`` name the shapes they expected.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> memory = jnp.ones((2, 7, 5))                    # [batch, source_time, features]
      >>> att = rnnjax.attention(rnnjax.lstm(8), memory, jnp.array([7, 3]), kind="luong")
      >>> params = att.init(jax.random.key(0), 4)           # decoder inputs of size 4
      >>> carry, ys = rnnjax.rnn(att, params, jnp.ones((2, 6, 4)))   # teacher forcing
      >>> ys.shape, carry.weights.shape
      ((2, 6, 8), (2, 7))
      >>> bool((carry.weights[1, 3:] == 0).all()), float(carry.weights[1].sum())
      (True, 1.0)
    """
    _check_memory(memory, memory_lengths, kind, attention_size)
    memory = jnp.asarray(memory)
    memory_batch = tuple(memory.shape[:-2])
    source_time, features = memory.shape[-2], memory.shape[-1]
    where = f"rnnjax.attention({kind!r})"
    if memory_lengths is None:
        valid = None
    else:
        positions = jnp.arange(source_time).reshape((1,) * len(memory_batch) + (source_time,))
        valid = positions < jnp.asarray(memory_lengths)[..., None]
        memory = jnp.where(valid[..., None], memory, 0)  # padding never reaches a gradient

    def hidden_size(params: Params | None = None) -> int:
        if params is None:
            params = jax.eval_shape(lambda: cell.init(jax.random.key(0), 1))
        h = jax.eval_shape(lambda: cell.output(cell.initial_carry(params, ())))
        return int(h.shape[-1])

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> AttentionParams:
        hidden = hidden_size()
        size = attention_size or hidden
        k_cell, k_query, k_memory, k_vector, k_output = jax.random.split(key, 5)
        inner = cell.init(k_cell, input_size + size, dtype)
        if kind == "bahdanau":
            query_kernel = _glorot(k_query, (hidden, size), dtype)
            memory_kernel: Array | None = _glorot(k_memory, (features, size), dtype)
            bound = 1 / np.sqrt(size)
            score_vector: Array | None = jax.random.uniform(k_vector, (size,), dtype, -bound, bound)
        else:
            query_kernel = _glorot(k_query, (hidden, features), dtype)
            memory_kernel = score_vector = None
        output_kernel = _glorot(k_output, (features + hidden, size), dtype)
        return AttentionParams(inner, query_kernel, memory_kernel, score_vector, output_kernel)

    def input_size(params: Params) -> int:
        if not isinstance(params, AttentionParams):
            raise TypeError(
                f"{where}: params must be rnnjax.AttentionParams; got {type(params).__name__}"
            )
        hidden = hidden_size(params.cell)
        size = params.output_kernel.shape[-1]
        expected = {
            "query_kernel": (hidden, size if kind == "bahdanau" else features),
            "memory_kernel": (features, size) if kind == "bahdanau" else None,
            "score_vector": (size,) if kind == "bahdanau" else None,
            "output_kernel": (features + hidden, size),
        }
        got = {
            name: None if getattr(params, name) is None else tuple(getattr(params, name).shape)
            for name in expected
        }
        inner_input = cell.input_size(params.cell)
        if got != expected or inner_input <= size:
            raise ValueError(
                f"{where}: params must be AttentionParams with {expected} for memory features"
                f" {features} and an inner cell taking more than {size} inputs; got {got} and"
                f" {inner_input} inputs"
            )
        return int(inner_input - size)

    def initial_carry(
        params: AttentionParams, batch_shape: BatchShape, dtype: DTypeLike | None = None
    ) -> AttentionState:
        batch = _batch_tuple(batch_shape)
        if batch != memory_batch:
            raise ValueError(
                f"{where}: the batch shape must be memory's, {memory_batch}"
                f" (memory {tuple(memory.shape)}); got {batch}"
            )
        inner = cell.initial_carry(params.cell, batch, dtype)
        dtype = dtype or params.output_kernel.dtype
        size = params.output_kernel.shape[-1]
        return AttentionState(
            inner, jnp.zeros((*batch, size), dtype), jnp.zeros((*batch, source_time), dtype)
        )

    def scores(params: AttentionParams, h: Array) -> Array:
        if kind == "bahdanau":
            assert params.memory_kernel is not None and params.score_vector is not None
            keys = matmul(memory, params.memory_kernel)  # [*batch, source_time, A]
            query = matmul(h, params.query_kernel)[..., None, :]
            hidden = jnp.tanh(keys + query.astype(keys.dtype))
            return matmul(hidden, params.score_vector[:, None])[..., 0]
        query = matmul(h, params.query_kernel)  # [*batch, features]
        return jnp.einsum("...f,...sf->...s", query, memory.astype(query.dtype))

    def step(
        params: AttentionParams, carry: AttentionState, x: Array
    ) -> tuple[AttentionState, Array]:
        size = input_size(params)
        if not hasattr(x, "shape") or tuple(x.shape) != (*memory_batch, size):
            actual = getattr(x, "shape", type(x))
            raise shape_error(
                "x",
                f"{(*memory_batch, size)} ([*memory batch, input_size])",
                actual,
                where + ".step",
            )
        expected = jax.eval_shape(lambda: initial_carry(params, memory_batch))
        if isinstance(carry, AttentionState):  # the inner carry first: its own message
            check_carry(carry.cell, expected.cell, where + ".step", "carry.cell")
        carry = check_carry(carry, expected, where + ".step", "carry")
        inner_in = jnp.concatenate([x, carry.attention.astype(x.dtype)], axis=-1)
        inner, h = cell.step(params.cell, carry.cell, inner_in)
        e = scores(params, h)
        if valid is not None:
            e = jnp.where(valid, e, jnp.finfo(e.dtype).min)
        weights = jax.nn.softmax(e, axis=-1)
        if valid is not None:
            weights = jnp.where(valid, weights, 0)
        context = jnp.einsum("...s,...sf->...f", weights, memory.astype(weights.dtype))
        attended = jnp.concatenate([context, h.astype(context.dtype)], axis=-1)
        output = jnp.tanh(matmul(attended, params.output_kernel))
        dtype = carry.attention.dtype
        return AttentionState(inner, output.astype(dtype), weights.astype(dtype)), output.astype(
            dtype
        )

    return Cell(init, initial_carry, step, input_size, _attention_output)


def _attention_output(carry: AttentionState) -> Array:
    return carry.attention
