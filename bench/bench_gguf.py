"""Time and peak memory of gguftools against the tools people use today, in the same run.

Compared on one synthetic file (a 151,936-entry vocabulary with merges, as in Qwen models, and --size-mb of
Q8_0 tensor data):

- open and print a summary: ``gguftools inspect`` against gguf-py's ``gguf-dump`` (both to /dev/null);
- write a copy with one more string key: ``gguftools set-mtp-source -o`` against gguf-py's
  ``gguf-new-metadata --general-description`` and against ``cp`` of the same file (the floor: a copy with
  no parsing at all), plain and followed by ``sync`` of the copy, since gguftools flushes its file to disk.

Each command runs as its own process, after one warm-up run so that the file is in the page cache; the
median of --repeat runs is reported, with the process's peak resident memory from ``wait4``.

Usage: python bench/bench_gguf.py [--size-mb 1024] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np
from tabulate import tabulate

VOCAB = 151_936
GNU_TIME = "/usr/bin/time"


def build_file(path: Path, size_mb: int) -> None:
    """Write a model-shaped GGUF with a Qwen-sized vocabulary and ``size_mb`` MiB of Q8_0 tensors."""
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), "qwen35")
    writer.add_block_count(9)
    writer.add_uint32("qwen35.nextn_predict_layers", 1)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"tok{i:06d}" for i in range(VOCAB)])
    writer.add_token_merges([f"t{i} o{i}" for i in range(VOCAB - 256)])
    writer.add_token_types([1] * VOCAB)
    block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0]
    row_bytes = 4096 // block_size * type_size
    rows_per_tensor = 4096
    tensor_bytes = rows_per_tensor * row_bytes
    count = max(1, size_mb * 1024 * 1024 // tensor_bytes)
    for index in range(count):
        block = index % 9
        name = f"blk.{block}.ffn_up.{index}.weight" if block < 8 else f"blk.8.nextn.eh_proj.{index}.weight"
        raw = rng.integers(0, 255, size=(rows_per_tensor, row_bytes), dtype=np.uint8)
        writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    for name in ("eh_proj", "enorm", "hnorm"):
        writer.add_tensor(f"blk.8.nextn.{name}.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def run_measured(command: list[str]) -> tuple[float, int]:
    """Run ``command`` with output discarded; return wall seconds and peak RSS in bytes.

    The command runs under GNU time (``/usr/bin/time``), a small process, because Linux carries a parent's
    peak RSS into a forked child's figure: measured straight from this Python process, every command would
    report at least this process's own peak.
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        process = subprocess.run(
            [GNU_TIME, "-o", report.name, "-f", "%M", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            stderr = process.stderr.decode(errors="replace")
            raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}: {stderr[-500:]}")
        peak_kib = int(report.read().split()[-1])
    return elapsed, peak_kib * 1024


def measure(command: list[str], repeat: int, before: list[Path] = ()) -> tuple[float, int]:
    run_measured(command)  # warm-up: file in the page cache, imports compiled
    times, peaks = [], []
    for _ in range(repeat):
        for path in before:
            path.unlink(missing_ok=True)
        seconds, peak = run_measured(command)
        times.append(seconds)
        peaks.append(peak)
    return statistics.median(times), max(peaks)


def tool(name: str) -> str:
    found = shutil.which(name, path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        raise SystemExit(f"{name} not found; install gguftools and gguf into this environment")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="tensor data in MiB (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command (default 3)")
    parser.add_argument("--keep", type=Path, help="folder for the test file, kept between runs")
    args = parser.parse_args()
    if not os.path.exists(GNU_TIME):
        raise SystemExit(f"{GNU_TIME} not found; install GNU time (Debian package 'time') to measure peak memory")

    folder = args.keep or Path(tempfile.mkdtemp(prefix="gguftools-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"bench-{args.size_mb}mb.gguf"
    if not source.exists():
        print(f"writing {source} ...", file=sys.stderr)
        build_file(source, args.size_mb)
    size = source.stat().st_size
    out = folder / "out.gguf"

    gguftools, dump, new_metadata = tool("gguftools"), tool("gguf-dump"), tool("gguf-new-metadata")
    cases = [
        ("inspect", "gguftools inspect", [gguftools, "inspect", str(source)], []),
        ("inspect", "gguf-dump", [dump, str(source)], []),
        ("edit", "gguftools set-mtp-source -o", [gguftools, "set-mtp-source", "--post-norm", str(source), "-o", str(out), "--force"], [out]),
        ("edit", "gguf-new-metadata", [new_metadata, str(source), str(out), "--general-description", "x", "--force"], [out]),
        ("edit", "cp", ["cp", str(source), str(out)], [out]),
        # gguftools flushes the new file to disk before the rename; this is cp held to the same standard
        ("edit", "cp && sync", ["sh", "-c", 'cp "$0" "$1" && sync "$1"', str(source), str(out)], [out]),
    ]
    results = {}
    for group, label, command, cleanup in cases:
        print(f"running {label} ...", file=sys.stderr)
        results[label] = (group, *measure(command, args.repeat, cleanup))
    out.unlink(missing_ok=True)

    baselines = {"inspect": "gguftools inspect", "edit": "gguftools set-mtp-source -o"}
    rows = []
    for label, (group, seconds, peak) in results.items():
        base_seconds, base_peak = results[baselines[group]][1:]
        rows.append(
            [group, label, f"{seconds:.3f}", f"{seconds / base_seconds:.2f}x", f"{peak / 2**20:.0f}", f"{peak / base_peak:.2f}x",
             f"{size / seconds / 2**20:.0f}" if group == "edit" else ""]
        )
    print(f"file: {size / 2**20:.0f} MiB, vocabulary {VOCAB}, median of {args.repeat} runs after a warm-up")
    print(tabulate(rows, headers=["task", "command", "seconds", "time vs gguftools", "peak RSS MiB", "RSS vs gguftools", "MiB/s"]))
    if args.keep is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
