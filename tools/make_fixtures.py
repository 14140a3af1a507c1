#!/usr/bin/env python3
"""Build the known-answer GGUF fixtures for gguftools.

The script trains a tiny Qwen3.5 trunk (transformers `Qwen3_5ForCausalLM`) on Python standard library
source and freezes it. It then trains two MTP heads on that trunk. One is fed the trunk's hidden state
after the final norm (post_norm), the other the hidden state before it (pre_norm). Both models are
converted with llama.cpp's own converter. The script records in `manifest.json` how each head scores
under each feed, so the tool's verdict on each file is known in advance.

Outputs (under --out, default tests/fixtures):
  qwen35-mtp-post.f32.gguf, qwen35-mtp-pre.f32.gguf, qwen35-mtp-post.q8_0.gguf (unless --skip-q8),
  reference.npz (torch outputs for a fixed token window), manifest.json.
Outputs under --data-dir (default gguftools/data): demo.gguf (copy of the post-norm F32 model), sample.txt.

Run: /work/venvs/fix/bin/python tools/make_fixtures.py --llama-cpp DIR --out tests/fixtures
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

log = logging.getLogger("make_fixtures")

REPO_ROOT = Path(__file__).resolve().parent.parent

SEED = 20260517
NUM_THREADS = 2

# Held-out text for `verify`. It is excluded from tokenizer and model training.
SAMPLE_FILE = "fractions.py"
# this.py is ROT13 text, which would teach the model nothing about Python.
EXCLUDED_FILES = {SAMPLE_FILE, "this.py"}

# Pre-tokenizer split regex of Qwen3.5's tokenizer.json, which llama.cpp applies for tokenizer.ggml.pre
# "qwen35" (src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_QWEN35). It differs from the Qwen2 regex only by
# also accepting combining marks (\p{M}) in letter runs, so the two split ASCII source code identically.
QWEN35_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 1536

CONTEXT_LENGTH = 256
FULL_ATTENTION_INTERVAL = 2
TEXT_CONFIG = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "linear_conv_kernel_dim": 4,
    "linear_key_head_dim": 32,
    "linear_value_head_dim": 32,
    "linear_num_key_heads": 2,
    "linear_num_value_heads": 4,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": CONTEXT_LENGTH,
    "tie_word_embeddings": False,
    # Rotary covers head_dim * 0.5 = 16 dims, so mrope_section must sum to 16 / 2 = 8.
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "partial_rotary_factor": 0.5,
        "mrope_section": [3, 3, 2],
        "mrope_interleaved": True,
    },
}

# Log-normal spread of the final norm's effective per-channel scale (1 + weight in transformers).
OUTPUT_NORM_SIGMA = 0.6

TRUNK_BATCH = 16
TRUNK_LR = 3e-3
HEAD_BATCH = 16
HEAD_LR = 2e-3

EVAL_MAX_TOKENS = 4096
EVAL_MIN_WINDOW = 3
REFERENCE_TOKENS = 64

FEEDS = ("post_norm", "pre_norm")
FEED_SHORT = {"post_norm": "post", "pre_norm": "pre"}

# Runs llama.cpp's converter with its own gguf-py first on sys.path. The only change to the converter is
# in this process: when its table of known BPE pre-tokenizer hashes has no entry for our tokenizer, the
# lookup returns "qwen35", whose split regex is the one the tokenizer was trained with.
CONVERTER_BOOTSTRAP = r"""
import sys
llama_dir = sys.argv[1]
sys.path.insert(0, llama_dir + "/gguf-py")
sys.path.insert(0, llama_dir)
import gguf
if not gguf.__file__.startswith(llama_dir):
    raise SystemExit(f"gguf imported from {gguf.__file__}, expected llama.cpp's gguf-py under {llama_dir}")
import conversion.base as base
original_lookup = base.TextModel.get_vocab_base_pre
def lookup_with_fallback(self, tokenizer):
    try:
        return original_lookup(self, tokenizer)
    except NotImplementedError:
        print("PRE_TOKENIZER_PATCHED: unknown hash, tokenizer.ggml.pre set to qwen35", file=sys.stderr)
        return "qwen35"
base.TextModel.get_vocab_base_pre = lookup_with_fallback
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[2:]
convert_hf_to_gguf.main()
"""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Corpus and tokenizer
# ---------------------------------------------------------------------------------------------------------

def load_corpus(stdlib_dir: Path) -> tuple[list[tuple[str, str]], str]:
    """Return the training files as (name, text) pairs, sorted by name, and the held-out sample text."""
    names = sorted(p.name for p in stdlib_dir.glob("*.py") if p.name not in EXCLUDED_FILES)
    if not names:
        raise SystemExit(f"no *.py files found in {stdlib_dir}; pass --stdlib DIR")
    sample_path = stdlib_dir / SAMPLE_FILE
    if not sample_path.is_file():
        raise SystemExit(f"held-out sample {sample_path} not found; pass --stdlib DIR")
    files = [(name, (stdlib_dir / name).read_text(encoding="utf-8")) for name in names]
    return files, sample_path.read_text(encoding="utf-8")


def train_tokenizer(texts: list[str]):
    """Train a byte-level BPE with Qwen3.5's split regex. Ids 0..2 are the special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN35_SPLIT_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.get_vocab_size() != VOCAB_SIZE:
        raise SystemExit(f"tokenizer has {tokenizer.get_vocab_size()} tokens, expected {VOCAB_SIZE}")
    return tokenizer


