"""Vocabulary matrices read in row slices give the same results as the whole matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gguftools.container import open_gguf
from gguftools.model import vocab
from gguftools.model.qwen35 import Qwen35Model
from gguftools.model.vocab import VocabMatrix
from gguftools.model.weights import GGUFWeights

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(params=["qwen35-mtp-post.f32.gguf", "qwen35-mtp-post.q8_0.gguf"])
def weights(request):
    with open_gguf(FIXTURES / request.param) as model:
        yield GGUFWeights(model)


@pytest.fixture()
def small_slices(monkeypatch):
    # 128-wide rows of 512 bytes: 100 rows per slice, so the 1536-token vocabulary takes 16 slices
    monkeypatch.setattr(vocab, "CHUNK_BYTES", 100 * 128 * 4)


def test_gather_matches_full_matrix(weights, small_slices):
    matrix = VocabMatrix(weights, "token_embd.weight", 128)
    assert matrix.chunk_rows == 100
    full = weights.tensor("token_embd.weight")
    tokens = np.array([0, 1535, 99, 100, 7, 7, 1200])
    np.testing.assert_array_equal(matrix[tokens], full[tokens])


def test_top_tokens_match_full_argmax(weights, small_slices):
    matrix = VocabMatrix(weights, "output.weight", 128)
    x = np.random.default_rng(0).standard_normal((50, 128)).astype(np.float32)
    expected = (x @ weights.tensor("output.weight").T).argmax(axis=-1)
    np.testing.assert_array_equal(matrix.top_tokens(x), expected)


def test_forward_windows_matches_forward(weights, small_slices):
    net = Qwen35Model(weights)
    tokens = np.load(FIXTURES / "reference.npz")["sample_tokens"][:200]
    windows = [tokens[:64], tokens[64:128], tokens[128:131]]
    states = net.forward_windows(windows)
    for window, state in zip(windows, states):
        single = net.forward(window)
        np.testing.assert_allclose(state.hidden_pre_norm, single.hidden_pre_norm, atol=1e-5)
        np.testing.assert_allclose(state.hidden_post_norm, single.hidden_post_norm, atol=1e-5)
        np.testing.assert_array_equal(state.top_tokens, single.logits.argmax(axis=-1))


def test_lazy_head_matches_loaded_head(weights, small_slices):
    net = Qwen35Model(weights)
    tokens = np.load(FIXTURES / "reference.npz")["sample_tokens"][:65]
    trunk = net.forward(tokens[:64])
    loaded = net.load_mtp_head()
    lazy = net.load_mtp_head(lazy_vocab=True)
    expected = loaded.logits(trunk.hidden_post_norm, tokens[1:65]).argmax(axis=-1)
    drafts = lazy.output.top_tokens(lazy.final_hidden(trunk.hidden_post_norm, tokens[1:65]))
    np.testing.assert_array_equal(drafts, expected)


def test_wrong_width_is_model_error(weights):
    with pytest.raises(Exception, match="expected \\[any, 64\\]"):
        VocabMatrix(weights, "token_embd.weight", 64)


def test_prefetch_serves_later_lookups(weights, small_slices, monkeypatch):
    matrix = VocabMatrix(weights, "token_embd.weight", 128)
    full = weights.tensor("token_embd.weight")
    matrix.prefetch(np.array([5, 900, 5, 1400]))
    monkeypatch.setattr(matrix, "slices", lambda: pytest.fail("read the file again"))
    np.testing.assert_array_equal(matrix[np.array([900, 5, 1400, 900])], full[[900, 5, 1400, 900]])


def test_lookup_outside_prefetch_reads_file(weights, small_slices):
    matrix = VocabMatrix(weights, "token_embd.weight", 128)
    matrix.prefetch(np.array([5]))
    full = weights.tensor("token_embd.weight")
    np.testing.assert_array_equal(matrix[np.array([5, 6])], full[[5, 6]])
