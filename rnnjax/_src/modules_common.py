"""What the Flax modules (:mod:`rnnjax.nnx`, :mod:`rnnjax.linen`) share.

The modules are thin shells: :class:`RecurrentOptions` turns a module's settings into a
functional :class:`~rnnjax.Layer` (``rnnjax.layer``, stacked with ``rnnjax.stack`` for
``num_layers > 1``, paired by ``rnnjax.bidirectional``) and shapes ``(final_carry, ys)`` into
what Keras returns. The step modules (``LSTMCell`` etc.) take the same options object, with
only the settings that apply to one step set (``features``, ``initializer``, ``dtype``,
``param_dtype`` and the cell kind's own), and run one time step through the same cell's
``step`` (:meth:`RecurrentOptions.step`). Both APIs call exactly these functions, so a
module's output is the functional layer's, bit for bit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.checks import check_carry, checked_step
from rnnjax._src.compose import BidirectionalParams, bidirectional, check_merge, merge_outputs
from rnnjax._src.compose import stack as make_stack
from rnnjax._src.contract import Carry, Cell, Layer, Params
from rnnjax._src.derived import with_compute_dtype
from rnnjax._src.layers import layer as make_layer
from rnnjax._src.registry import CELL_KINDS, make_cell

Array = jax.Array


def processing_order(ys: Array, seq_lengths: Array | None) -> Array:
    """Outputs of a reversed run, ``[*batch, time, H]``, in the order they were computed.

    A reversed layer writes each output at its original position; Keras's ``go_backwards``
    returns them in processing order. Entry ``k`` of sequence ``b`` becomes its output at
    position ``len[b] - 1 - k`` for ``k < len[b]`` and zero after (without ``seq_lengths``:
    the time axis flipped).
    """
    if seq_lengths is None:
        return jnp.flip(ys, axis=-2)
    lengths = jnp.asarray(seq_lengths)
    time = ys.shape[-2]
    steps = jnp.arange(time).reshape((1,) * lengths.ndim + (time,))
    index = lengths[..., None] - 1 - steps  # [*batch, time]
    gathered = jnp.take_along_axis(ys, jnp.clip(index, 0, time - 1)[..., None], axis=-2)
    return jnp.where((index >= 0)[..., None], gathered, jnp.zeros_like(gathered))


@dataclasses.dataclass(frozen=True)
class RecurrentOptions:
    """A recurrent module's settings, given once; see the modules' docstrings for each one.

    ``kind`` names a cell kind of the registry (:data:`~rnnjax._src.registry.CELL_KINDS`) and
    ``cell_settings`` holds that kind's own settings (``activation``, ``reset_after``) as
    ``(name, value)`` pairs.
    """

    kind: str
    features: int
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    num_layers: int = 1
    stack_dropout: float = 0.0
    unroll: int | bool = 1
    remat: bool | Literal["segments"] = False
    initializer: str = "keras"
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32
    fused_backward: bool | None = None  # deprecated, no effect
    hoist_projection: bool | None = None
    cell_settings: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if (
            isinstance(self.num_layers, bool)
            or not isinstance(self.num_layers, int)
            or self.num_layers < 1
        ):
            raise ValueError(f"num_layers must be a positive int; got {self.num_layers!r}")
        unknown = set(dict(self.cell_settings)) - set(CELL_KINDS[self.kind].settings)
        if unknown:
            raise TypeError(f"a {self.kind} module takes no setting {sorted(unknown)}")

    def cell(self) -> Cell:
        """The functional cell, e.g. ``rnnjax.lstm(features, initializer=...)``."""
        settings = dict(self.cell_settings)
        return make_cell(self.kind, self.features, initializer=self.initializer, **settings)

    def initial_carry(self, input_shape: tuple[int, ...], params: Params | None = None) -> Carry:
        """The zero carry for inputs ``[*batch, features_in]`` of shape ``input_shape``: the
        cell's ``initial_carry`` on ``params`` (before ``init``, on their shapes), in the
        params' dtype."""
        batch = tuple(input_shape[:-1])
        if params is None:
            params = jax.eval_shape(lambda: self.init(jax.random.key(0), input_shape[-1]))
        carry = jax.eval_shape(lambda p: self.cell().initial_carry(p, batch), params)
        return jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), carry)

    def step(self, params: Params, carry: Carry, x: Array, *, where: str) -> tuple[Carry, Array]:
        """One time step, ``cell.step(params, carry, x)``, as :meth:`layer` computes each step:
        with ``dtype`` set, ``x`` in that dtype, params cast inside the step, the carry and
        the output in the params' dtype. Arguments are checked first (at trace time), errors
        naming ``where``."""
        cell = self.cell()
        if self.dtype is None:
            return checked_step(cell, where)(params, carry, x)
        batch = tuple(jnp.shape(x)[:-1])
        state = jax.eval_shape(lambda: cell.initial_carry(params, batch))
        carry = check_carry(carry, state, where, "carry")
        carry = jax.tree.map(lambda c, like: jnp.asarray(c, like.dtype), carry, state)
        run = with_compute_dtype(cell, jnp.dtype(self.dtype))
        new, y = checked_step(run, where)(params, carry, jnp.asarray(x).astype(self.dtype))
        new = jax.tree.map(lambda c, like: c.astype(like.dtype), new, state)
        return new, y.astype(cell.output(state).dtype)

    def layer(self) -> Layer:
        """The functional layer the module runs: ``rnnjax.layer`` (stacked for ``num_layers>1``)."""
        single = make_layer(
            self.cell(),
            reverse=self.go_backwards,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            unroll=self.unroll,
            remat=self.remat,
            compute_dtype=self.dtype,
            fused_backward=self.fused_backward,
            hoist_projection=self.hoist_projection,
        )
        if self.num_layers == 1:
            return single
        return make_stack(*(single,) * self.num_layers, dropout=self.stack_dropout)

    @property
    def uses_key(self) -> bool:
        """Whether training (``deterministic=False``) draws dropout masks."""
        stacked = self.num_layers > 1 and self.stack_dropout > 0
        return self.dropout > 0 or self.recurrent_dropout > 0 or stacked

    def init(self, key: Array, input_size: int) -> Params:
        """``layer().init`` with every array cast to ``param_dtype``."""
        params = self.layer().init(key, input_size)
        return jax.tree.map(lambda a: a.astype(self.param_dtype), params)

    def last_output(self, carry: Carry) -> Array:
        """The top layer's hidden state in a final carry (one carry per layer when stacked)."""
        return self.cell().output(carry[-1] if self.num_layers > 1 else carry)

    def __call__(
        self,
        params: Params,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        key: Array | None = None,
        deterministic: bool = True,
    ) -> Any:
        """The layer's ``apply``, returned as Keras returns it (see the modules' docstrings)."""
        final, ys = self.layer().apply(
            params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=deterministic,
        )
        if self.return_sequences:
            outputs = processing_order(ys, seq_lengths) if self.go_backwards else ys
        else:
            outputs = self.last_output(final)
        return (outputs, final) if self.return_state else outputs


def bidirectional_call(
    forward: RecurrentOptions,
    backward: RecurrentOptions,
    merge: str,
    params: BidirectionalParams,
    xs: Array,
    *,
    seq_lengths: Array | None = None,
    initial_carry: tuple[Carry, Carry] | None = None,
    key: Array | None = None,
    deterministic: bool = True,
) -> Any:
    """``rnnjax.bidirectional(forward.layer(), backward.layer())``, returned as Keras does.

    ``return_sequences`` and ``return_state`` are the forward options' (Keras takes them from
    the wrapped layer). Sequences come at their original positions in both directions; the
    last output merges each direction's output at its last step processed (the forward's at
    the last valid step, the backward's at step 0). The state is the pair of final carries.
    """
    check_merge("Bidirectional", merge)
    final, ys = bidirectional(forward.layer(), backward.layer(), merge=merge).apply(
        params,
        xs,
        seq_lengths=seq_lengths,
        initial_carry=initial_carry,
        key=key,
        deterministic=deterministic,
    )
    if forward.return_sequences:
        outputs = ys
    else:
        last = (forward.last_output(final[0]), backward.last_output(final[1]))
        outputs = merge_outputs(merge, *last)
    return (outputs, final) if forward.return_state else outputs