def write_tokenizer_files(tokenizer, model_dir: Path) -> None:
    tokenizer.save(str(model_dir / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "bos_token": None,
        "add_bos_token": False,
        "model_max_length": CONTEXT_LENGTH,
        "clean_up_tokenization_spaces": False,
    }
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------

def make_text_config():
    from transformers import Qwen3_5TextConfig

    config = Qwen3_5TextConfig(
        vocab_size=VOCAB_SIZE,
        full_attention_interval=FULL_ATTENTION_INTERVAL,
        eos_token_id=SPECIAL_TOKENS.index("<|endoftext|>"),
        pad_token_id=SPECIAL_TOKENS.index("<|endoftext|>"),
        **copy.deepcopy(TEXT_CONFIG),
    )
    config._attn_implementation = "eager"
    rope = config.rope_parameters
    rope_dim = int(config.head_dim * rope["partial_rotary_factor"])
    if sum(rope["mrope_section"]) * 2 != rope_dim:
        raise SystemExit(f"mrope_section {rope['mrope_section']} must sum to rope_dim / 2 = {rope_dim // 2}")
    if "full_attention" not in config.layer_types:
        raise SystemExit(f"layer_types {config.layer_types} has no full-attention layer")
    return config


def causal_mask(length: int) -> torch.Tensor:
    """Return an additive [1, 1, T, T] causal mask.

    Eager attention in transformers 5.25 is not causal when called without a mask.
    """
    mask = torch.full((length, length), torch.finfo(torch.float32).min)
    return torch.triu(mask, diagonal=1)[None, None]


class MtpHead(nn.Module):
    """Qwen3.5 MTP head with the parameter names of Qwen3.5 checkpoints (under the `mtp.` prefix).

    Computation, as in llama.cpp's qwen35 graph_mtp: u = fc(concat(norm_e(embed(x_{t+1})), norm_h(h_t)))
    with the embedding first, then one full-attention decoder layer that attends causally over earlier MTP
    positions, then `norm`. The caller applies the trunk's lm_head.
    """

    def __init__(self, config):
        super().__init__()
        from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5DecoderLayer, Qwen3_5RMSNorm

        hidden = config.hidden_size
        full_layer_idx = config.layer_types.index("full_attention")
        self.pre_fc_norm_embedding = Qwen3_5RMSNorm(hidden, eps=config.rms_norm_eps)
        self.pre_fc_norm_hidden = Qwen3_5RMSNorm(hidden, eps=config.rms_norm_eps)
        self.fc = nn.Linear(2 * hidden, hidden, bias=False)
        self.layers = nn.ModuleList([Qwen3_5DecoderLayer(config, full_layer_idx)])
        self.norm = Qwen3_5RMSNorm(hidden, eps=config.rms_norm_eps)
        if self.layers[0].block_type != "full_attention":
            raise RuntimeError("the MTP layer must be a full-attention layer")

    def forward(self, embeds, hidden, position_embeddings, return_parts=False):
        fused = torch.cat([self.pre_fc_norm_embedding(embeds), self.pre_fc_norm_hidden(hidden)], dim=-1)
        projected = self.fc(fused)
        block_out = self.layers[0](
            projected,
            position_embeddings=position_embeddings,
            attention_mask=causal_mask(embeds.shape[1]),
        )
        normed = self.norm(block_out)
        if return_parts:
            return normed, {"eh_proj_out": projected, "block_out": block_out}
        return normed


def init_head(head: MtpHead, generator: torch.Generator) -> None:
    for name, param in head.named_parameters():
        if name.endswith("norm.weight"):
            nn.init.zeros_(param)
        else:
            with torch.no_grad():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)


class TrunkRunner:
    """Trunk wrapper that also returns the hidden state on both sides of the final norm."""

    def __init__(self, model):
        self.model = model
        self.captured: dict[str, torch.Tensor] = {}
        model.model.norm.register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        self.captured["pre_norm"] = inputs[0]
        self.captured["post_norm"] = output

    def __call__(self, input_ids: torch.Tensor):
        logits = self.model(input_ids=input_ids).logits
        return logits, {"pre_norm": self.captured["pre_norm"], "post_norm": self.captured["post_norm"]}

    def rotary(self, reference: torch.Tensor, length: int):
        positions = torch.arange(length)[None]
        return self.model.model.rotary_emb(reference, positions)


def set_output_norm_scale(model, generator: torch.Generator) -> torch.Tensor:
    """Fix the final norm's effective scale (1 + weight) to a log-normal vector and freeze it."""
    hidden = model.config.hidden_size
    log_scale = torch.randn(hidden, generator=generator) * OUTPUT_NORM_SIGMA
    log_scale = log_scale - log_scale.mean()
    scale = torch.exp(log_scale)
    with torch.no_grad():
        model.model.norm.weight.copy_(scale - 1.0)
    model.model.norm.weight.requires_grad_(False)
    return scale


def spread_stats(values: torch.Tensor) -> dict:
    values = values.double()
    mean = values.mean().item()
    std = values.std(unbiased=False).item()
    return {
        "mean": mean,
        "std": std,
        "min": values.min().item(),
        "max": values.max().item(),
        "coefficient_of_variation": std / mean,
    }


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------

