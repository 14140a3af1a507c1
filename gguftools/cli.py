"""The gguftools command line: parse options, call the library, render, turn errors into exit codes."""

from __future__ import annotations

import glob
import json
import os
import sys
from typing import Any

import click

from gguftools import __version__
from gguftools.container import ValueType, open_gguf
from gguftools.container.writer import NewValue
from gguftools.edit import EditResult, check_edit, remove_stale_temps, set_metadata, temp_pattern
from gguftools.errors import GGUFToolsError
from gguftools.mtp import NEXTN_HIDDEN_SOURCE, Layout, describe_mtp
from gguftools.render import inspect_json, inspect_text, printable, verify_json, verify_text
from gguftools.verify import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_WINDOW,
    DEFAULT_TOKENS,
    TextSource,
    demo_model_path,
    run_verify,
    sample_source,
)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


class UserError(click.ClickException):
    """A gguftools error shown as one line, with exit code 1 (or the code given)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {printable(self.message)}", err=True)


def fail(error: GGUFToolsError, exit_code: int = 1) -> UserError:
    return UserError(str(error), exit_code)


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="gguftools")
def cli() -> None:
    """Inspect, validate, edit and verify the multi-token-prediction (MTP) head of GGUF models."""


@cli.command()
@click.argument("file", type=click.Path())
@click.option("--full", is_flag=True, help="Print every element of long arrays and strings.")
@click.option("--tensors", "list_tensors", is_flag=True, help="List every tensor, not only a summary per type.")
@click.option("--json", "json_", is_flag=True, help="Print one JSON object instead of text.")
def inspect(file: str, full: bool, list_tensors: bool, json_: bool) -> None:
    """Show a GGUF file's metadata, tensors and MTP layout.

    Any shard of a split set opens the whole set.

    Example: gguftools inspect model.gguf --tensors
    """
    try:
        with open_gguf(file) as model:
            info = describe_mtp(model)
            if json_:
                click.echo(json.dumps(inspect_json(model, info, full, list_tensors), indent=2, ensure_ascii=False))
            else:
                click.echo(inspect_text(model, info, full, list_tensors))
    except GGUFToolsError as error:
        raise fail(error, 2) from None


def echo_edit_notes(result: EditResult) -> None:
    """Print on stderr what an edit removed or could not keep."""
    for stale in result.stale_removed:
        click.echo(f"removed a temporary file left by an interrupted edit: {printable(stale)}", err=True)
    if result.other_links:
        click.echo(
            f"note: {printable(result.path)} had {result.other_links} other hard link(s); they still show the old "
            f"file, because the edit writes a new one",
            err=True,
        )
    for warning in result.warnings:
        click.echo(f"warning: {printable(warning)}", err=True)


@cli.command("set-mtp-source")
@click.argument("file", type=click.Path())
@click.option("--post-norm", is_flag=True, help="The head was trained on the hidden state after the final norm.")
@click.option("--pre-norm", is_flag=True, help="The head was trained on the hidden state before the final norm.")
@click.option("-o", "--output", type=click.Path(), help="Write to this file instead of replacing FILE.")
@click.option("--dry-run", is_flag=True, help="Show the change without writing anything.")
@click.option("--force", is_flag=True, help="Write even when the file has no MTP tensors, and replace an existing --output.")
@click.option("--keep-mtime", is_flag=True, help="Give the new file the modification time of the file it replaces.")
def set_mtp_source(
    file: str, post_norm: bool, pre_norm: bool, output: str | None, dry_run: bool, force: bool, keep_mtime: bool
) -> None:
    """Write the key {arch}.nextn_hidden_source (post_norm or pre_norm).

    Every other key, every tensor info and every tensor byte stays the same. The file is replaced only once
    the new one is complete and reads back correctly; see "Safety of edits" in the README.

    Example: gguftools set-mtp-source --post-norm model.gguf
    """
    if post_norm and pre_norm:
        raise UserError("choose one of --post-norm and --pre-norm", 2)
    if not (post_norm or pre_norm):
        raise UserError("choose --post-norm or --pre-norm", 2)
    source = "post_norm" if post_norm else "pre_norm"
    try:
        with open_gguf(file) as model:
            arch = model.architecture
            if arch is None:
                raise UserError(f"{file}: general.architecture is missing, so the key name is unknown")
            info = describe_mtp(model)
            key = NEXTN_HIDDEN_SOURCE.format(arch=arch)
            old = info.hidden_source
            evidence_key = key + "_evidence"
            has_evidence = evidence_key in model.metadata
            target = model.path
            if model.is_split and model.files[0].path != model.path:
                target = model.files[0].path
        if info.layout in (Layout.TRUNK_ONLY, Layout.STALE_KEY) and not force:
            raise UserError(
                f"{file}: the file has no MTP tensors (blk.N.nextn.*), so the key would describe nothing; "
                f"pass --force to write it anyway"
            )
        old_text = printable(old) if old is not None else "(not set)"
        changes: dict[str, NewValue | None] = {key: NewValue(ValueType.STRING, source)}
        drop_evidence = has_evidence and old != source
        if drop_evidence:
            # The evidence that verify --write recorded supports the old value, so it would contradict the new one.
            changes[evidence_key] = None
        if dry_run:
            if old != source or output is not None:  # otherwise the real run has nothing to write
                check_edit(target, changes, output=output, overwrite_output=force)
            for stale in glob.glob(temp_pattern(os.path.realpath(output or target))):
                click.echo(f"note: a temporary file left by an interrupted edit exists: {printable(stale)}", err=True)
            click.echo(f"{key}: {old_text} -> {source}")
            if drop_evidence:
                click.echo(f"{evidence_key}: removed, because it records the measurement behind {old_text}")
            return
        if old == source and output is None:
            for stale in remove_stale_temps(os.path.realpath(target)):
                click.echo(f"removed a temporary file left by an interrupted edit: {printable(stale)}", err=True)
            click.echo(f"{key}: already {source}; nothing to do")
            return
        result = set_metadata(target, changes, output=output, overwrite_output=force, keep_mtime=keep_mtime)
        echo_edit_notes(result)
        click.echo(f"{key}: {old_text} -> {source} ({printable(result.path)})")
        if drop_evidence:
            click.echo(f"{evidence_key}: removed, because it records the measurement behind {old_text}")
    except GGUFToolsError as error:
        raise fail(error) from None


@cli.command()
@click.argument("file", required=False)
@click.option("--text", "text_file", help="Score on this UTF-8 text file instead of the built-in sample.")
@click.option("--tokens", "max_tokens", type=click.IntRange(min=4), default=DEFAULT_TOKENS, show_default=True, help="Score at most this many tokens of the text.")
@click.option("--window", "max_window", type=click.IntRange(min=4), default=DEFAULT_MAX_WINDOW, show_default=True, help="Maximum window length in tokens; the model's context_length caps it too.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=DEFAULT_ALPHA, show_default=True, help="Significance level the paired test must reach for a verdict.")
@click.option("--write", is_flag=True, help="Record a decisive verdict in the file with the same safe write as set-mtp-source.")
@click.option("--json", "json_", is_flag=True, help="Print one JSON object instead of text.")
@click.option("-q", "--quiet", is_flag=True, help="Print no progress on stderr.")
def verify(
    file: str | None, text_file: str | None, max_tokens: int, max_window: int, alpha: float, write: bool, json_: bool, quiet: bool
) -> None:
    """Measure whether the MTP head was trained on the pre-norm or post-norm hidden state.

    Runs the target model and its MTP head in numpy over real text, scores depth-1 draft acceptance for both
    feeds on the same positions, and prints a verdict with the strength of the evidence. Without FILE it
    runs on the demo model shipped in the package. Exit code 0 whatever the verdict, except that --write
    exits with 1 when the verdict is undetermined and nothing was written; 1 or 2 on errors.

    Example: gguftools verify model.gguf --text README.md --tokens 2048
    """
    if write and file is None:
        raise UserError("--write needs FILE: the demo model shipped in the package is not edited", 2)
    path = file if file is not None else demo_model_path()
    if text_file is None:
        text = sample_source()
    else:
        text = TextSource(text_file, path=text_file)

    def progress(stage: str, done: int, total: int) -> None:
        if not quiet:
            click.echo(f"[{done}/{total}] {stage} scored", err=True)

    try:
        with open_gguf(path) as model:
            target = model.files[0].path
            if write:
                # Check before the measurement, which can take long on a real model. The values are placeholders:
                # only the key names and the file matter to the checks.
                key = NEXTN_HIDDEN_SOURCE.format(arch=model.architecture)
                placeholder = NewValue(ValueType.STRING, "post_norm")
                check_edit(target, {key: placeholder, key + "_evidence": placeholder})
            verdict = run_verify(model, text, max_tokens=max_tokens, max_window=max_window, alpha=alpha, progress=progress)
            file_evidence = model.get(verdict.file_key + "_evidence")

        result = None
        unchanged = False
        if write and verdict.source != "undetermined":
            evidence_key = verdict.file_key + "_evidence"
            evidence = verdict.evidence_summary()
            unchanged = verdict.file_value == verdict.source and file_evidence == evidence
            if not unchanged:
                changes = {
                    verdict.file_key: NewValue(ValueType.STRING, verdict.source),
                    evidence_key: NewValue(ValueType.STRING, evidence),
                }
                result = set_metadata(target, changes)
                echo_edit_notes(result)

        if json_:
            report = verify_json(verdict, path)
            report["written"] = result is not None
            click.echo(json.dumps(report, indent=2))
        else:
            click.echo(verify_text(verdict, path, text.name))
        if result is not None:
            click.echo(f"wrote {verdict.file_key} = {verdict.source} to {printable(result.path)}", err=json_)
        elif unchanged:
            click.echo(f"{verdict.file_key}: already {verdict.source} with the same evidence; nothing to do", err=json_)
        elif write:
            raise UserError(f"{path}: the verdict is undetermined, so nothing was written")
    except GGUFToolsError as error:
        raise fail(error) from None


@cli.command()
@click.argument("file", type=click.Path())
@click.option("--schema", "schema_dir", type=click.Path(file_okay=False), help="Read {arch}.json from this folder instead of the schemas shipped with gguftools.")
@click.option("--json", "json_", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--strict", is_flag=True, help="Exit with 1 on warnings too, not only on errors.")
def validate(file: str, schema_dir: str | None, json_: bool, strict: bool) -> None:
    """Check a GGUF file against its architecture's schema and the MTP rules.

    Prints one line per finding, `level rule-id: message`. Exits with 0 when there is no error, 1 when
    there is one (or a warning, with --strict), and 2 when the file or the schema cannot be read.

    Example: gguftools validate model.gguf --strict
    """
    from gguftools.validate import report_json, report_text, validate_file

    try:
        report = validate_file(file, schema_dir)
    except GGUFToolsError as error:
        raise fail(error, 2) from None
    if json_:
        click.echo(json.dumps(report_json(report), indent=2, ensure_ascii=False))
    else:
        click.echo(report_text(report))
    sys.exit(report.exit_code(strict))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
