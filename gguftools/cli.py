"""The gguftools command line: parse options, call the library, render, turn errors into exit codes."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from gguftools import __version__
from gguftools.container import ValueType, open_gguf
from gguftools.container.writer import NewValue
from gguftools.edit import set_metadata
from gguftools.errors import GGUFToolsError
from gguftools.mtp import NEXTN_HIDDEN_SOURCE, Layout, describe_mtp
from gguftools.render import inspect_json, inspect_text, printable

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
@click.argument("file", type=click.Path(dir_okay=False))
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


@cli.command("set-mtp-source")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--post-norm", "source", flag_value="post_norm", help="The head was trained on the hidden state after the final norm.")
@click.option("--pre-norm", "source", flag_value="pre_norm", help="The head was trained on the hidden state before the final norm.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file instead of replacing FILE.")
@click.option("--dry-run", is_flag=True, help="Show the change without writing anything.")
@click.option("--force", is_flag=True, help="Write even when the file has no MTP tensors, and replace an existing --output.")
def set_mtp_source(file: str, source: str | None, output: str | None, dry_run: bool, force: bool) -> None:
    """Write the key {arch}.nextn_hidden_source (post_norm or pre_norm).

    Every other key, every tensor info and every tensor byte stays the same. The file is replaced only once
    the new one is complete and reads back correctly.

    Example: gguftools set-mtp-source --post-norm model.gguf
    """
    if source is None:
        raise UserError("choose --post-norm or --pre-norm", 2)
    try:
        with open_gguf(file) as model:
            arch = model.architecture
            if arch is None:
                raise UserError(f"{file}: general.architecture is missing, so the key name is unknown")
            info = describe_mtp(model)
            key = NEXTN_HIDDEN_SOURCE.format(arch=arch)
            old = info.hidden_source
            target = model.path
            if model.is_split and model.files[0].path != model.path:
                target = model.files[0].path
        if info.layout in (Layout.TRUNK_ONLY, Layout.STALE_KEY) and not force:
            raise UserError(
                f"{file}: the file has no MTP tensors (blk.N.nextn.*), so the key would describe nothing; "
                f"pass --force to write it anyway"
            )
        old_text = printable(old) if old is not None else "(not set)"
        if dry_run:
            click.echo(f"{key}: {old_text} -> {source}")
            return
        if old == source and output is None:
            click.echo(f"{key}: already {source}; nothing to do")
            return
        result = set_metadata(target, {key: NewValue(ValueType.STRING, source)}, output=output, overwrite_output=force)
        for stale in result.stale_removed:
            click.echo(f"removed a temporary file left by an interrupted edit: {stale}", err=True)
        click.echo(f"{key}: {old_text} -> {source} ({printable(result.path)})")
    except GGUFToolsError as error:
        raise fail(error) from None


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
