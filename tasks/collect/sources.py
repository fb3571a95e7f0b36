"""Which files a configured source names, and reading one file with the reader of its kind."""

from __future__ import annotations

import glob
from pathlib import Path

from cxloop.config import Settings, SourceConfig
from cxloop.tasks import readers
from cxloop.tasks.readers import RawTable, SourceError


def _label(settings: Settings, path: Path) -> str:
    """How a file is named in messages and records: relative to the config when it is beneath it."""
    try:
        return str(path.resolve().relative_to(settings.base_dir.resolve()))
    except ValueError:
        return str(path)


def source_files(settings: Settings, source: SourceConfig) -> list[Path]:
    """The files a source's `path` names; a glob is expanded and taken in name order, so an
    export named later (usually newer) wins when two overlap."""
    assert source.path is not None
    pattern = settings.resolve(source.path)
    if glob.has_magic(str(pattern)):
        matches = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
        if not matches:
            raise SourceError(f"{source.path}: no file matches (looked for {pattern})")
        return matches
    if not pattern.is_file():
        raise SourceError(f"{source.path}: file not found (looked for {pattern})")
    return [pattern]


def read_file(settings: Settings, source: SourceConfig, path: Path, label: str,
              data: bytes | None = None) -> RawTable:
    """One file of a file-based source, read by its kind's reader (`data`: its bytes, if read)."""
    if source.kind == "csv":
        return readers.read_csv(path, source.encoding, label, data)
    if source.kind == "excel":
        return readers.read_excel(path, source.sheet, label, data)
    if source.kind == "json":
        return readers.read_json(path, source.encoding, label, data)
    return readers.read_jsonl(path, source.encoding, label, data)
