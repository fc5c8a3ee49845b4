"""``rg_lru(..., document_starts="recurrentgemma")`` against a float64 NumPy transcription of
recurrentgemma's ``RGLRU`` layer with segment positions (``recurrentgemma/jax/layers.py``:
``reset = segment_pos == 0``, ``multiplier = reset + ~reset * sqrt(1 - a^2)``, and its
``rnn_scan``, ``h_t = a_t * ~reset_t * h_{t-1} + normalized_x_t``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnjax
import rnnjax.nnx
from tests import reference

WIDTH, HEADS, BATCH, TIME = 4, 2, 3, 7


def recurrentgemma_tree(seed=0):
    """recurrentgemma's RGLRU(width=4, num_heads=2) params, exact in float32."""
    rng = np.random.default_rng(seed)
    block = (HEADS, WIDTH // HEADS)
    tree = {
        "a_param": rng.normal(size=WIDTH),
        "input_gate": {"w": rng.normal(size=(*block, block[1])), "b": rng.normal(size=block)},
        "a_gate": {"w": rng.normal(size=(*block, block[1])), "b": rng.normal(size=block)},
    }
    return jax.tree.map(lambda a: a.astype(np.float32).astype(np.float64), tree)


def block_linear(block, x):
    """recurrentgemma's ``BlockDiagonalLinear``: ``x [..., W]`` in heads."""
    heads = x.reshape(*x.shape[:-1], HEADS, WIDTH // HEADS)
    return (np.einsum("...hi,hij->...hj", heads, block["w"]) + block["b"]).reshape(x.shape)


def recurrentgemma_rg_lru(tree, x, segment_pos, prev_h=None, starts_scaled=False):
    """recurrentgemma's ``RGLRU.__call__`` in float64: ``x [B, T, W]``, ``segment_pos [B, T]``,
    the cache ``prev_h [B, W]`` (``None``: zeros). ``starts_scaled``: rnnjax's default rule
    instead, every step normalised and a reset only zeroing the state."""
    reset = (segment_pos == 0)[..., None]
    gate_x = reference.sigmoid(block_linear(tree["input_gate"], x))
    gate_a = reference.sigmoid(block_linear(tree["a_gate"], x))
    log_a = -8.0 * gate_a * np.logaddexp(0, tree["a_param"])
    a, a_square = np.exp(log_a), np.exp(2 * log_a)
    multiplier = np.sqrt(1 - a_square)
    if not starts_scaled:
        multiplier = reset + ~reset * multiplier
    normalized_x = (x * gate_x) * multiplier
    h = np.zeros(x[:, 0].shape) if prev_h is None else prev_h
    ys = []
    for t in range(x.shape[1]):  # rnn_scan: a is zeroed at a reset
        h = a[:, t] * ~reset[:, t] * h + normalized_x[:, t]
        ys.append(h)
    return np.stack(ys, axis=1), h


def packed_segments():
    """Segment positions of packed documents: each row starts a document at step 0."""
    return np.array([[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 0, 1, 0, 1], [0, 0, 1, 2, 3, 0, 1]])


def rnnjax_inputs(seed=1):
    x = np.random.default_rng(seed).normal(size=(BATCH, TIME, WIDTH))
    return x.astype(np.float32).astype(np.float64)


STARTS = rnnjax.rg_lru(WIDTH, document_starts="recurrentgemma")


@pytest.mark.parametrize("parallel", [True, False])
def test_recurrentgemma_rule_equals_the_original_with_resets_from_a_fresh_start(parallel):
    tree, x, segment_pos = recurrentgemma_tree(), rnnjax_inputs(), packed_segments()
    params = rnnjax.interop.rg_lru_params_from_recurrentgemma(jax.tree.map(jnp.asarray, tree))
    want, want_final = recurrentgemma_rg_lru(tree, x, segment_pos)
    final, ys = rnnjax.rnn(
        STARTS, params, jnp.asarray(x, jnp.float32), resets=jnp.asarray(segment_pos == 0),
        parallel=parallel,
    )  # fmt: skip
    np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final, want_final, rtol=1e-5, atol=1e-6)
    # from a fresh start, the first step is a document start without resets too
    _, first = rnnjax.rnn(STARTS, params, jnp.asarray(x[:1], jnp.float32), parallel=parallel)
    np.testing.assert_allclose(first, want[:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("parallel", [True, False])
def test_a_given_carry_continues_a_document_and_lengths_stop_it(parallel):
    """With ``initial_carry`` (recurrentgemma's cache, segment positions going on) the first
    step is ordinary; ``seq_lengths`` end each row where the reference is cut."""
    tree, x = recurrentgemma_tree(), rnnjax_inputs()
    params = rnnjax.interop.rg_lru_params_from_recurrentgemma(jax.tree.map(jnp.asarray, tree))
    cache = np.random.default_rng(2).normal(size=(BATCH, WIDTH)).astype(np.float32)
    segment_pos = np.array(
        [[5, 6, 7, 0, 1, 2, 3], [9, 10, 11, 12, 13, 14, 15], [3, 0, 1, 2, 3, 4, 5]]
    )
    lengths = np.array([7, 4, 2])
    final, ys = rnnjax.rnn(
        STARTS, params, jnp.asarray(x, jnp.float32), initial_carry=jnp.asarray(cache),
        resets=jnp.asarray(segment_pos == 0), seq_lengths=jnp.asarray(lengths),
        parallel=parallel,
    )  # fmt: skip
    for b, n in enumerate(lengths):
        want, want_final = recurrentgemma_rg_lru(
            tree, x[b : b + 1, :n], segment_pos[b : b + 1, :n], prev_h=cache[b : b + 1]
        )
        np.testing.assert_allclose(ys[b, :n], want[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0)
        np.testing.assert_allclose(final[b], want_final[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("parallel", [True, False])
def test_reverse_starts_each_row_at_its_last_valid_step(parallel):
    tree, x = recurrentgemma_tree(), rnnjax_inputs()
    params = rnnjax.interop.rg_lru_params_from_recurrentgemma(jax.tree.map(jnp.asarray, tree))
    lengths = np.array([7, 4, 1])
    final, ys = rnnjax.rnn(
        STARTS, params, jnp.asarray(x, jnp.float32), seq_lengths=jnp.asarray(lengths),
        reverse=True, parallel=parallel,
    )  # fmt: skip
    for b, n in enumerate(lengths):
        flipped = x[b : b + 1, :n][:, ::-1]
        want, want_final = recurrentgemma_rg_lru(tree, flipped, np.arange(n)[None])
        np.testing.assert_allclose(ys[b, :n], want[0, ::-1], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(final[b], want_final[0], rtol=1e-5, atol=1e-6)


def test_the_default_scales_every_step_and_differs_at_starts():
    tree, x, segment_pos = recurrentgemma_tree(), rnnjax_inputs(), packed_segments()
    params = rnnjax.interop.rg_lru_params_from_recurrentgemma(jax.tree.map(jnp.asarray, tree))
    _, ys = rnnjax.rnn(
        rnnjax.rg_lru(WIDTH), params, jnp.asarray(x, jnp.float32),
        resets=jnp.asarray(segment_pos == 0),
    )  # fmt: skip
    documented, _ = recurrentgemma_rg_lru(tree, x, segment_pos, starts_scaled=True)
    original, _ = recurrentgemma_rg_lru(tree, x, segment_pos)
    np.testing.assert_allclose(ys, documented, rtol=1e-5, atol=1e-6)
    assert np.abs(documented - original)[segment_pos == 0].max() > 0.05
    assert rnnjax.rg_lru(WIDTH) is rnnjax.rg_lru(WIDTH, document_starts="scaled")


def test_layers_in_segments_truncated_or_mixed_precision_keep_the_first_step_a_start():
    params = STARTS.init(jax.random.key(0), WIDTH)
    x = jnp.asarray(rnnjax_inputs(), jnp.float32)
    _, want = rnnjax.rnn(STARTS, params, x)
    _, segmented = rnnjax.layer(STARTS, remat="segments", segment_length=3).apply(params, x)
    _, truncated = rnnjax.tbptt(rnnjax.layer(STARTS), params, x, chunk_length=3)
    np.testing.assert_allclose(segmented, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(truncated, want, rtol=1e-6, atol=1e-7)
    mixed = rnnjax.layer(STARTS, compute_dtype=jnp.bfloat16)
    final, ys = mixed.apply(params, x)
    assert final.dtype == ys.dtype == jnp.float32
    np.testing.assert_allclose(ys, want, atol=3e-2)  # bfloat16 matmuls; the start kept
    _, scaled = rnnjax.rnn(rnnjax.rg_lru(WIDTH), params, x)
    assert np.abs(np.asarray(scaled - want))[:, 0].max() > 0.1


def test_a_module_over_the_cell_follows_the_rule():
    module = rnnjax.nnx.RNN(STARTS, WIDTH, return_sequences=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(rnnjax_inputs(), jnp.float32)
    _, want = rnnjax.rnn(STARTS, module.params, x)
    np.testing.assert_array_equal(module(x), want)
    _, scaled = rnnjax.rnn(rnnjax.rg_lru(WIDTH), module.params, x)
    assert not np.allclose(module(x)[:, 0], scaled[:, 0])


def test_an_unknown_rule_is_refused_by_name():
    with pytest.raises(ValueError, match=r"rnnjax.rg_lru: document_starts must be one of"):
        rnnjax.rg_lru(4, document_starts="griffin")
