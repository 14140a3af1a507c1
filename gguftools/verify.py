"""Measure which hidden state an MTP head was trained on: pre-norm or post-norm.

The target model runs teacher-forced over real text, cut into windows no longer than the model's context.
At every position ``t`` of a window, the MTP head drafts ``x_{t+2}`` from the target's hidden state ``h_t``
and the next token ``x_{t+1}``, once with ``h_t`` taken before the final norm and once after it. A draft is
accepted when it equals the target's own greedy prediction for that position (depth-1 acceptance, as
engines report it). Both feeds are scored on the same positions, so the comparison is paired: McNemar's
exact test on the positions where exactly one feed is accepted gives the p-value.

The two feeds differ only through the per-channel weights of ``output_norm``: the head's ``hnorm`` removes
any per-position scale. When those weights are nearly uniform, the feeds are equivalent and no
measurement can tell them apart, so the verdict is ``undetermined``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from importlib import resources

import numpy as np
from tokenizers import Tokenizer

from gguftools import __version__
from gguftools.container import GGUFModel
from gguftools.errors import GGUFToolsError, ModelError, UnsupportedError
from gguftools.model.qwen35 import Qwen35Model
from gguftools.model.weights import GGUFWeights
from gguftools.mtp import Layout, describe_mtp
from gguftools.tokenize import load_tokenizer

SUPPORTED_ARCHITECTURES = ("qwen35",)
FEEDS = ("post_norm", "pre_norm")
DEFAULT_TOKENS = 4096
DEFAULT_MAX_WINDOW = 1024
DEFAULT_ALPHA = 0.01
# A difference smaller than this (in acceptance, 0.005 = half a point) is reported as no preference,
# however significant, because engines would not notice it.
DEFAULT_MIN_DIFFERENCE = 0.005
# Below this coefficient of variation of output_norm, pre- and post-norm feeds are nearly the same vector
# after hnorm, so a measured difference shows little about training.
MIN_NORM_SPREAD = 0.02
MIN_WINDOW = 3
# Below this share of distinct 4-token sequences, the text repeats a short pattern, such as a run of one token
# or a loop of two special tokens. A head can then win on the pattern alone, whatever hidden state it was fed.
MIN_TEXT_DIVERSITY = 0.1
TEXT_CHUNK = 1024 * 1024  # bytes of a --text file read in the first round
TOKEN_MARGIN = 64  # tokens dropped from the end of a partly read text, which the rest could change


@dataclasses.dataclass
class NormSpread:
    """Statistics of the final norm's per-channel weights (effective scales as stored)."""

    mean: float
    std: float
    min: float
    max: float

    @property
    def coefficient_of_variation(self) -> float:
        return self.std / abs(self.mean) if self.mean else float("inf")


@dataclasses.dataclass
class FeedScore:
    feed: str
    accepted: int
    positions: int

    @property
    def acceptance(self) -> float:
        return self.accepted / self.positions if self.positions else float("nan")


@dataclasses.dataclass
class Verdict:
    """The measurement and the verdict drawn from it; ``source`` is ``post_norm``, ``pre_norm`` or ``undetermined``."""

    source: str
    strength: str  # "strong", "moderate", "weak" or "none"
    reason: str
    scores: dict[str, FeedScore]
    difference: float  # acceptance(post_norm) - acceptance(pre_norm)
    ci95: tuple[float, float]
    post_only: int  # positions accepted with the post-norm feed only
    pre_only: int
    p_value: float
    # per feed: drafts scored against the token one step later, near chance for a head that predicts the text
    control_acceptance: dict[str, float]
    norm_spread: NormSpread
    tokens: int
    windows: int
    window_length: int
    file_key: str
    file_value: str | bytes | None
    text_name: str = "text"

    @property
    def agrees_with_file(self) -> bool | None:
        if self.file_value is None or self.source == "undetermined":
            return None
        return self.file_value == self.source

    def evidence_summary(self) -> str:
        """Return the one-line summary that ``verify --write`` records beside the key."""
        post, pre = self.scores["post_norm"], self.scores["pre_norm"]
        return (
            f"gguftools {__version__} verify: post_norm {post.acceptance:.4f} vs pre_norm {pre.acceptance:.4f} "
            f"depth-1 acceptance over {post.positions} positions ({self.tokens} tokens of {self.text_name}), "
            f"McNemar p={self.p_value:.2g}, verdict {self.source} ({self.strength})"
        )


