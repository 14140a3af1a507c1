"""The statistics behind verify's verdict, against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gguftools.verify import (
    FeedScore,
    NormSpread,
    decide,
    mcnemar_p_value,
    paired_difference_ci,
    text_diversity,
    windows_of,
)


def test_mcnemar_small_counts():
    # 10 discordant pairs split 9 to 1: 2 * P(X <= 1) for Binomial(10, 1/2) = 2 * 11/1024
    assert mcnemar_p_value(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_p_value(1, 9) == pytest.approx(22 / 1024)


def test_mcnemar_balanced_and_empty():
    assert mcnemar_p_value(5, 5) == 1.0
    assert mcnemar_p_value(0, 0) == 1.0


def test_mcnemar_large_counts_do_not_underflow():
    p_value = mcnemar_p_value(700, 300)
    assert 0 < p_value < 1e-30
    # the normal approximation of the same test, for scale: z = 400 / sqrt(1000)
    z = 400 / math.sqrt(1000)
    assert math.log10(p_value) == pytest.approx(math.log10(math.erfc(z / math.sqrt(2))), abs=1.5)


def test_paired_difference_interval():
    first = np.array([1, 1, 1, 0, 1, 0, 1, 1], dtype=bool)
    second = np.array([0, 1, 0, 0, 1, 0, 1, 0], dtype=bool)
    mean, low, high = paired_difference_ci(first, second)
    assert mean == pytest.approx(3 / 8)
    assert low < mean < high


def test_windows_keep_partial_tail_of_three():
    tokens = np.arange(10)
    assert [len(w) for w in windows_of(tokens, 4)] == [4, 4]
    assert [len(w) for w in windows_of(np.arange(11), 4)] == [4, 4, 3]


def scores(post: float, pre: float, n: int = 1000) -> dict[str, FeedScore]:
    return {"post_norm": FeedScore("post_norm", int(post * n), n), "pre_norm": FeedScore("pre_norm", int(pre * n), n)}


UNEVEN = NormSpread(mean=1.0, std=0.6, min=0.2, max=4.0)


def test_decide_significant_post():
    verdict, strength, _ = decide(scores(0.40, 0.30), 0.10, 1e-20, {'post_norm': 0.02, 'pre_norm': 0.02}, UNEVEN, 0.01, 0.005)
    assert (verdict, strength) == ("post_norm", "strong")


def test_decide_significant_pre():
    verdict, strength, _ = decide(scores(0.30, 0.40), -0.10, 1e-4, {'post_norm': 0.02, 'pre_norm': 0.02}, UNEVEN, 0.01, 0.005)
    assert (verdict, strength) == ("pre_norm", "moderate")


def test_decide_not_significant():
    verdict, _, reason = decide(scores(0.40, 0.39), 0.01, 0.2, {'post_norm': 0.02, 'pre_norm': 0.02}, UNEVEN, 0.01, 0.005)
    assert verdict == "undetermined"
    assert "not significant" in reason


def test_decide_uniform_norm_is_undetermined():
    uniform = NormSpread(mean=1.0, std=0.001, min=0.998, max=1.002)
    verdict, _, reason = decide(scores(0.40, 0.30), 0.10, 1e-20, {'post_norm': 0.02, 'pre_norm': 0.02}, uniform, 0.01, 0.005)
    assert verdict == "undetermined"
    assert "nearly uniform" in reason


def test_decide_head_at_chance_is_undetermined():
    verdict, _, reason = decide(scores(0.03, 0.01), 0.02, 1e-8, {'post_norm': 0.03, 'pre_norm': 0.03}, UNEVEN, 0.01, 0.005)
    assert verdict == "undetermined"
    assert "does not predict this text" in reason


def test_decide_degenerate_text_is_undetermined():
    # one feed drafts a constant token that the target also repeats: its shifted control matches as often
    controls = {"post_norm": 0.0, "pre_norm": 0.96}
    verdict, _, reason = decide(scores(0.0, 0.961), -0.961, 0.0, controls, UNEVEN, 0.01, 0.005)
    assert verdict == "undetermined"
    assert "pre_norm drafts match the token one step later" in reason


def test_text_diversity_of_patterns():
    assert text_diversity(np.array([7] * 100)) == pytest.approx(1 / 97)
    assert text_diversity(np.array([1, 2] * 50)) == pytest.approx(2 / 97)
    assert text_diversity(np.arange(100)) == 1.0
    assert text_diversity(np.arange(3)) == 1.0


def test_decide_repetitive_text_is_undetermined():
    controls = {"post_norm": 0.008, "pre_norm": 0.008}
    verdict, _, reason = decide(scores(0.02, 0.176), -0.156, 1e-150, controls, UNEVEN, 0.01, 0.005, diversity=0.02)
    assert verdict == "undetermined"
    assert "repeats a short pattern" in reason