def sample_batch(stream: torch.Tensor, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, stream.numel() - length, (batch,), generator=generator)
    return torch.stack([stream[s:s + length] for s in starts.tolist()])


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_trunk(model, stream: torch.Tensor, steps: int, generator: torch.Generator) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=TRUNK_LR, betas=(0.9, 0.95),
    )
    model.train()
    start = time.time()
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, TRUNK_LR, warmup=min(50, steps // 10 + 1))
        batch = sample_batch(stream, TRUNK_BATCH, CONTEXT_LENGTH + 1, generator)
        logits = model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log.info("trunk step %d/%d loss %.4f (%.0f s)", step + 1, steps, loss.item(), time.time() - start)
    model.eval()
    return {
        "steps": steps,
        "batch_size": TRUNK_BATCH,
        "sequence_length": CONTEXT_LENGTH,
        "peak_lr": TRUNK_LR,
        "optimizer": "AdamW betas (0.9, 0.95), weight decay 0.1 on matrices, warmup then cosine to 10%",
        "seconds": round(time.time() - start, 1),
        "first_loss": losses[0],
        "final_loss_mean_last_20": float(np.mean(losses[-20:])),
    }


def save_trunk(model, work_dir: Path, settings: dict, stats: dict) -> None:
    tensors = {name: value.detach().contiguous().clone() for name, value in model.state_dict().items()}
    save_file(tensors, str(work_dir / "trunk.safetensors"))
    record = {"settings": settings, "stats": stats}
    (work_dir / "trunk.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def load_saved_trunk(model, work_dir: Path, settings: dict) -> dict | None:
    """Load a trunk saved by an earlier run with the same settings and return its training figures.

    Returns None when no trunk was saved or its settings differ.
    """
    from safetensors.torch import load_file

    weights_path, record_path = work_dir / "trunk.safetensors", work_dir / "trunk.json"
    if not weights_path.is_file() or not record_path.is_file():
        log.info("no saved trunk in %s, training one", work_dir)
        return None
    record = json.loads(record_path.read_text())
    if record["settings"] != json.loads(json.dumps(settings)):
        log.info("saved trunk in %s was trained with other settings, training a new one", work_dir)
        return None
    model.load_state_dict(load_file(str(weights_path)))
    log.info("reusing the trunk saved in %s", work_dir)
    return {**record["stats"], "reused_from_earlier_run": True}


def head_loss(head, runner, embed, lm_head, batch, feed, teacher_logprobs) -> torch.Tensor:
    """Soft cross-entropy of the head's logits at t against the trunk's distribution at t + 1."""
    positions = batch.shape[1] - 1
    embeds = embed(batch[:, 1:])
    hidden = feed[:, :-1]
    rotary = runner.rotary(embeds, positions)
    logits = lm_head(head(embeds, hidden, rotary))
    return -(teacher_logprobs.exp() * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def train_heads(runner, heads: dict, stream: torch.Tensor, steps: int, generator: torch.Generator) -> dict:
    """Train one head per feed on the same batches of the frozen trunk."""
    model = runner.model
    embed = model.model.embed_tokens
    lm_head = model.lm_head
    optimizers = {
        feed: torch.optim.AdamW(head.parameters(), lr=HEAD_LR, betas=(0.9, 0.95), weight_decay=0.0)
        for feed, head in heads.items()
    }
    for head in heads.values():
        head.train()
    start = time.time()
    losses = {feed: [] for feed in heads}
    for step in range(steps):
        batch = sample_batch(stream, HEAD_BATCH, CONTEXT_LENGTH, generator)
        with torch.no_grad():
            logits, hidden = runner(batch)
            teacher = F.log_softmax(logits[:, 1:], dim=-1)
        for feed, head in heads.items():
            optimizer = optimizers[feed]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, HEAD_LR, warmup=min(30, steps // 10 + 1))
            loss = head_loss(head, runner, embed, lm_head, batch, hidden[feed], teacher)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
            losses[feed].append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            summary = ", ".join(f"{feed} {losses[feed][-1]:.4f}" for feed in heads)
            log.info("head step %d/%d loss %s (%.0f s)", step + 1, steps, summary, time.time() - start)
    for head in heads.values():
        head.eval()
    return {
        "steps": steps,
        "batch_size": HEAD_BATCH,
        "sequence_length": CONTEXT_LENGTH,
        "peak_lr": HEAD_LR,
        "loss": "soft cross-entropy against the trunk's softmax at t+1 (its distribution over x_{t+2})",
        "seconds_both_heads": round(time.time() - start, 1),
        "final_loss_mean_last_20": {feed: float(np.mean(values[-20:])) for feed, values in losses.items()},
    }


# ---------------------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------------------

def eval_windows(tokens: list[int]) -> list[list[int]]:
    windows = [tokens[i:i + CONTEXT_LENGTH] for i in range(0, len(tokens), CONTEXT_LENGTH)]
    return [w for w in windows if len(w) >= EVAL_MIN_WINDOW]


@torch.no_grad()
def run_window(runner, heads: dict, window: list[int]):
    """Return trunk logits, both hidden states and each head's logits under each feed for one window."""
    model = runner.model
    ids = torch.tensor(window)[None]
    logits, hidden = runner(ids)
    embeds = model.model.embed_tokens(ids[:, 1:])
    rotary = runner.rotary(embeds, ids.shape[1] - 1)
    head_logits = {}
    for head_name, head in heads.items():
        for feed in FEEDS:
            head_logits[head_name, feed] = model.lm_head(head(embeds, hidden[feed][:, :-1], rotary))[0]
    return logits[0], hidden, head_logits


@torch.no_grad()
def measure_acceptance(runner, heads: dict, tokens: list[int]) -> dict:
    """Depth-1 acceptance of every head under every feed, teacher-forced over consecutive windows."""
    matches = {key: 0 for key in ((h, f) for h in heads for f in FEEDS)}
    shifted_matches = {h: 0 for h in heads}
    shifted_positions = 0
    positions = 0
    for window in eval_windows(tokens):
        trunk_logits, _, head_logits = run_window(runner, heads, window)
        target = trunk_logits[1:].argmax(-1)
        positions += target.numel()
        for key, logits in head_logits.items():
            matches[key] += int((logits.argmax(-1) == target).sum())
        # Control: compare the head's draft at t with the trunk's choice one step too late (t + 2).
        late_target = trunk_logits[2:].argmax(-1)
        shifted_positions += late_target.numel()
        for head_name in heads:
            draft = head_logits[head_name, head_name][:-1].argmax(-1)
            shifted_matches[head_name] += int((draft == late_target).sum())
    return {
        "positions": positions,
        "acceptance": {
            f"{head_name}_head": {feed: matches[head_name, feed] / positions for feed in FEEDS}
            for head_name in heads
        },
        "matches": {
            f"{head_name}_head": {feed: matches[head_name, feed] for feed in FEEDS} for head_name in heads
        },
        "shifted_target_control": {
            "positions": shifted_positions,
            "acceptance": {f"{h}_head": shifted_matches[h] / shifted_positions for h in heads},
        },
    }


def randomized_fc_control(runner, heads: dict, tokens: list[int], generator: torch.Generator) -> dict:
    """Acceptance of each head under its own feed after replacing fc (eh_proj) with random values."""
    broken = {}
    for head_name, head in heads.items():
        clone = copy.deepcopy(head)
        with torch.no_grad():
            std = clone.fc.weight.std()
            clone.fc.weight.copy_(torch.randn(clone.fc.weight.shape, generator=generator) * std)
        broken[head_name] = clone
    result = measure_acceptance(runner, broken, tokens)
    return {
        "positions": result["positions"],
        "acceptance_own_feed": {f"{h}_head": result["acceptance"][f"{h}_head"][h] for h in heads},
        "method": "fc weight replaced by normal noise with the trained weight's std, seed fixed",
    }


@torch.no_grad()
def build_reference(runner, heads: dict, tokens: list[int], sample_tokens: list[int]) -> dict:
    """Collect float32 reference arrays for the first REFERENCE_TOKENS tokens of the sample."""
    model = runner.model
    window = tokens[:REFERENCE_TOKENS]
    ids = torch.tensor(window)[None]
    layer_outputs = []
    hooks = [layer.register_forward_hook(lambda m, i, o: layer_outputs.append(o[0].clone()))
             for layer in model.model.layers]
    logits, hidden = runner(ids)
    for hook in hooks:
        hook.remove()
    arrays = {
        "tokens": np.asarray(window, dtype=np.int32),
        "sample_tokens": np.asarray(sample_tokens, dtype=np.int32),
        "trunk_logits": logits[0].numpy().astype(np.float32),
        "hidden_pre_norm": hidden["pre_norm"][0].numpy().astype(np.float32),
        "hidden_post_norm": hidden["post_norm"][0].numpy().astype(np.float32),
        "trunk_layer_outputs": torch.stack(layer_outputs).numpy().astype(np.float32),
        "output_norm_effective_scale": (1.0 + model.model.norm.weight).numpy().astype(np.float32),
    }
    embeds = model.model.embed_tokens(ids[:, 1:])
    rotary = runner.rotary(embeds, ids.shape[1] - 1)
    for head_name, head in heads.items():
        for feed in FEEDS:
            normed, parts = head(embeds, hidden[feed][:, :-1], rotary, return_parts=True)
            prefix = f"{head_name}_head_{FEED_SHORT[feed]}_feed"
            arrays[f"{prefix}_logits"] = model.lm_head(normed)[0].numpy().astype(np.float32)
            arrays[f"{prefix}_eh_proj_out"] = parts["eh_proj_out"][0].numpy().astype(np.float32)
            arrays[f"{prefix}_block_out"] = parts["block_out"][0].numpy().astype(np.float32)
    return arrays


# ---------------------------------------------------------------------------------------------------------
# Checkpoints and conversion
# ---------------------------------------------------------------------------------------------------------

def write_checkpoint(model, head: MtpHead, tokenizer, model_dir: Path) -> None:
    """Write a Qwen3.5 checkpoint with the MTP head under the names Qwen3.5 checkpoints use."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().contiguous().clone() for name, value in model.state_dict().items()}
    for name, value in head.state_dict().items():
        tensors[f"mtp.{name}"] = value.detach().contiguous().clone()
    save_file(tensors, str(model_dir / "model.safetensors"), metadata={"format": "pt"})

    config = model.config.to_dict()
    config["architectures"] = ["Qwen3_5ForCausalLM"]
    config["mtp_num_hidden_layers"] = 1
    # transformers folds full_attention_interval into layer_types, but llama.cpp's converter reads the key.
    config["full_attention_interval"] = FULL_ATTENTION_INTERVAL
    config["torch_dtype"] = "float32"
    (model_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    write_tokenizer_files(tokenizer, model_dir)


def convert(llama_dir: Path, model_dir: Path, outfile: Path, outtype: str) -> dict:
    """Run llama.cpp's converter on model_dir and return whether the pre-tokenizer lookup fell back."""
    command = [sys.executable, "-c", CONVERTER_BOOTSTRAP, str(llama_dir),
               str(model_dir), "--outfile", str(outfile), "--outtype", outtype]
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("NO_LOCAL_GGUF", None)
    log.info("converting %s to %s (%s)", model_dir.name, outfile.name, outtype)
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"llama.cpp converter failed on {model_dir} with exit code {result.returncode}")
    hash_match = re.search(r"chkhsh:\s+([0-9a-f]{64})", result.stderr)
    return {
        "pre_tokenizer_patched": "PRE_TOKENIZER_PATCHED" in result.stderr,
        "tokenizer_hash": hash_match.group(1) if hash_match else None,
    }


def describe_gguf(path: Path) -> dict:
    """List the metadata keys and tensors of a GGUF file, abbreviating arrays longer than 16 entries."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    keys = {}
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):
            continue
        value = field.contents()
        if isinstance(value, list) and len(value) > 16:
            value = f"<array of {len(value)}>"
        keys[field.name] = value
    tensors = [
        {"name": t.name, "shape": [int(d) for d in t.shape], "type": t.tensor_type.name}
        for t in reader.tensors
    ]
    return {"keys": keys, "tensors": tensors}


def check_gguf(description: dict, trunk_layers: int) -> None:
    """Raise if the converted file lacks the MTP block the fixtures depend on."""
    keys = description["keys"]
    names = {t["name"] for t in description["tensors"]}
    mtp_block = trunk_layers
    expected_keys = {"qwen35.block_count": trunk_layers + 1, "qwen35.nextn_predict_layers": 1,
                     "qwen35.context_length": CONTEXT_LENGTH}
    for key, value in expected_keys.items():
        if keys.get(key) != value:
            raise SystemExit(f"GGUF key {key} is {keys.get(key)!r}, expected {value}")
    for suffix in ("eh_proj", "enorm", "hnorm", "shared_head_norm"):
        name = f"blk.{mtp_block}.nextn.{suffix}.weight"
        if name not in names:
            raise SystemExit(f"GGUF tensor {name} is missing")
    for suffix in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
        name = f"blk.{mtp_block}.{suffix}.weight"
        if name not in names:
            raise SystemExit(f"GGUF tensor {name} is missing")


def tile_value_heads(array: np.ndarray, head_dim: int, axis: int, num_k: int, num_v: int) -> np.ndarray:
    """Reorder value heads from grouped by key head (transformers) to tiled (llama.cpp) along axis."""
    moved = np.moveaxis(array, axis, 0)
    rest = moved.shape[1:]
    grouped = moved.reshape(num_k, num_v // num_k, head_dim, *rest)
    tiled = np.swapaxes(grouped, 0, 1).reshape(moved.shape)
    return np.moveaxis(tiled, 0, axis)


def check_conversion(model_dir: Path, gguf_path: Path, config) -> list[str]:
    """Compare the F32 GGUF's tensors with the checkpoint's and return the storage conventions confirmed.

    Raises SystemExit on the first tensor that does not match its expected transform.
    """
    import gguf
    from safetensors.numpy import load_file

    source = load_file(str(model_dir / "model.safetensors"))
    reader = gguf.GGUFReader(str(gguf_path))
    stored = {t.name: np.asarray(t.data).reshape([int(d) for d in reversed(t.shape)]) for t in reader.tensors}
    num_k, num_v = config.linear_num_key_heads, config.linear_num_value_heads
    key_dim = config.linear_key_head_dim * num_k
    head_v = config.linear_value_head_dim
    mtp = config.num_hidden_layers
    linear = config.layer_types.index("linear_attention")
    full = config.layer_types.index("full_attention")
    hf_linear = f"model.layers.{linear}.linear_attn"

    def tile(array, head_dim, axis=0):
        return tile_value_heads(array, head_dim, axis, num_k, num_v)

    qkv = source[f"{hf_linear}.in_proj_qkv.weight"]
    conv = source[f"{hf_linear}.conv1d.weight"][:, 0, :]
    checks = [
        ("output_norm.weight stores 1 + model.norm.weight",
         "output_norm.weight", source["model.norm.weight"] + 1),
        ("post_attention_norm stores 1 + post_attention_layernorm.weight",
         f"blk.{linear}.post_attention_norm.weight",
         source[f"model.layers.{linear}.post_attention_layernorm.weight"] + 1),
        ("attn_q_norm stores 1 + q_norm.weight",
         f"blk.{full}.attn_q_norm.weight", source[f"model.layers.{full}.self_attn.q_norm.weight"] + 1),
        ("attn_q is q_proj unchanged: query and output gate interleaved per head (2 x head_dim rows each)",
         f"blk.{full}.attn_q.weight", source[f"model.layers.{full}.self_attn.q_proj.weight"]),
        ("ssm_norm stores the gated norm's weight without + 1",
         f"blk.{linear}.ssm_norm.weight", source[f"{hf_linear}.norm.weight"]),
        ("ssm_a stores -exp(A_log), value heads tiled",
         f"blk.{linear}.ssm_a", tile(-np.exp(source[f"{hf_linear}.A_log"].astype(np.float64)), 1)),
        ("ssm_dt.bias stores dt_bias, value heads tiled",
         f"blk.{linear}.ssm_dt.bias", tile(source[f"{hf_linear}.dt_bias"], 1)),
        ("attn_qkv is in_proj_qkv with the V rows tiled (k-head = v-head mod n_k)",
         f"blk.{linear}.attn_qkv.weight", np.concatenate([qkv[:2 * key_dim], tile(qkv[2 * key_dim:], head_v)])),
        ("attn_gate is in_proj_z, value heads tiled",
         f"blk.{linear}.attn_gate.weight", tile(source[f"{hf_linear}.in_proj_z.weight"], head_v)),
        ("ssm_alpha is in_proj_a, value heads tiled",
         f"blk.{linear}.ssm_alpha.weight", tile(source[f"{hf_linear}.in_proj_a.weight"], 1)),
        ("ssm_beta is in_proj_b, value heads tiled",
         f"blk.{linear}.ssm_beta.weight", tile(source[f"{hf_linear}.in_proj_b.weight"], 1)),
        ("ssm_conv1d is conv1d squeezed to [channels, kernel], V channels tiled",
         f"blk.{linear}.ssm_conv1d.weight", np.concatenate([conv[:2 * key_dim], tile(conv[2 * key_dim:], head_v)])),
        ("ssm_out is out_proj with input columns tiled",
         f"blk.{linear}.ssm_out.weight", tile(source[f"{hf_linear}.out_proj.weight"], head_v, axis=1)),
        ("nextn.eh_proj is mtp.fc unchanged (input = [embedding, hidden])",
         f"blk.{mtp}.nextn.eh_proj.weight", source["mtp.fc.weight"]),
        ("nextn.enorm stores 1 + mtp.pre_fc_norm_embedding.weight",
         f"blk.{mtp}.nextn.enorm.weight", source["mtp.pre_fc_norm_embedding.weight"] + 1),
        ("nextn.hnorm stores 1 + mtp.pre_fc_norm_hidden.weight",
         f"blk.{mtp}.nextn.hnorm.weight", source["mtp.pre_fc_norm_hidden.weight"] + 1),
        ("nextn.shared_head_norm stores 1 + mtp.norm.weight",
         f"blk.{mtp}.nextn.shared_head_norm.weight", source["mtp.norm.weight"] + 1),
        ("MTP block attn_q is mtp.layers.0.self_attn.q_proj unchanged",
         f"blk.{mtp}.attn_q.weight", source["mtp.layers.0.self_attn.q_proj.weight"]),
        ("MTP block attn_norm stores 1 + mtp.layers.0.input_layernorm.weight",
         f"blk.{mtp}.attn_norm.weight", source["mtp.layers.0.input_layernorm.weight"] + 1),
        ("output.weight is lm_head.weight", "output.weight", source["lm_head.weight"]),
        ("token_embd.weight is embed_tokens.weight", "token_embd.weight", source["model.embed_tokens.weight"]),
    ]
    confirmed = []
    for statement, name, expected in checks:
        actual = stored.get(name)
        if actual is None:
            raise SystemExit(f"{gguf_path.name}: tensor {name} is missing")
        if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=1e-6, atol=1e-7):
            raise SystemExit(f"{gguf_path.name}: tensor {name} does not match: {statement}")
        confirmed.append(statement)
    absent = [name for name in (f"blk.{mtp}.nextn.embed_tokens.weight", f"blk.{mtp}.nextn.shared_head_head.weight")
              if name in stored]
    if absent:
        raise SystemExit(f"{gguf_path.name}: unexpected tensors {absent}; the head shares token_embd and output")
    confirmed.append("no nextn.embed_tokens / nextn.shared_head_head: the head uses token_embd and output")
    return confirmed


def same_trunk_tensors(first: Path, second: Path, mtp_block: int) -> int:
    """Check that two files contain identical trunk tensors and return how many were compared."""
    import gguf

    def trunk(path):
        reader = gguf.GGUFReader(str(path))
        return {t.name: np.asarray(t.data) for t in reader.tensors if not t.name.startswith(f"blk.{mtp_block}.")}

    first_tensors, second_tensors = trunk(first), trunk(second)
    if first_tensors.keys() != second_tensors.keys():
        raise SystemExit(f"{first.name} and {second.name} have different trunk tensor names")
    for name, values in first_tensors.items():
        if not np.array_equal(values, second_tensors[name]):
            raise SystemExit(f"trunk tensor {name} differs between {first.name} and {second.name}")
    return len(first_tensors)


def llama_cpp_provenance(llama_dir: Path) -> dict:
    files = ["convert_hf_to_gguf.py", "conversion/qwen.py", "conversion/base.py", "src/models/qwen35.cpp"]
    sdist = next((p.name for p in llama_dir.parents if p.name.startswith("llama_cpp_python-")), None)
    gguf_version = None
    pyproject = llama_dir / "gguf-py" / "pyproject.toml"
    if pyproject.is_file():
        match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
        gguf_version = match.group(1) if match else None
    return {
        "source": sdist or str(llama_dir),
        "gguf_py_version": gguf_version,
        "sha256": {name: sha256_file(llama_dir / name) for name in files if (llama_dir / name).is_file()},
    }


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-cpp", type=Path, required=True,
                        help="llama.cpp source tree that contains convert_hf_to_gguf.py and gguf-py/")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures",
                        help="directory for the GGUF fixtures, reference.npz and manifest.json")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "gguftools" / "data",
                        help="directory for demo.gguf and sample.txt")
    parser.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]),
                        help="Python standard library directory whose *.py files are the corpus")
    parser.add_argument("--work", type=Path, default=None,
                        help="directory for the intermediate Hugging Face checkpoints (default: a temporary one)")
    parser.add_argument("--trunk-steps", type=int, default=350, help="optimizer steps for the trunk")
    parser.add_argument("--head-steps", type=int, default=300, help="optimizer steps for each MTP head")
    parser.add_argument("--skip-q8", action="store_true", help="do not write the Q8_0 conversion")
    parser.add_argument("--reuse-trunk", action="store_true",
                        help="load the trunk saved in --work by an earlier run with the same settings "
                             "instead of training it again (the result is the same, only faster)")
    return parser.parse_args()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args()
    llama_dir = args.llama_cpp.resolve()
    if not (llama_dir / "convert_hf_to_gguf.py").is_file() or not (llama_dir / "gguf-py").is_dir():
        raise SystemExit(f"{llama_dir} has no convert_hf_to_gguf.py and gguf-py/; pass the llama.cpp source tree")

    torch.set_num_threads(NUM_THREADS)
    torch.manual_seed(SEED)
    started = time.time()

    work_dir = args.work or Path(tempfile.mkdtemp(prefix="gguftools-fixtures-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    args.data_dir.mkdir(parents=True, exist_ok=True)

    files, sample_text = load_corpus(args.stdlib)
    texts = [text for _, text in files]
    log.info("corpus: %d files, %d characters; sample %s, %d characters",
             len(files), sum(map(len, texts)), SAMPLE_FILE, len(sample_text))

    tokenizer = train_tokenizer(texts)
    eos_id = tokenizer.token_to_id("<|endoftext|>")
    stream_ids: list[int] = []
    for encoding in tokenizer.encode_batch(texts):
        stream_ids.extend(encoding.ids)
        stream_ids.append(eos_id)
    stream = torch.tensor(stream_ids, dtype=torch.long)
    sample_tokens = tokenizer.encode(sample_text).ids[:EVAL_MAX_TOKENS]
    log.info("training stream: %d tokens; sample: %d tokens used", stream.numel(), len(sample_tokens))

    from transformers import Qwen3_5ForCausalLM

    config = make_text_config()
    torch.manual_seed(SEED)
    model = Qwen3_5ForCausalLM(config)
    norm_generator = torch.Generator().manual_seed(SEED + 1)
    output_norm_scale = set_output_norm_scale(model, norm_generator)
    trunk_settings = {"trunk_steps": args.trunk_steps, "seed": SEED, "output_norm_sigma": OUTPUT_NORM_SIGMA,
                      "tokenizer_sha256": sha256_text(tokenizer.to_str()), "text_config": TEXT_CONFIG,
                      "batch_size": TRUNK_BATCH, "peak_lr": TRUNK_LR}
    trunk_stats = load_saved_trunk(model, work_dir, trunk_settings) if args.reuse_trunk else None
    if trunk_stats is None:
        data_generator = torch.Generator().manual_seed(SEED + 2)
        trunk_stats = train_trunk(model, stream, args.trunk_steps, data_generator)
        save_trunk(model, work_dir, trunk_settings, trunk_stats)
    for param in model.parameters():
        param.requires_grad_(False)

    runner = TrunkRunner(model)
    head_generator = torch.Generator().manual_seed(SEED + 3)
    post_head = MtpHead(config)
    init_head(post_head, head_generator)
    pre_head = copy.deepcopy(post_head)
    heads = {"post_norm": post_head, "pre_norm": pre_head}
    head_stats = train_heads(runner, heads, stream, args.head_steps, torch.Generator().manual_seed(SEED + 4))

    # Names in results are "post"/"pre" for the head trained on that feed.
    named_heads = {FEED_SHORT[feed]: head for feed, head in heads.items()}
    measured = measure_acceptance(runner, {"post_norm": post_head, "pre_norm": pre_head}, sample_tokens)
    controls = randomized_fc_control(runner, {"post_norm": post_head, "pre_norm": pre_head}, sample_tokens,
                                     torch.Generator().manual_seed(SEED + 5))
    log.info("acceptance: %s", json.dumps(measured["acceptance"]))
    log.info("randomized fc control: %s", json.dumps(controls["acceptance_own_feed"]))

    reference = build_reference(runner, named_heads, sample_tokens, sample_tokens)
    reference_path = args.out / "reference.npz"
    np.savez_compressed(reference_path, **reference)

    outputs = {}
    conversions = {}
    for head_name, head in named_heads.items():
        model_dir = work_dir / f"qwen35-mtp-{head_name}"
        write_checkpoint(model, head, tokenizer, model_dir)
        targets = [("f32", args.out / f"qwen35-mtp-{head_name}.f32.gguf")]
        if head_name == "post" and not args.skip_q8:
            targets.append(("q8_0", args.out / f"qwen35-mtp-{head_name}.q8_0.gguf"))
        for outtype, outfile in targets:
            conversions[outfile.name] = convert(llama_dir, model_dir, outfile, outtype)
            outputs[outfile.name] = outfile

    descriptions = {}
    for name, path in outputs.items():
        descriptions[name] = describe_gguf(path)
        check_gguf(descriptions[name], config.num_hidden_layers)
    conventions = {}
    for head_name in named_heads:
        name = f"qwen35-mtp-{head_name}.f32.gguf"
        conventions[name] = check_conversion(work_dir / f"qwen35-mtp-{head_name}", outputs[name], config)
    shared_trunk = same_trunk_tensors(outputs["qwen35-mtp-post.f32.gguf"], outputs["qwen35-mtp-pre.f32.gguf"],
                                      config.num_hidden_layers)

    shutil.copyfile(outputs["qwen35-mtp-post.f32.gguf"], args.data_dir / "demo.gguf")
    (args.data_dir / "sample.txt").write_text(sample_text, encoding="utf-8")

    import tokenizers
    import transformers

    post_description = descriptions["qwen35-mtp-post.f32.gguf"]
    manifest = {
        "description": "Tiny Qwen3.5 trunk with two MTP heads trained on the same frozen trunk: "
                       "qwen35-mtp-post was trained on the post-norm hidden state, "
                       "qwen35-mtp-pre on the pre-norm hidden state.",
        "command": "python tools/make_fixtures.py --llama-cpp DIR --out tests/fixtures "
                   f"--trunk-steps {args.trunk_steps} --head-steps {args.head_steps}",
        "expected_verdict": {"qwen35-mtp-post.f32.gguf": "post_norm", "qwen35-mtp-post.q8_0.gguf": "post_norm",
                             "qwen35-mtp-pre.f32.gguf": "pre_norm", "demo.gguf": "post_norm"},
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "numpy": np.__version__,
            "llama_cpp": llama_cpp_provenance(llama_dir),
        },
        "seeds": {"base": SEED, "output_norm": SEED + 1, "trunk_batches": SEED + 2, "head_init": SEED + 3,
                  "head_batches": SEED + 4, "randomized_fc": SEED + 5, "torch_threads": NUM_THREADS},
        "corpus": {
            "stdlib_dir": str(args.stdlib),
            "files": [{"name": name, "sha256": sha256_text(text)} for name, text in files],
            "characters": sum(map(len, texts)),
            "tokens": int(stream.numel()),
            "excluded": sorted(EXCLUDED_FILES),
        },
        "sample": {
            "source": SAMPLE_FILE,
            "path": "gguftools/data/sample.txt",
            "sha256": sha256_text(sample_text),
            "characters": len(sample_text),
            "tokens_used": len(sample_tokens),
            "first_tokens": sample_tokens[:16],
        },
        "tokenizer": {
            "type": "byte-level BPE trained with the tokenizers library",
            "vocab_size": VOCAB_SIZE,
            "special_tokens": {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS},
            "split_regex": QWEN35_SPLIT_REGEX,
            "sha256_tokenizer_json": sha256_text(tokenizer.to_str()),
            "pre_tokenizer_patch": {
                "what": "llama.cpp's converter does not know this tokenizer's pre-tokenizer hash, so the "
                        "converting process replaces TextModel.get_vocab_base_pre with a wrapper that returns "
                        "'qwen35' when the original raises NotImplementedError; llama.cpp files are unchanged",
                "applied": {name: info["pre_tokenizer_patched"] for name, info in conversions.items()},
                "tokenizer_hash": next(iter(conversions.values()))["tokenizer_hash"],
                "tokenizer_ggml_pre": post_description["keys"].get("tokenizer.ggml.pre"),
            },
        },
        "model": {
            "hf_architecture": "Qwen3_5ForCausalLM",
            "gguf_architecture": "qwen35",
            "config": {**copy.deepcopy(TEXT_CONFIG), "vocab_size": VOCAB_SIZE,
                       "full_attention_interval": FULL_ATTENTION_INTERVAL,
                       "layer_types": list(config.layer_types), "mtp_num_hidden_layers": 1},
            "context_length": CONTEXT_LENGTH,
            "mtp_head": "fc(concat(pre_fc_norm_embedding(embed(x_{t+1})), pre_fc_norm_hidden(h_t))), "
                        "one full-attention decoder layer with causal attention over MTP positions 0..t "
                        "(RoPE position t), mtp.norm, shared lm_head (output.weight); embedding shared "
                        "(token_embd.weight)",
            "output_norm": {
                "distribution": f"log-normal, sigma {OUTPUT_NORM_SIGMA}, log mean removed, frozen in training",
                "effective_scale": spread_stats(output_norm_scale),
                "gguf_tensor": "output_norm.weight stores the effective scale (transformers weight + 1)",
            },
        },
        "training": {"trunk": trunk_stats, "heads": head_stats},
        "measurement": {
            "method": "tokenize sample.txt with the fixture tokenizer, keep the first "
                      f"{EVAL_MAX_TOKENS} tokens, cut into consecutive windows of context_length "
                      f"({CONTEXT_LENGTH}) tokens, keep a last partial window of >= {EVAL_MIN_WINDOW} tokens; "
                      "per window run the trunk causally, then the head at positions t = 0..L-2 with h_t and "
                      "x_{t+1} (causal head attention over the window's MTP positions, RoPE position t); "
                      "accepted when argmax(head logits at t) == argmax(trunk logits at t+1)",
            "engine": "torch (transformers reference trunk, float32)",
            "tokens_used": len(sample_tokens),
            "windows": len(eval_windows(sample_tokens)),
            **measured,
            "randomized_fc_control": controls,
        },
        "reference": {
            "file": "reference.npz",
            "sha256": sha256_file(reference_path),
            "how": f"first {REFERENCE_TOKENS} tokens of the sample run through the transformers trunk and both "
                   "torch heads, float32. The trunk is the same in both models. Arrays: tokens [T], "
                   "sample_tokens [tokens_used], trunk_logits [T, vocab], hidden_pre_norm / hidden_post_norm "
                   "[T, hidden], trunk_layer_outputs [layers, T, hidden], output_norm_effective_scale [hidden], "
                   "and for head in (post, pre), feed in (post, pre): {head}_head_{feed}_feed_logits "
                   "[T-1, vocab], _eh_proj_out and _block_out [T-1, hidden]; row t uses h_t and tokens[t+1]",
        },
        "files": {
            name: {"sha256": sha256_file(path), "bytes": path.stat().st_size} for name, path in outputs.items()
        },
        "data_files": {
            "gguftools/data/demo.gguf": {"copy_of": "qwen35-mtp-post.f32.gguf",
                                         "sha256": sha256_file(args.data_dir / "demo.gguf")},
            "gguftools/data/sample.txt": {"sha256": sha256_file(args.data_dir / "sample.txt")},
        },
        "conventions_checked": {
            "how": "each F32 GGUF tensor compared with the checkpoint tensor it was converted from",
            "files": conventions,
            "trunk_tensors_identical_in_post_and_pre_files": shared_trunk,
        },
        "gguf": {name: description for name, description in descriptions.items()},
        "build_seconds": round(time.time() - started, 1),
    }
    manifest_path = args.out / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    log.info("wrote %s in %.0f s", manifest_path, time.time() - started)


if __name__ == "__main__":
    main()