def mcnemar_p_value(only_first: int, only_second: int) -> float:
    """Return the two-sided exact McNemar p-value for the discordant counts of a paired comparison."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    # P(X <= k) for X ~ Binomial(n, 1/2), summed in log space so that large n does not underflow to 0 early
    log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(term - top) for term in log_terms)
    return min(1.0, 2.0 * tail)


def paired_difference_ci(accepted_first: np.ndarray, accepted_second: np.ndarray) -> tuple[float, float, float]:
    """Return the mean paired difference and its 95% normal-approximation interval."""
    differences = accepted_first.astype(np.float64) - accepted_second.astype(np.float64)
    n = len(differences)
    mean = float(differences.mean())
    if n < 2:
        return mean, -1.0, 1.0
    half_width = 1.96 * float(differences.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half_width, mean + half_width


def norm_spread(weights: np.ndarray) -> NormSpread:
    return NormSpread(float(weights.mean()), float(weights.std()), float(weights.min()), float(weights.max()))


def windows_of(tokens: np.ndarray, window_length: int) -> list[np.ndarray]:
    """Cut ``tokens`` into consecutive windows; a last partial window is kept if it has at least 3 tokens."""
    windows = [tokens[start : start + window_length] for start in range(0, len(tokens), window_length)]
    return [window for window in windows if len(window) >= MIN_WINDOW]


def sample_text() -> str:
    return resources.files("gguftools.data").joinpath("sample.txt").read_text(encoding="utf-8")


def sample_source() -> TextSource:
    """Return the built-in sample text, as verify scores it when no --text is given."""
    return TextSource("built-in sample (Python source)", text=sample_text())


def demo_model_path() -> str:
    return str(resources.files("gguftools.data").joinpath("demo.gguf"))


def check_verifiable(model: GGUFModel) -> int:
    """Raise a clear error unless ``model`` has an architecture and a complete MTP block verify can run."""
    arch = model.architecture
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedError(
            f"verify supports the architectures {', '.join(SUPPORTED_ARCHITECTURES)}, not {arch!r}", model.path
        )
    info = describe_mtp(model)
    if info.layout is not Layout.COMPLETE:
        details = "; ".join(info.problems) or "no blk.N.nextn.* tensors"
        raise ModelError(f"verify needs a complete MTP block, but the layout is {info.layout.value}: {details}", model.path)
    return info.blocks[0].index


@dataclasses.dataclass
class TextSource:
    """The text to score: a string, or a UTF-8 file read only as far as the token budget needs."""

    name: str
    text: str | None = None
    path: str | None = None

    def tokens(self, tokenizer: Tokenizer, max_tokens: int) -> np.ndarray:
        if self.text is not None:
            ids = tokenizer.encode(self.text, add_special_tokens=False).ids
            return np.asarray(ids[:max_tokens], dtype=np.int64)
        assert self.path is not None
        return _tokenize_file_prefix(self.path, tokenizer, max_tokens)


def _tokenize_file_prefix(path: str, tokenizer: Tokenizer, max_tokens: int) -> np.ndarray:
    """Tokenize the start of a UTF-8 file, reading more only while the text gives too few tokens.

    A prefix is read with twice the bytes each round, so a huge file costs about the bytes that
    ``max_tokens`` tokens need. The prefix is tokenized whole, and only tokens well before its end are
    kept (the last ones could merge with text not read yet), unless the file ended.
    """
    if not os.path.exists(path):
        raise GGUFToolsError("file not found", path)
    if not os.path.isfile(path):
        raise GGUFToolsError("is not a regular file (a folder, pipe or device); --text needs a UTF-8 text file", path)
    size = max(TEXT_CHUNK, max_tokens * 8)
    with open(path, "rb") as handle:
        while True:
            handle.seek(0)
            raw = handle.read(size)
            at_end = len(raw) < size
            text = _decode_prefix(raw, at_end, path)
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            if at_end:
                return np.asarray(ids[:max_tokens], dtype=np.int64)
            if len(ids) > max_tokens + TOKEN_MARGIN:
                return np.asarray(ids[:max_tokens], dtype=np.int64)
            size *= 2


def _decode_prefix(raw: bytes, at_end: bool, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        # A character cut by the read boundary is not an error: drop its first bytes.
        if not at_end and error.start >= len(raw) - 3 and error.reason == "unexpected end of data":
            return raw[: error.start].decode("utf-8")
        raise GGUFToolsError(f"not UTF-8 text (byte offset {error.start})", path) from None


def run_verify(
    model: GGUFModel,
    text: TextSource | str,
    max_tokens: int = DEFAULT_TOKENS,
    max_window: int = DEFAULT_MAX_WINDOW,
    alpha: float = DEFAULT_ALPHA,
    min_difference: float = DEFAULT_MIN_DIFFERENCE,
    progress: Callable[[str, int, int], None] | None = None,
) -> Verdict:
    """Score both feeds of ``model``'s MTP head on ``text`` and return the verdict."""
    block = check_verifiable(model)
    arch = model.architecture
    text_source = text if isinstance(text, TextSource) else TextSource("text", text=text)
    net = Qwen35Model(GGUFWeights(model), path=model.path)
    context = net.hparams.context_length or max_window
    window_length = min(context, max_window)
    if window_length < MIN_WINDOW:
        raise ModelError(
            f"{arch}.context_length is {context}, too short to score (windows need at least {MIN_WINDOW} tokens)",
            model.path,
        )

    tokens = text_source.tokens(load_tokenizer(model), max_tokens)
    windows = windows_of(tokens, window_length)
    if not windows:
        raise GGUFToolsError(
            f"the text gives {len(tokens)} tokens, too few to score (at least {MIN_WINDOW} needed)", text_source.name
        )
    norm = model.dequantize("output_norm.weight")
    if not np.isfinite(norm).all():
        raise ModelError("output_norm.weight contains NaN or infinite values", model.path)

    # Damaged weights surface as numpy errors or as NaN; both are reported as a problem of the file.
    try:
        with np.errstate(all="ignore"):
            trunk, drafts = _score_windows(net, block, windows, progress)
    except (ValueError, np.linalg.LinAlgError) as error:
        raise ModelError(f"the forward pass failed ({error}); check the file with gguftools validate", model.path) from None

    accepted = {feed: [] for feed in FEEDS}
    control = {feed: [] for feed in FEEDS}
    for index, feed in enumerate(FEEDS):
        for number, states in enumerate(trunk):
            draft = drafts[index * len(windows) + number]  # drafts of x_{t+2}
            target = states.top_tokens[1:]  # the target's greedy token for position t + 2
            accepted[feed].append(draft == target)
            if len(draft) > 1:
                control[feed].append(draft[:-1] == target[1:])  # the target's token one step too late
    outcomes = {feed: np.concatenate(accepted[feed]) for feed in FEEDS}
    scores = {feed: FeedScore(feed, int(outcomes[feed].sum()), len(outcomes[feed])) for feed in FEEDS}
    post_only = int((outcomes["post_norm"] & ~outcomes["pre_norm"]).sum())
    pre_only = int((outcomes["pre_norm"] & ~outcomes["post_norm"]).sum())
    difference, low, high = paired_difference_ci(outcomes["post_norm"], outcomes["pre_norm"])
    p_value = mcnemar_p_value(post_only, pre_only)
    control_acceptance = {
        feed: float(np.concatenate(control[feed]).mean()) if control[feed] else float("nan") for feed in FEEDS
    }
    spread = norm_spread(norm)

    diversity = text_diversity(np.concatenate(windows))
    source, strength, reason = decide(
        scores, difference, p_value, control_acceptance, spread, alpha, min_difference, diversity
    )
    key = f"{arch}.nextn_hidden_source"
    return Verdict(
        source=source,
        strength=strength,
        reason=reason,
        scores=scores,
        difference=difference,
        ci95=(low, high),
        post_only=post_only,
        pre_only=pre_only,
        p_value=p_value,
        control_acceptance=control_acceptance,
        norm_spread=spread,
        tokens=sum(len(window) for window in windows),
        windows=len(windows),
        window_length=window_length,
        file_key=key,
        file_value=model.get(key),
        text_name=text_source.name,
    )


