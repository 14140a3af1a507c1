"""Record llama.cpp's trunk logits for the fixtures, as a second reference beside transformers'.

llama.cpp runs each fixture through llama-cpp-python on the fixed token sequence stored in
tests/fixtures/reference.npz (``tokens``) and on the first window of the sample text, and the logits of
every position are saved to tests/fixtures/reference_llama_cpp.npz under ``{fixture stem}/{sequence}``.

Needs llama-cpp-python (``pip install llama-cpp-python==0.3.36``, a source build of several minutes) and
gguftools installed in the same environment.

Usage: python tools/make_llama_cpp_reference.py [--out tests/fixtures/reference_llama_cpp.npz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import llama_cpp
import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
MODELS = ("qwen35-mtp-post.f32.gguf", "qwen35-mtp-pre.f32.gguf", "qwen35-mtp-post.q8_0.gguf")


def llama_cpp_logits(path: Path, tokens: np.ndarray) -> np.ndarray:
    """Return llama.cpp's logits [T, vocab] for ``tokens`` evaluated from an empty context."""
    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=len(tokens), n_batch=len(tokens), n_threads=2, logits_all=True, verbose=False
    )
    llm.eval(tokens.tolist())
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURES / "reference_llama_cpp.npz")
    args = parser.parse_args()

    reference = np.load(FIXTURES / "reference.npz")
    sequences = {"reference_tokens": reference["tokens"], "first_window": reference["sample_tokens"][:256]}
    arrays = {f"tokens/{name}": tokens for name, tokens in sequences.items()}
    for model in MODELS:
        for name, tokens in sequences.items():
            arrays[f"{Path(model).stem}/{name}"] = llama_cpp_logits(FIXTURES / model, tokens)
    arrays["llama_cpp_python_version"] = np.array(llama_cpp.__version__)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {', '.join(sorted(arrays))}")


if __name__ == "__main__":
    main()
