"""The settings of a recurrent run, each declared once.

:class:`Settings` holds what :func:`rnnjax.rnn`, :func:`rnnjax.layer` and the Flax modules
share; :class:`LayerSettings` adds what a layer knows beyond a scan (direction, compute
dtype) and :class:`ModuleSettings` what a Keras-style module adds (what it returns, stacking,
dtypes). Each is a frozen dataclass: hashable, so it can be a static argument, and checked
once by :meth:`Settings.checked` at the entry point that received it, under that entry
point's name. The linen modules' attributes and the NNX modules' keyword arguments are the
fields of :class:`ModuleSettings`, read from here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from rnnjax._src.core.validate import (
    check_bool,
    check_choice,
    check_floating_dtype,
    check_int,
    check_rate,
)

BACKENDS = ("auto", "xla", "cudnn")
"""The values of the ``backend`` setting."""


def check_unroll(where: str, unroll: Any) -> int | bool:
    """``lax.scan``'s ``unroll``: a positive int, or a bool (``True``: fully unrolled)."""
    if isinstance(unroll, bool):
        return unroll
    return check_int(where, "unroll", unroll)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """How a cell runs over a sequence; shared by :func:`rnnjax.rnn`, :func:`rnnjax.layer`
    and the modules.

    Attributes:
      unroll: passed to ``lax.scan`` (a positive int, or ``True`` for a full unroll).
      remat: ``True`` recomputes each step's activations in the backward pass, keeping only
        the carries; ``"segments"`` (layers and modules) also checkpoints the scan in
        segments of ``segment_length`` steps (memory about ``2 sqrt(T)`` carries).
      segment_length: steps per segment under ``remat="segments"``; default
        ``ceil(sqrt(time))``.
      hoist_projection: run the input projection for all steps as one matmul before the scan
        (``True``) or inside each step (``False``); ``None``: the backend's measured choice.
      parallel: for a ``linear_scan`` cell (minGRU, minLSTM), ``None``/``True`` run all steps
        at once through :func:`rnnjax.linear_recurrence`, ``False`` steps it; ``"newton"``
        solves a ``diagonal_jacobian`` cell for all steps at once by Newton's method.
      dropout: Keras's input dropout rate, one mask per sequence fixed over time.
      recurrent_dropout: Keras's recurrent dropout rate, on ``h`` where it enters the
        recurrent matmul (needs the cell's ``projection`` capability).
      backend: what runs the scan: ``"xla"`` (``lax.scan``, every device), ``"cudnn"``
        (``jax.experimental.rnn.lstm``: a plain LSTM on an NVIDIA GPU, float32, no resets,
        recurrent dropout, remat or compute dtype; asked for where it cannot serve, it
        raises naming why), or ``"auto"`` (default), which today always means ``"xla"``:
        it will choose cuDNN on a CUDA GPU once a device run has measured it faster.
    """

    unroll: int | bool = 1
    remat: bool | Literal["segments"] = False
    segment_length: int | None = None
    hoist_projection: bool | None = None
    parallel: bool | Literal["newton"] | None = None
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    backend: Literal["auto", "xla", "cudnn"] = "auto"

    def checked(self, where: str) -> Any:
        """These settings, each checked (named errors under ``where``) and normalised."""
        remat = check_choice(where, "remat", self.remat, (False, True, "segments"))
        segment_length = self.segment_length
        if segment_length is not None:
            check_int(where, "segment_length", segment_length)
            if remat != "segments":
                raise ValueError(
                    f"{where}: segment_length is used with remat='segments' only; got"
                    f" segment_length={segment_length!r} with remat={remat!r}"
                )
        return dataclasses.replace(
            self,
            unroll=check_unroll(where, self.unroll),
            hoist_projection=_optional_bool(where, "hoist_projection", self.hoist_projection),
            parallel=_parallel(where, self.parallel),
            dropout=check_rate(where, "dropout", self.dropout),
            recurrent_dropout=check_rate(where, "recurrent_dropout", self.recurrent_dropout),
            backend=check_choice(where, "backend", self.backend, BACKENDS),
            **self._checked_own(where),
        )

    def _checked_own(self, where: str) -> dict[str, Any]:
        """The subclass's own fields, checked; overridden below."""
        return {}

    def draws_masks(self, deterministic: bool) -> bool:
        """Whether a call with ``deterministic`` draws dropout masks: the one place this is
        decided (layers, stacks and modules ask here)."""
        return not deterministic and self.uses_dropout

    @property
    def uses_dropout(self) -> bool:
        return self.dropout > 0 or self.recurrent_dropout > 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerSettings(Settings):
    """:class:`Settings` plus what :func:`rnnjax.layer` adds.

    Attributes:
      reverse: run each sequence's valid part from its last valid step back to step 0,
        outputs at their original positions.
      compute_dtype: e.g. ``jnp.bfloat16`` (mixed precision); ``None`` computes in the
        params' dtype.
    """

    reverse: bool = False
    compute_dtype: DTypeLike | None = None

    def _checked_own(self, where: str) -> dict[str, Any]:
        dtype = self.compute_dtype
        return dict(
            reverse=check_bool(where, "reverse", self.reverse),
            compute_dtype=(
                None if dtype is None else check_floating_dtype(where, "compute_dtype", dtype)
            ),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModuleSettings(Settings):
    """The settings of the Flax modules: the keyword arguments of ``rnnjax.nnx.RNN``,
    ``LSTM``, ... and the keyword-only attributes of ``rnnjax.linen.RNN``, ``LSTM``, ...

    Each is checked when a module is built (linen: when it is initialised or applied), by
    name, under the module's name. Beyond those below: ``unroll``, ``remat``,
    ``segment_length``, ``hoist_projection``, ``parallel``, ``dropout``,
    ``recurrent_dropout`` and ``backend``, as :func:`rnnjax.layer` takes them (``Settings``
    in the source).

    Attributes:
      return_sequences: return all outputs ``[*batch, time, H]`` rather than the last one.
      return_state: return ``(outputs, final_carry)``.
      go_backwards: Keras's ``go_backwards``: read each sequence backwards; sequences come
        back in processing order.
      num_layers: layers stacked (PyTorch's ``num_layers``); later layers read the previous
        layer's outputs.
      stack_dropout: dropout between stacked layers (PyTorch's ``dropout``).
      dtype: the computation dtype (a layer's ``compute_dtype``); ``None``: ``param_dtype``.
      param_dtype: the params' dtype.

    Example:
      >>> import rnnjax
      >>> settings = rnnjax.ModuleSettings(return_sequences=True, dropout=0.1)
      >>> settings.checked("my_model").draws_masks(deterministic=False)
      True
      >>> rnnjax.ModuleSettings(return_sequences="no").checked("my_model")
      Traceback (most recent call last):
      TypeError: my_model: return_sequences must be True or False; got 'no' of type str
    """

    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    num_layers: int = 1
    stack_dropout: float = 0.0
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def _checked_own(self, where: str) -> dict[str, Any]:
        num_layers = check_int(where, "num_layers", self.num_layers)
        stack_dropout = check_rate(where, "stack_dropout", self.stack_dropout)
        if stack_dropout and num_layers == 1:
            raise ValueError(
                f"{where}: stack_dropout acts between stacked layers; got"
                f" stack_dropout={stack_dropout} with num_layers=1"
            )
        dtype = self.dtype
        return dict(
            return_sequences=check_bool(where, "return_sequences", self.return_sequences),
            return_state=check_bool(where, "return_state", self.return_state),
            go_backwards=check_bool(where, "go_backwards", self.go_backwards),
            num_layers=num_layers,
            stack_dropout=stack_dropout,
            dtype=None if dtype is None else check_floating_dtype(where, "dtype", dtype),
            param_dtype=check_floating_dtype(where, "param_dtype", self.param_dtype),
        )

    def layer_settings(self) -> LayerSettings:
        """The settings of each layer the module runs."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(Settings)}
        return LayerSettings(**shared, reverse=self.go_backwards, compute_dtype=self.dtype)

    @property
    def uses_dropout(self) -> bool:
        return super().uses_dropout or (self.num_layers > 1 and self.stack_dropout > 0)


def module_settings(where: str, settings: dict[str, Any]) -> ModuleSettings:
    """``ModuleSettings(**settings)``, checked; an unknown name is a ``TypeError`` that lists
    the known ones."""
    known = {f.name for f in dataclasses.fields(ModuleSettings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"{where}: unknown setting(s) {unknown}; the settings are {sorted(known)}")
    checked: ModuleSettings = ModuleSettings(**settings).checked(where)
    return checked


def _parallel(where: str, value: Any) -> bool | Literal["newton"] | None:
    if value is None:
        return None
    if isinstance(value, str) and value == "newton":
        return "newton"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(
        f"{where}: parallel must be None, True, False or 'newton'; got {value!r} of type"
        f" {type(value).__name__}"
    )


def _optional_bool(where: str, name: str, value: Any) -> bool | None:
    return None if value is None else check_bool(where, name, value)
