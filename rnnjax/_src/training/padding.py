"""Variable-length sequences to one padded batch plus lengths (Keras's ``pad_sequences``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from rnnjax._src.core.validate import check_choice, check_int

WHERE = "rnnjax.pad_sequences"


def _lengths(sequences: Sequence[Any]) -> np.ndarray:
    """Each sequence's number of steps, int32 ``[n]``."""
    lengths = []
    for index, sequence in enumerate(sequences):
        try:
            lengths.append(len(sequence))
        except TypeError:
            raise TypeError(
                f"{WHERE}: sequences must be a list of sequences (lists or arrays of steps);"
                f" sequences[{index}] is {sequence!r} of type {type(sequence).__name__}"
            ) from None
    return np.array(lengths, np.int32)


def _steps_shape(sequences: Sequence[Any]) -> tuple[int, ...]:
    """The shape of one step, from the first non-empty sequence (``()`` for token ids)."""
    return next((np.shape(s)[1:] for s in sequences if len(s)), ())


def pad_sequences(
    sequences: Sequence[Any],
    maxlen: int | None = None,
    dtype: DTypeLike = "int32",
    padding: str = "post",
    truncating: str = "pre",
    value: Any = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pads sequences of different lengths into one batch, and returns their lengths.

    Keras's ``keras.utils.pad_sequences``, argument for argument, with one difference:
    ``padding`` defaults to ``"post"``. rnnjax's ``seq_lengths`` count valid steps from the
    start of each row, so the steps must come first and the padding after them; with Keras's
    default ``"pre"`` the padding would come first, and ``rnn(..., seq_lengths=lengths)``
    would run the cell over the padding and stop before the last real steps.

    With ``padding="pre"`` the returned ``lengths`` still count each row's real steps, which
    then sit at the row's end: they are not ``seq_lengths`` for :func:`~rnnjax.rnn` (feed such
    a batch without ``seq_lengths``, as Keras does, and the cell sees the padding first).

    Args:
      sequences: ``n`` sequences, each a list or array of ``len_i`` steps: integers (token
        ids) or arrays of one common shape ``[*features]``. Empty sequences are allowed.
      maxlen: the time axis of the result; ``None``: the longest sequence's length.
      dtype: of the padded array (``"int32"``, as Keras; ``"float32"`` for features).
      padding: ``"post"`` (pad after each sequence) or ``"pre"`` (before).
      truncating: ``"pre"`` (a sequence longer than ``maxlen`` loses its first steps, keeping
        its last ``maxlen``, as Keras) or ``"post"`` (loses its last steps).
      value: the padding value.

    Returns:
      ``(padded, lengths)``: NumPy arrays, ``padded`` ``[n, maxlen, *features]`` of ``dtype``
      and ``lengths`` int32 ``[n]``, ``min(len_i, maxlen)``.

    Raises:
      TypeError: if ``sequences`` is not a list of sequences, or ``maxlen`` is not an int.
      ValueError: for ``padding``/``truncating`` other than ``"pre"``/``"post"``, a negative
        ``maxlen``, steps whose shapes differ between sequences, or a string ``value`` for a
        numeric ``dtype``.

    Example:
      >>> import rnnjax
      >>> padded, lengths = rnnjax.pad_sequences([[1], [2, 3], [4, 5, 6, 7]], maxlen=3)
      >>> padded
      array([[1, 0, 0],
             [2, 3, 0],
             [5, 6, 7]], dtype=int32)
      >>> lengths
      array([1, 2, 3], dtype=int32)
    """
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise TypeError(
            f"{WHERE}: sequences must be a list of sequences; got {type(sequences).__name__}"
        )
    check_choice(WHERE, "padding", padding, ("post", "pre"))
    check_choice(WHERE, "truncating", truncating, ("pre", "post"))
    lengths = _lengths(sequences)
    steps_shape = _steps_shape(sequences)
    if maxlen is None:
        maxlen = int(lengths.max(initial=0))
    maxlen = check_int(WHERE, "maxlen", maxlen, minimum=0)
    if isinstance(value, str) and not np.issubdtype(dtype, np.character) and dtype is not object:
        raise ValueError(
            f"{WHERE}: value {value!r} is a string but dtype {dtype!r} is not; pass"
            " dtype=object (or a string dtype) to pad with strings"
        )
    padded = np.full((len(sequences), maxlen, *steps_shape), value, dtype=dtype)
    lengths = np.minimum(lengths, maxlen)
    for row, (sequence, length) in enumerate(zip(sequences, lengths, strict=True)):
        if not length:
            continue
        kept = sequence[-length:] if truncating == "pre" else sequence[:length]
        kept = np.asarray(kept, dtype=dtype)
        if kept.shape[1:] != steps_shape:
            raise ValueError(
                f"{WHERE}: every step must have the shape of the first non-empty sequence's"
                f" steps, {steps_shape}; sequences[{row}] has steps of shape {kept.shape[1:]}"
            )
        if padding == "post":
            padded[row, :length] = kept
        else:
            padded[row, maxlen - length :] = kept
    return padded, lengths