def _score_windows(
    net: Qwen35Model, block: int, windows: list[np.ndarray], progress: Callable[[str, int, int], None] | None
) -> tuple[list, list[np.ndarray]]:
    """Run the trunk over ``windows`` and the head with both feeds; return the trunk states and the drafts.

    Drafts come feed by feed, window by window: ``drafts[f * len(windows) + w]`` for feed ``FEEDS[f]``.
    """
    trunk = net.forward_windows(windows)
    for states in trunk:
        if not (np.isfinite(states.hidden_pre_norm).all() and np.isfinite(states.hidden_post_norm).all()):
            raise ModelError("the trunk's hidden states contain NaN or infinite values; check the weights", net.path)
    if progress is not None:
        progress("trunk", 1, 2)

    head = net.load_mtp_head(block, lazy_vocab=True)
    # Every window and feed looks up next-token embeddings: gather them all in one pass over the matrix.
    head.embedding.prefetch(np.concatenate([window[1:] for window in windows]))
    # One pass over the output matrix for every window and both feeds: rows are stacked feed by feed.
    head_hidden = [
        head.final_hidden(getattr(states, f"hidden_{feed}")[:-1], window[1:])  # h_t and x_{t+1}, t = 0 .. L-2
        for feed in FEEDS
        for window, states in zip(windows, trunk)
    ]
    rows = np.concatenate(head_hidden)
    if not np.isfinite(rows).all():
        raise ModelError("the MTP head's outputs contain NaN or infinite values; check its weights", net.path)
    drafts = np.split(head.output.top_tokens(rows), np.cumsum([len(h) for h in head_hidden])[:-1])
    if progress is not None:
        progress("head", 2, 2)
    return trunk, drafts


