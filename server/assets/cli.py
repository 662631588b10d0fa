"""`import-gis`: import the GIS layers of the manifest and print what each entry did."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from server.assets.importer import EntrySummary, ImportFailed, import_all


def summary_table(summaries: list[EntrySummary]) -> Table:
    """A rich table: one line per entry with its counts and the first examples of what was odd."""
    table = Table(title="GIS import", show_lines=False)
    for col in ("entry", "target", "status", "read", "imported", "new", "changed", "removed", "dup ids",
                "no id", "no location", "repaired", "zero-length", "seconds"):
        table.add_column(col, justify="left" if col in ("entry", "target", "status") else "right")
    colour = {"imported": "green", "skipped": "dim", "failed": "bold red"}
    for s in summaries:
        table.add_row(s.entry, s.target, f"[{colour.get(s.status, 'white')}]{s.status}[/]", str(s.rows_read),
                      str(s.imported), str(s.inserted), str(s.updated), str(s.removed), str(s.duplicate_ids),
                      str(s.without_id), str(s.without_location), str(s.repaired), str(s.zero_length_dropped),
                      f"{s.seconds:.1f}")
    return table


def _notes(summaries: list[EntrySummary]) -> list[str]:
    out = []
    for s in summaries:
        if s.error:
            out.append(f"[red]{s.entry}[/]: {s.error}")
        for label, examples in (("duplicate ids", s.duplicate_examples), ("no location", s.without_location_examples),
                                ("repaired", s.repaired_examples),
                                ("zero-length lines dropped", s.zero_length_examples)):
            if examples:
                out.append(f"{s.entry}: {label}: {', '.join(examples)}")
        out.extend(f"{s.entry}: {note}" for note in s.notes)
        if s.stale_kept:
            out.append(f"{s.entry}: {s.stale_kept} rows no longer in the source kept (referenced by jobs/reports)")
    return out


def import_gis(
    only: Annotated[Optional[list[str]], typer.Option("--only", help="entry or layer name (repeatable)")] = None,
    manifest: Annotated[Optional[Path], typer.Option(help="layer manifest (default: settings.gis_manifest)")] = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="source folder (default: settings.gis_data_dir)")] = None,
    force: Annotated[bool, typer.Option("--force", help="re-import entries even if unchanged")] = False,
) -> None:
    """Import boundary, wards, roads, asset layers and synthetic street lights (idempotent)."""
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 150)
    try:
        summaries = import_all(manifest=manifest, data_dir=data_dir, only=only or None, console=err, force=force)
    except ImportFailed as exc:
        err.print(summary_table(exc.summaries))
        for line in _notes(exc.summaries):
            err.print(line)
        err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    err.print(summary_table(summaries))
    for line in _notes(summaries):
        err.print(line)
    failed = [s.entry for s in summaries if s.status == "failed"]
    if failed:
        err.print(f"[yellow]imported with errors (on_error: continue): {', '.join(failed)}[/]")
