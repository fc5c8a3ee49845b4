"""``decode``: greedy, sampled and beam-search decoding of a step function, one jitted scan each.

The decoder is the user's ``step_fn(params, carry, tokens) -> (carry, logits)`` (an embedding,
a cell's ``step``, a dense layer). :func:`decode` runs it for ``max_length`` steps inside one
``jax.lax.scan`` under ``jax.jit``, with ``step_fn`` and the Python options static: a second
call with other params, carry or start tokens of the same shapes runs the compiled loop again.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from rnnjax._src.core.contract import Carry, Params
from rnnjax._src.decoding.checks import (
    Options,
    check_arguments,
    check_sampling_key,
    check_scale,
    check_start_range,
    check_step_fn,
    invalid_rows,
)

Array = jax.Array


class DecodeStepFn(Protocol):
    """``step_fn(params, carry, tokens [batch] int32) -> (carry, logits [batch, vocab])``."""

    def __call__(self, params: Params, carry: Carry, tokens: Array, /) -> tuple[Carry, Array]: ...


class Decoded(NamedTuple):
    """What :func:`decode` returns.

    Attributes:
      tokens: int32 ``[batch, max_length]`` (beam search: ``[batch, beam_width, max_length]``,
        best beam first), ``pad_id`` past each length.
      lengths: int32 ``[batch]`` (``[batch, beam_width]``): the number of generated tokens up
        to and including the first ``eos_id``; ``max_length`` where there is none.
      scores: float32 ``[batch]`` (``[batch, beam_width]``): the sum of the log-probabilities
        of the generated tokens (see :func:`decode` for which distribution), divided by the
        length penalty for beam search.
    """

    tokens: Array
    lengths: Array
    scores: Array


def decode(
    step_fn: DecodeStepFn,
    params: Params,
    carry: Carry,
    start_tokens: Array,
    *,
    max_length: int,
    method: Literal["greedy", "sample", "beam"] = "greedy",
    eos_id: int | None = None,
    key: Array | None = None,
    temperature: float | Array = 1.0,
    top_k: int | None = None,
    beam_width: int = 4,
    length_penalty: float | Array = 0.0,
    pad_id: int = 0,
) -> Decoded:
    """Generates up to ``max_length`` tokens from ``step_fn``: greedy, sampled or beam search.

    Each step feeds the previous token (``start_tokens`` first) to ``step_fn`` and picks the
    next from its logits. A sequence ends with its first ``eos_id`` (included in its length);
    after that its tokens are ``pad_id`` and its length and score stop changing (its carry may
    keep updating). The loop is one ``jax.lax.scan`` over ``max_length`` steps under
    ``jax.jit``, compiled once per ``step_fn``, static options and shapes: pass a ``step_fn``
    defined once (not a new lambda per call), and what changes between calls (params, the
    encoder's outputs) through ``params`` and ``carry``.

    Args:
      step_fn: ``(params, carry, tokens [batch] int32) -> (carry, logits [batch, vocab])``,
        e.g. embedding, ``cell.step`` and a dense layer. Beam search calls it under
        ``jax.vmap`` over the beams, so it sees the same shapes as in greedy decoding.
      params: any pytree, passed to ``step_fn`` unchanged.
      carry: any pytree whose leaves have the leading batch axis ``[batch, ...]``; beam
        search gathers it per beam.
      start_tokens: integer ``[batch]``, the first input token of each sequence (one leading
        batch axis: ``vmap`` ``decode`` for more).
      max_length: the number of tokens generated (the output's time axis).
      method: ``"greedy"`` (argmax), ``"sample"`` (from ``softmax(logits / temperature)``,
        restricted to the ``top_k`` largest logits when ``top_k`` is given) or ``"beam"``.
      eos_id: the end-of-sequence token; ``None``: every sequence runs ``max_length`` steps.
      key: a PRNG key; required for ``"sample"``, ignored otherwise.
      temperature: ``"sample"`` only, positive: a number, or ``[batch]`` for one temperature
        per sequence.
      top_k: ``"sample"`` only; ``None`` samples from the full distribution.
      beam_width: ``"beam"`` only: the number of hypotheses kept (and returned).
      length_penalty: ``"beam"`` only: GNMT's ``alpha`` (Wu et al. 2016); hypotheses are
        ranked by ``log p / ((5 + length) / 6) ** alpha``; 0 ranks by ``log p``.
      pad_id: the token written past each sequence's length.

    Returns:
      :class:`Decoded` ``(tokens, lengths, scores)``. ``scores``: greedy, the sum of
      ``log_softmax(logits)`` of the chosen tokens; sampling, the same under the
      temperature-adjusted distribution ``log_softmax(logits / temperature)`` before any
      top-k truncation (so ``top_k=1`` gives greedy's tokens, and at ``temperature=1`` its
      scores); beam search, ``log_softmax(logits)`` summed and divided by the length
      penalty, beams sorted best first. A finished hypothesis keeps its beam slot while it
      ranks among the best ``beam_width``.

    Raises:
      TypeError, ValueError: naming ``rnnjax.decode`` and the argument, at trace time: options
        of the wrong type or out of range (``pad_id=None``, ``temperature="hot"``, a
        ``temperature`` neither a number nor ``[batch]``), a missing or malformed key for
        sampling, ``start_tokens`` that are not ``[batch]`` integers, params or carry leaves
        that are not arrays, carry leaves without the batch axis, and a ``step_fn`` that does
        not return ``(carry, logits)`` in that order, logits ``[batch, vocab]`` real floating
        and the carry it took. Concrete values are checked too: ``temperature`` (positive),
        ``length_penalty`` (``>= 0``, finite), ``start_tokens`` in ``[0, vocab)``. Under
        ``jax.jit`` those values are traced and cannot be checked: a row with an invalid one
        gets the score NaN (with an invalid ``length_penalty``, every row).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> def step_fn(params, carry, tokens):   # a toy decoder: next token = previous + 1
      ...     logits = 5.0 * jax.nn.one_hot((tokens + 1) % 6, 6)
      ...     return carry + 1, logits
      >>> out = rnnjax.decode(step_fn, None, jnp.zeros(2), jnp.array([0, 3]),
      ...                     max_length=5, eos_id=5)
      >>> out.tokens
      Array([[1, 2, 3, 4, 5],
             [4, 5, 0, 0, 0]], dtype=int32)
      >>> out.lengths
      Array([5, 2], dtype=int32)
      >>> beams = rnnjax.decode(step_fn, None, jnp.zeros(2), jnp.array([0, 3]),
      ...                       max_length=5, eos_id=5, method="beam", beam_width=3)
      >>> beams.tokens.shape, bool((beams.tokens[:, 0] == out.tokens).all())
      ((2, 3, 5), True)
    """
    options = Options(max_length, method, eos_id, top_k, beam_width, pad_id)
    batch = check_arguments(step_fn, params, carry, start_tokens)
    key = check_sampling_key(options.method, key)
    temperature = check_scale("temperature", temperature, ((), (batch,)))
    length_penalty = check_scale("length_penalty", length_penalty, ((),))
    decoded, vocab = _decode(
        step_fn, options, params, carry, start_tokens, key, temperature, length_penalty
    )
    check_start_range(start_tokens, vocab)
    return decoded


def _decode_impl(
    step_fn: DecodeStepFn,
    options: Options,
    params: Params,
    carry: Carry,
    start_tokens: Array,
    key: Array | None,
    temperature: Array,
    length_penalty: Array,
) -> tuple[Decoded, Array]:
    """The decoded tokens, with the score NaN in rows with an invalid traced value, and the
    vocabulary size (for the eager range check of the start tokens)."""
    batch = start_tokens.shape[0]
    vocab = check_step_fn(step_fn, params, carry, batch, options)
    invalid = invalid_rows(options, start_tokens, vocab, temperature, length_penalty)
    start_tokens = start_tokens.astype(jnp.int32)
    if options.method == "beam":
        decoded = _beam_search(step_fn, options, params, carry, start_tokens, length_penalty)
        invalid = invalid[:, None]
    else:
        per_row = jnp.broadcast_to(temperature, (batch,))[:, None]
        decoded = _sequential(step_fn, options, params, carry, start_tokens, key, per_row)
    scores = jnp.where(invalid, jnp.nan, decoded.scores)
    return decoded._replace(scores=scores), jnp.asarray(vocab, jnp.int32)


_decode = jax.jit(_decode_impl, static_argnums=(0, 1))


def _sequential(
    step_fn: DecodeStepFn,
    options: Options,
    params: Params,
    carry: Carry,
    start_tokens: Array,
    key: Array | None,
    temperature: Array,
) -> Decoded:
    """Greedy decoding and sampling (``temperature [batch, 1]``): one token per sequence per
    step."""
    batch = start_tokens.shape[0]
    keys = None if key is None else jax.random.split(key, options.max_length)

    def body(state: tuple[Any, ...], key_t: Array | None) -> tuple[tuple[Any, ...], Array]:
        carry, previous, finished, lengths, scores = state
        carry, logits = step_fn(params, carry, previous)
        logits = logits.astype(jnp.float32)
        if options.method == "greedy":
            log_probs = jax.nn.log_softmax(logits, axis=-1)
            tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        else:
            assert key_t is not None
            scaled = logits / temperature
            log_probs = jax.nn.log_softmax(scaled, axis=-1)
            tokens = _sample(key_t, scaled, options.top_k)
        chosen = jnp.take_along_axis(log_probs, tokens[:, None], axis=-1)[:, 0]
        tokens = jnp.where(finished, options.pad_id, tokens)
        scores = scores + jnp.where(finished, 0.0, chosen)
        lengths = lengths + jnp.where(finished, 0, 1).astype(jnp.int32)
        if options.eos_id is not None:
            finished = finished | (tokens == options.eos_id)
        return (carry, tokens, finished, lengths, scores), tokens

    state = (
        carry,
        start_tokens,
        jnp.zeros((batch,), bool),
        jnp.zeros((batch,), jnp.int32),
        jnp.zeros((batch,), jnp.float32),
    )
    (_, _, _, lengths, scores), tokens = jax.lax.scan(body, state, keys, length=options.max_length)
    return Decoded(tokens.T, lengths, scores)


def _sample(key: Array, scaled: Array, top_k: int | None) -> Array:
    """A token per row of ``scaled [batch, vocab]`` from ``softmax(scaled)``, restricted to
    the ``top_k`` largest entries when given."""
    if top_k is None:
        return jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)
    values, indices = jax.lax.top_k(scaled, top_k)
    choice = jax.random.categorical(key, values, axis=-1)
    return jnp.take_along_axis(indices, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)


def _penalty(lengths: Array, alpha: Array) -> Array:
    """GNMT's length penalty ``((5 + length) / 6) ** alpha``."""
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** alpha


def _beam_search(
    step_fn: DecodeStepFn,
    options: Options,
    params: Params,
    carry: Carry,
    start_tokens: Array,
    alpha: Array,
) -> Decoded:
    """Beam search with one set of ``beam_width`` hypotheses, finished ones included."""
    batch, width, length = start_tokens.shape[0], options.beam_width, options.max_length
    step = jax.vmap(step_fn, in_axes=(None, 1, 1), out_axes=(1, 1))  # over the beam axis

    def gather(x: Array, beam: Array) -> Array:
        index = beam.reshape(beam.shape + (1,) * (x.ndim - 2))
        return jnp.take_along_axis(x, index, axis=1)

    def body(state: tuple[Any, ...], t: Array) -> tuple[tuple[Any, ...], None]:
        carry, previous, finished, lengths, scores, history = state
        carry, logits = step(params, carry, previous)  # logits [batch, width, vocab]
        vocab = logits.shape[-1]
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        extended = scores[..., None] + log_probs
        # A finished hypothesis has one continuation (candidate 0) that leaves it unchanged.
        stay = (jnp.arange(vocab) == 0).reshape(1, 1, vocab)
        kept = jnp.where(stay, scores[..., None], -jnp.inf)
        candidates = jnp.where(finished[..., None], kept, extended)
        candidate_lengths = jnp.where(finished, lengths, lengths + 1)[..., None]
        rank = candidates / _penalty(candidate_lengths, alpha)
        _, best = jax.lax.top_k(rank.reshape(batch, width * vocab), width)
        beam, tokens = best // vocab, (best % vocab).astype(jnp.int32)
        scores = jnp.take_along_axis(candidates.reshape(batch, width * vocab), best, axis=-1)
        was_finished = gather(finished, beam)
        tokens = jnp.where(was_finished, options.pad_id, tokens)
        lengths = gather(lengths, beam) + jnp.where(was_finished, 0, 1).astype(jnp.int32)
        history = gather(history, beam)
        history = jax.lax.dynamic_update_index_in_dim(history, tokens, t, axis=2)
        finished = was_finished
        if options.eos_id is not None:
            finished = finished | (tokens == options.eos_id)
        carry = jax.tree.map(lambda x: gather(x, beam), carry)
        return (carry, tokens, finished, lengths, scores, history), None

    beams = jax.tree.map(lambda x: jnp.repeat(x[:, None], width, axis=1), carry)
    first = jnp.full((batch, width), -jnp.inf).at[:, 0].set(0.0)  # one live hypothesis
    state = (
        beams,
        jnp.repeat(start_tokens[:, None], width, axis=1),
        jnp.zeros((batch, width), bool),
        jnp.zeros((batch, width), jnp.int32),
        first,
        jnp.full((batch, width, length), options.pad_id, jnp.int32),
    )
    state, _ = jax.lax.scan(body, state, jnp.arange(length))
    _, _, _, lengths, scores, history = state
    # The last top_k ranked the hypotheses: they are sorted best first already.
    return Decoded(history, lengths, scores / _penalty(lengths, alpha))
