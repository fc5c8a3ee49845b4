"""Flax linen modules over rnnjax's layers: ``SimpleRNN``, ``LSTM``, ``GRU``, ``Bidirectional``.

Thin shells: a module's ``params`` collection holds the same NamedTuples the cells' ``init``
returns (``{"cell": LSTMParams(...)}``; ``{"forward": ..., "backward": ...}`` for
``Bidirectional``; a tuple of NamedTuples for ``num_layers > 1``), and a call runs
:func:`rnnjax.layer` (:func:`rnnjax.stack`, :func:`rnnjax.bidirectional`) on them, so its
output equals the functional call on those params, bit for bit. The input size is found at
``init`` from ``xs``.

A call returns what Keras returns, exactly as :mod:`rnnjax.nnx` describes: the last output
(each sequence's output at its last valid step under ``seq_lengths``; the output after step 0
with ``go_backwards``), or with ``return_sequences=True`` all outputs (in processing order
with ``go_backwards``: entry ``k`` of sequence ``b`` is the output at position
``len[b] - 1 - k``, zeros for ``k >= len[b]``), and with ``return_state=True`` the pair
``(outputs, final_carry)``.

Randomness the linen way: dropout is on when ``deterministic=False`` (a module attribute or
a call argument, exactly one of them, as for :class:`flax.linen.Dropout`; only needed when
some dropout rate is positive) and draws its masks from the ``'dropout'`` rng:
``model.apply(variables, xs, rngs={"dropout": key})``.

Functional and converted params (``rnnjax.interop.from_torch``, ``from_keras``) load by
building the variables: ``{"params": {"cell": params}}`` (:func:`variables_from`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.typing import DTypeLike

from rnnjax._src.compose import BidirectionalParams, check_merge
from rnnjax._src.contract import Carry, Params
from rnnjax._src.modules_common import RecurrentOptions, bidirectional_call
from rnnjax._src.registry import CELL_KINDS

Array = jax.Array

__all__ = ("GRU", "LSTM", "Bidirectional", "MinGRU", "MinLSTM", "SimpleRNN", "variables_from")


def variables_from(params: Params) -> dict[str, Any]:
    """Linen variables holding functional or converted ``params``.

    A cell's NamedTuple, or a tuple of them for ``num_layers > 1``, gives a
    :class:`SimpleRNN`'s, :class:`LSTM`'s or :class:`GRU`'s variables; a
    :class:`~rnnjax.BidirectionalParams` gives a :class:`Bidirectional`'s (wrap the
    ``(forward, backward)`` pair of ``rnnjax.interop.from_keras`` in it).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.linen
      >>> params = rnnjax.gru(8).init(jax.random.key(0), 3)
      >>> rnnjax.linen.GRU(8).apply(rnnjax.linen.variables_from(params), jnp.ones((2, 5, 3))).shape
      (2, 8)
    """
    if isinstance(params, BidirectionalParams):
        return {"params": {"forward": params.forward, "backward": params.backward}}
    return {"params": {"cell": params}}


def _deterministic(module: nn.Module, uses_key: bool, deterministic: bool | None) -> bool:
    if not uses_key:  # nothing random: the flag changes nothing
        return True
    return bool(nn.merge_param("deterministic", module.deterministic, deterministic))


class _Recurrent(nn.Module):
    """What SimpleRNN, LSTM and GRU share; see :class:`LSTM`."""

    kind: ClassVar[str]
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
    deterministic: bool | None = None
    fused_backward: bool | None = None  # deprecated, no effect
    hoist_projection: bool | None = None

    def options(self) -> RecurrentOptions:
        """The settings as the shared helper takes them."""
        own = ("kind", "cell_settings")
        names = [f.name for f in dataclasses.fields(RecurrentOptions) if f.name not in own]
        cell_settings = tuple(
            (name, getattr(self, name)) for name in CELL_KINDS[self.kind].settings
        )
        return RecurrentOptions(
            self.kind,
            cell_settings=cell_settings,
            **{name: getattr(self, name) for name in names},
        )

    @nn.compact
    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        deterministic: bool | None = None,
    ) -> Any:
        """Runs over ``xs [*batch, time, features_in]``; returns what Keras returns."""
        options = self.options()
        params = self.param("cell", lambda key: options.init(key, jnp.shape(xs)[-1]))
        deterministic = _deterministic(self, options.uses_key, deterministic)
        key = None if deterministic else self.make_rng("dropout")
        return options(
            params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=deterministic,
        )


class SimpleRNN(_Recurrent):
    """Keras's ``SimpleRNN`` as a linen module: ``h' = activation(x W + h U + b)``.

    Attributes:
      features: hidden size ``H``.
      return_sequences, return_state, go_backwards: as Keras (module docstring).
      dropout: Keras's input dropout rate, one mask per sequence fixed over time.
      recurrent_dropout: Keras's recurrent dropout rate, on ``h`` where it enters ``U``.
      num_layers: layers stacked (PyTorch's ``num_layers``), each ``features`` wide.
      stack_dropout: dropout between stacked layers (PyTorch's ``dropout``).
      unroll, remat, fused_backward, hoist_projection: as :func:`rnnjax.layer`.
      initializer: ``"keras"``, ``"torch"`` or ``"flax"`` (see the README).
      dtype: computation dtype (``rnnjax.layer``'s ``compute_dtype``); ``None`` computes in
        ``param_dtype``.
      param_dtype: dtype of the params.
      deterministic: ``False`` turns dropout on (or pass it to the call).
      activation: default ``jnp.tanh``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> rnn = rnnjax.linen.SimpleRNN(8)
      >>> xs = jnp.ones((2, 5, 3))
      >>> variables = rnn.init(jax.random.key(0), xs)
      >>> rnn.apply(variables, xs).shape
      (2, 8)
    """

    kind: ClassVar[str] = "simple_rnn"
    activation: Callable[[Array], Array] = jnp.tanh


class LSTM(_Recurrent):
    """Keras's ``LSTM`` as a linen module (gates i, f, g, o; params :class:`~rnnjax.LSTMParams`).

    Attributes: as :class:`SimpleRNN` (no ``activation``).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.linen
      >>> lstm = rnnjax.linen.LSTM(8, return_sequences=True, dropout=0.2)
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 2])
      >>> variables = lstm.init(jax.random.key(0), xs, deterministic=True)
      >>> ys = lstm.apply(variables, xs, seq_lengths=lengths, deterministic=True)
      >>> _, want = rnnjax.rnn(rnnjax.lstm(8), variables["params"]["cell"], xs, seq_lengths=lengths)
      >>> bool((ys == want).all())
      True
      >>> rngs = {"dropout": jax.random.key(1)}
      >>> ys_train = lstm.apply(variables, xs, deterministic=False, rngs=rngs)
    """

    kind: ClassVar[str] = "lstm"


class GRU(_Recurrent):
    """Keras's ``GRU`` as a linen module (gates r, z, n; params :class:`~rnnjax.GRUParams`).

    Attributes: as :class:`SimpleRNN` (no ``activation``), and ``reset_after``: ``True``
    (Keras's default, PyTorch's and cuDNN's form) or ``False``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> gru = rnnjax.linen.GRU(8, return_state=True)
      >>> xs = jnp.ones((2, 5, 3))
      >>> last, h = gru.apply(gru.init(jax.random.key(0), xs), xs)
      >>> bool((last == h).all())
      True
    """

    kind: ClassVar[str] = "gru"
    reset_after: bool = True


class MinGRU(_Recurrent):
    """:func:`rnnjax.min_gru` as a linen module, run in parallel over time.

    Attributes: as :class:`LSTM`; ``recurrent_dropout`` is refused (its gates never read ``h``).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> model = rnnjax.linen.MinGRU(8, num_layers=2)
      >>> xs = jnp.ones((2, 50, 3))
      >>> model.apply(model.init(jax.random.key(0), xs), xs).shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTM(_Recurrent):
    """:func:`rnnjax.min_lstm` as a linen module; as :class:`MinGRU`."""

    kind: ClassVar[str] = "min_lstm"


class Bidirectional(nn.Module):
    """Keras's ``Bidirectional``: the wrapped layer forward, a copy with its own params backward.

    The backward direction has the wrapped layer's settings with ``go_backwards`` flipped and
    runs through :func:`rnnjax.bidirectional`: under ``seq_lengths`` it reads each sequence's
    valid part from its last valid step back to step 0, outputs at their original positions.
    ``return_sequences``, ``return_state``, the dropout rates and ``deterministic`` are the
    wrapped layer's. Without ``return_sequences`` the output merges each direction's last
    output (forward: at the last valid step; backward: at step 0); the state is the pair
    ``(forward carry, backward carry)``. Params: ``{"forward": ..., "backward": ...}``.

    Attributes:
      layer: a :class:`SimpleRNN`, :class:`LSTM` or :class:`GRU` (its settings only are used).
      merge: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or ``"none"`` (a pair).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> bi = rnnjax.linen.Bidirectional(rnnjax.linen.GRU(8, return_sequences=True))
      >>> xs = jnp.ones((2, 5, 3))
      >>> bi.apply(bi.init(jax.random.key(0), xs), xs, seq_lengths=jnp.array([5, 3])).shape
      (2, 5, 16)
    """

    layer: _Recurrent
    merge: str = "concat"

    @nn.compact
    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: tuple[Carry, Carry] | None = None,
        deterministic: bool | None = None,
    ) -> Any:
        """Runs both directions over ``xs [*batch, time, features_in]``."""
        check_merge("Bidirectional", self.merge)
        forward = self.layer.options()
        backward = dataclasses.replace(forward, go_backwards=not forward.go_backwards)
        size = jnp.shape(xs)[-1]
        params = BidirectionalParams(
            self.param("forward", lambda key: forward.init(key, size)),
            self.param("backward", lambda key: backward.init(key, size)),
        )
        deterministic = _deterministic(self.layer, forward.uses_key, deterministic)
        key = None if deterministic else self.make_rng("dropout")
        return bidirectional_call(
            forward,
            backward,
            self.merge,
            params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=deterministic,
        )
