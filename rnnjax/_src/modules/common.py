"""What the Flax modules (:mod:`rnnjax.nnx`, :mod:`rnnjax.linen`) share.

The modules are thin shells over one :class:`Recurrent`: a cell (any :class:`~rnnjax.Cell`)
and its checked :class:`~rnnjax._src.core.settings.ModuleSettings`. It builds the functional
layer (``rnnjax.layer``'s, stacked for ``num_layers > 1``, paired by ``Bidirectional``),
checks a call's arguments under the module's name, and shapes ``(final_carry, ys)`` into what
Keras returns. The step modules run one time step through the same cell's ``step``
(:meth:`Recurrent.step`). Both APIs call exactly these functions, so a module's output is the
functional layer's, bit for bit.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp

from rnnjax._src.cells.derived import with_compute_dtype
from rnnjax._src.cells.registry import CELL_KINDS, make_cell
from rnnjax._src.core.checks import check_carry, check_seq_lengths, checked_step
from rnnjax._src.core.contract import Carry, Cell, Layer, Params
from rnnjax._src.core.settings import ModuleSettings, module_settings
from rnnjax._src.core.validate import check_bool, check_cell, check_choice, check_int
from rnnjax._src.layers.compose import (
    BidirectionalParams,
    bidirectional,
    check_merge,
    merge_outputs,
)
from rnnjax._src.layers.compose import stack as make_stack
from rnnjax._src.layers.layer import CUDNN_LAYERS, apply_layer
from rnnjax._src.scan.cudnn import check_backend_inputs
from rnnjax._src.scan.driver import check_capabilities, check_xs

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


def kind_cell(
    where: str, kind: str, features: Any, initializer: Any, settings: dict[str, Any]
) -> tuple[Cell, dict[str, Any]]:
    """A named module's cell, ``CELL_KINDS[kind].make(features, ...)``, from ``settings``'
    entries that are the kind's own (``reset_after``, ``activation``); returns the cell and
    the remaining (module) settings."""
    features = check_int(where, "features", features)
    if initializer is not None:  # None: the kind's own default ("keras" for most)
        check_choice(where, "initializer", initializer, ("keras", "torch", "flax"))
        settings = {**settings, "initializer": initializer}
    own = (*CELL_KINDS[kind].setting_names, "initializer")
    cell_settings = {name: settings[name] for name in own if name in settings}
    rest = {name: value for name, value in settings.items() if name not in own}
    try:
        cell = make_cell(kind, features, **cell_settings)
    except (TypeError, ValueError) as error:  # the factory's message, under the module's name
        message = str(error).removeprefix(f"rnnjax.{kind}: ")
        raise type(error)(f"{where}: {message}") from None
    return cell, rest


def kind_signature(init: Any, kind: str) -> inspect.Signature:
    """The signature of a named nnx module of ``kind``: ``init``'s (less ``self``) with the
    kind's own settings (from its registry entry) as keyword-only parameters before the
    ``**`` catch-all, so ``help`` and ``inspect`` show them with their defaults."""
    parameters = list(inspect.signature(init).parameters.values())[1:]
    catch_all = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    named = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD]
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in CELL_KINDS[kind].settings]
    return inspect.Signature([*named, *own, *catch_all])


@dataclasses.dataclass(frozen=True)
class Recurrent:
    """A module's cell and settings, checked once at construction under ``where``."""

    cell: Cell
    settings: ModuleSettings
    where: str

    @classmethod
    def make(cls, where: str, cell: Any, settings: dict[str, Any], preset: Any = None) -> Recurrent:
        """Checks ``cell`` and the settings: given by name (``settings``), or as a
        :class:`~rnnjax.ModuleSettings` (``preset``, the modules' ``settings=``)."""
        cell = check_cell(where, cell)
        checked = module_settings(where, settings_by_name(where, preset, settings))
        if checked.recurrent_dropout > 0 and cell.projection is None:
            raise ValueError(
                f"{where}: recurrent_dropout needs a cell with a recurrent matmul to drop into"
                " (the `projection` capability); this cell has none (use dropout)"
            )
        check_capabilities(where, cell, checked.layer_settings())
        return cls(cell, checked, where)

    def flipped(self) -> Recurrent:
        """The same module reading the other way (``Bidirectional``'s backward layer)."""
        settings = dataclasses.replace(self.settings, go_backwards=not self.settings.go_backwards)
        return dataclasses.replace(self, settings=settings)

    def layer(self) -> Layer:
        """The functional layer the module runs (stacked for ``num_layers > 1``)."""
        cell, settings = self.cell, self.settings.layer_settings()

        def apply(params: Params, xs: Array, **kwargs: Any) -> tuple[Carry, Array]:
            return apply_layer(cell, settings, params, xs, **kwargs)

        if settings.backend == "cudnn":  # stacks and pairs of these run as one cuDNN call
            CUDNN_LAYERS[apply] = (cell, settings)

        def flip() -> Layer:
            return self.flipped().layer()

        single = Layer(lambda key, size: cell.init(key, size), apply, flip)
        if self.settings.num_layers == 1:
            return single
        layers = (single,) * self.settings.num_layers
        return make_stack(*layers, dropout=self.settings.stack_dropout)

    def init(self, key: Array, input_size: Any) -> Params:
        """``layer().init`` with every array cast to ``param_dtype``."""
        size = check_int(self.where, "in_features (the input size)", input_size)
        params = self.layer().init(key, size)
        return jax.tree.map(lambda a: a.astype(self.settings.param_dtype), params)

    def bottom(self, params: Params) -> Params:
        """The params of the layer that reads ``xs`` (the first of a stack)."""
        return params[0] if self.settings.num_layers > 1 else params

    def last_output(self, carry: Carry) -> Array:
        """The top layer's hidden state in a final carry (one carry per layer when stacked)."""
        return self.cell.output(carry[-1] if self.settings.num_layers > 1 else carry)

    def check_call(
        self,
        params: Params,
        xs: Any,
        seq_lengths: Any,
        deterministic: Any,
        initial_carry: Any = None,
    ) -> bool:
        """A call's checks, under the module's name; returns ``deterministic``."""
        time, batch = check_xs(self.cell, self.bottom(params), xs, False, self.where)
        settings = self.settings.layer_settings()
        check_backend_inputs(self.where, settings, params, xs, initial_carry=None)
        if seq_lengths is not None:
            check_seq_lengths(seq_lengths, batch, time, self.where)
        if initial_carry is not None:
            self.check_initial_carry(params, batch, initial_carry)
        return check_bool(self.where, "deterministic", deterministic)

    def check_initial_carry(
        self, params: Params, batch: tuple[int, ...], carry: Any, argument: str = "initial_carry"
    ) -> None:
        """``carry`` has the structure, shapes and dtypes of the module's final carry (a
        tuple with one per layer when stacked), checked under the module's name."""
        depth = self.settings.num_layers
        if depth == 1:
            expected = jax.eval_shape(lambda: self.cell.initial_carry(params, batch))
            check_carry(carry, expected, self.where, argument)
            return
        if type(carry) not in (tuple, list) or len(carry) != depth:
            raise ValueError(
                f"{self.where}: {argument} must be a tuple with one carry per layer"
                f" (num_layers={depth}); got {jax.tree.structure(carry)}"
            )
        for index, (layer_carry, layer_params) in enumerate(zip(carry, params, strict=True)):
            expected = jax.eval_shape(lambda p=layer_params: self.cell.initial_carry(p, batch))
            check_carry(layer_carry, expected, self.where, f"{argument}[{index}]")

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
            jnp.asarray(xs),
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=deterministic,
        )
        settings = self.settings
        if settings.return_sequences:
            outputs = processing_order(ys, seq_lengths) if settings.go_backwards else ys
        else:
            outputs = self.last_output(final)
        return (outputs, final) if settings.return_state else outputs

    def initial_carry(self, input_shape: tuple[int, ...], params: Params | None = None) -> Carry:
        """The zero carry for inputs ``[*batch, features_in]`` of shape ``input_shape``: the
        cell's ``initial_carry`` on ``params`` (before ``init``, on their shapes)."""
        batch = tuple(input_shape[:-1])
        if params is None:
            params = jax.eval_shape(lambda: self.init(jax.random.key(0), input_shape[-1]))
        carry = jax.eval_shape(lambda p: self.cell.initial_carry(p, batch), params)
        return jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), carry)

    def step(self, params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """One time step, ``cell.step(params, carry, x)``, as :meth:`layer` computes each step:
        with ``dtype`` set, ``x`` in that dtype, params cast inside the step, the carry and
        the output in the params' dtype. Arguments are checked first (at trace time)."""
        cell, dtype = self.cell, self.settings.dtype
        if dtype is None:
            return checked_step(cell, self.where)(params, carry, x)
        batch = tuple(jnp.shape(x)[:-1])
        state = jax.eval_shape(lambda: cell.initial_carry(params, batch))
        carry = check_carry(carry, state, self.where, "carry")
        run = with_compute_dtype(cell, jnp.dtype(dtype))
        new, y = checked_step(run, self.where)(params, carry, jnp.asarray(x).astype(dtype))
        new = jax.tree.map(lambda c, like: c.astype(like.dtype), new, state)
        return new, y.astype(cell.output(state).dtype)


def settings_by_name(where: str, preset: Any, by_name: dict[str, Any]) -> dict[str, Any]:
    """The module settings by name: ``by_name``, or the fields of ``preset`` (a
    :class:`~rnnjax.ModuleSettings`) when one is given; never both."""
    if preset is None:
        return by_name
    if not isinstance(preset, ModuleSettings):
        raise TypeError(
            f"{where}: settings must be a rnnjax.ModuleSettings; got {type(preset).__name__}"
        )
    if by_name:
        raise TypeError(
            f"{where}: give the settings either as settings=rnnjax.ModuleSettings(...) or by"
            f" name, not both; got settings= and {sorted(by_name)}"
        )
    return {f.name: getattr(preset, f.name) for f in dataclasses.fields(preset)}


def check_bidirectional_carry(
    where: str, pair: tuple[Recurrent, Recurrent], params: Any, xs: Any, carry: Any
) -> None:
    """A ``Bidirectional`` call's ``initial_carry``: a ``(forward, backward)`` pair, each
    checked as its direction's module checks it, under ``where``."""
    if type(carry) not in (tuple, list) or len(carry) != 2:
        raise ValueError(
            f"{where}: initial_carry must be a pair (forward, backward); got"
            f" {jax.tree.structure(carry)}"
        )
    batch = tuple(jnp.shape(xs)[:-2])
    for direction, recurrent, direction_params, direction_carry in zip(
        ("forward", "backward"), pair, params, carry, strict=True
    ):
        named = dataclasses.replace(recurrent, where=where)
        named.check_initial_carry(
            direction_params, batch, direction_carry, f"initial_carry ({direction})"
        )


def bidirectional_call(
    forward: Recurrent,
    backward: Recurrent,
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

    ``return_sequences`` and ``return_state`` are the forward settings' (Keras takes them from
    the wrapped layer). Sequences come at their original positions in both directions; the
    last output merges each direction's output at its last step processed (the forward's at
    the last valid step, the backward's at step 0). The state is the pair of final carries.
    """
    check_merge(forward.where, merge)
    final, ys = bidirectional(forward.layer(), backward.layer(), merge=merge).apply(
        params,
        xs,
        seq_lengths=seq_lengths,
        initial_carry=initial_carry,
        key=key,
        deterministic=deterministic,
    )
    if forward.settings.return_sequences:
        outputs = ys
    else:
        last = (forward.last_output(final[0]), backward.last_output(final[1]))
        outputs = merge_outputs(merge, *last)
    return (outputs, final) if forward.settings.return_state else outputs
