"""Speed of verify's numpy target model against llama.cpp on the same file and tokens, in the same run.

Both evaluate the trunk over the same windows of the built-in sample text (each window from an empty
context, as verify does) and produce logits for every position. llama.cpp is driven through
llama-cpp-python (``pip install llama-cpp-python``, a source build of several minutes); without it only
gguftools is measured. The script also reports how far the two implementations' logits are apart and how
often their greedy tokens agree, as a cross-check of the numpy model.

Usage: python bench/bench_verify.py [MODEL] [--tokens 2048] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tabulate import tabulate

from gguftools.container import open_gguf
from gguftools.model.qwen35 import Qwen35Model
from gguftools.model.weights import GGUFWeights
from gguftools.tokenize import load_tokenizer
from gguftools.verify import demo_model_path, sample_text, windows_of


def numpy_logits(path: str, windows: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    with open_gguf(path) as model:
        net = Qwen35Model(GGUFWeights(model), path=path)
        start = time.perf_counter()
        logits = [net.forward(window).logits for window in windows]
        return time.perf_counter() - start, logits


def llama_cpp_logits(path: str, windows: list[np.ndarray], context: int, threads: int) -> tuple[float, list[np.ndarray]]:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_ctx=context, n_batch=context, n_threads=threads, logits_all=True, verbose=False)
    start = time.perf_counter()
    logits = []
    for window in windows:
        llm.reset()
        llm.eval(window.tolist())
        logits.append(np.array(llm.scores[: len(window)], dtype=np.float32))
    return time.perf_counter() - start, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=demo_model_path(), help="GGUF file (default: the demo model)")
    parser.add_argument("--tokens", type=int, default=2048, help="tokens of the sample text (default 2048)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default 2)")
    args = parser.parse_args()

    with open_gguf(args.model) as model:
        tokens = np.array(load_tokenizer(model).encode(sample_text(), add_special_tokens=False).ids[: args.tokens])
        context = int(model.get(f"{model.architecture}.context_length") or 512)
    windows = windows_of(tokens, context)

    rows = []
    seconds, ours = numpy_logits(args.model, windows)
    rows.append(["gguftools (numpy)", f"{seconds:.2f}", f"{len(tokens) / seconds:.0f}", "1.00x"])
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print(tabulate(rows, headers=["engine", "seconds", "tokens/s", "time vs gguftools"]))
        print("llama-cpp-python is not installed, so llama.cpp was not measured")
        return
    reference_seconds, reference = llama_cpp_logits(args.model, windows, context, args.threads)
    rows.append(["llama.cpp", f"{reference_seconds:.2f}", f"{len(tokens) / reference_seconds:.0f}", f"{reference_seconds / seconds:.2f}x"])
    print(f"model: {args.model}, {len(tokens)} tokens in {len(windows)} windows of up to {context}")
    print(tabulate(rows, headers=["engine", "seconds", "tokens/s", "time vs gguftools"]))

    ours_all, reference_all = np.concatenate(ours), np.concatenate(reference)
    agreement = float((ours_all.argmax(-1) == reference_all.argmax(-1)).mean())
    print(f"max |logit difference| {np.abs(ours_all - reference_all).max():.3g}, greedy agreement {agreement:.2%}")


if __name__ == "__main__":
    main()