def text_diversity(tokens: np.ndarray, order: int = 4) -> float:
    """Return the share of distinct ``order``-token sequences among all of them (1.0 when none repeats)."""
    if len(tokens) <= order:
        return 1.0
    grams = np.lib.stride_tricks.sliding_window_view(tokens, order)  # [T - order + 1, order]
    return len(np.unique(grams, axis=0)) / len(grams)


def decide(
    scores: dict[str, FeedScore],
    difference: float,
    p_value: float,
    control_acceptance: dict[str, float],
    spread: NormSpread,
    alpha: float,
    min_difference: float,
    diversity: float = 1.0,
) -> tuple[str, str, str]:
    """Turn the measurement into (verdict, strength, reason)."""
    if diversity < MIN_TEXT_DIVERSITY:
        return (
            "undetermined",
            "none",
            f"the text repeats a short pattern (only {diversity:.1%} of its 4-token sequences are distinct); "
            f"score real text",
        )

    if spread.coefficient_of_variation < MIN_NORM_SPREAD:
        return (
            "undetermined",
            "none",
            f"output_norm is nearly uniform (coefficient of variation {spread.coefficient_of_variation:.3f}), "
            f"so the two feeds reach the head as almost the same vector",
        )

    # A feed that drafts one constant token on degenerate text (NUL bytes, one repeated token) matches its
    # shifted target as often as the real one: such a "win" shows nothing about training. Only the better
    # feed is checked, since the other may fall to chance when it is the one the head was not trained on.
    best_feed = max(scores, key=lambda feed: scores[feed].acceptance)
    best = scores[best_feed].acceptance
    control = control_acceptance.get(best_feed, float("nan"))
    if best <= 0.02:
        return "undetermined", "none", f"the head's best acceptance is {best:.1%}: it does not predict this text"
    if not math.isnan(control) and best <= control + 0.02:
        return (
            "undetermined",
            "none",
            f"{best_feed} drafts match the token one step later as often as the right one "
            f"({control:.1%} against {best:.1%}): the head does not predict this text",
        )

    winner = "post_norm" if difference > 0 else "pre_norm"
    if p_value >= alpha:
        return "undetermined", "weak", f"the difference is not significant (p = {p_value:.3g}, not below {alpha})"
    if abs(difference) < min_difference:
        return (
            "undetermined",
            "weak",
            f"the difference ({difference * 100:+.2f} points) is below {min_difference * 100:.1f} points",
        )
    strength = "strong" if p_value < 1e-6 else "moderate"
    return winner, strength, f"{winner} drafts are accepted more often (p = {p_value:.2g})"
