"""The example project `cxloop init` writes: the commented `cxloop.toml` and its sample data."""

from __future__ import annotations

from pathlib import Path

from cxloop.paths import shipped


def write_example_project(directory: Path, force: bool = False) -> list[Path]:
    """Copy the commented example `cxloop.toml` and its sample data into `directory`.

    Refuses to overwrite an existing file unless `force`: an admin's edited config is worth more
    than the example. Returns the files written.
    """

    src = shipped("templates/init")
    files = sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    targets = [(p, directory / p.relative_to(src)) for p in files]
    clash = [str(t) for _, t in targets if t.exists()]
    if clash and not force:
        raise FileExistsError(f"{', '.join(clash)} already exist(s); use --force to overwrite")
    written = []
    for s, t in targets:
        try:
            t.parent.mkdir(parents=True, exist_ok=True)
            t.write_bytes(s.read_bytes())
        except OSError as exc:  # read-only folder, a file where a folder should be, a full disk
            raise CannotWrite(f"cannot write {t}: {exc.strerror or exc}") from None
        written.append(t)
    return written


class CannotWrite(OSError):
    """`cxloop init` could not write one of its files; the message names it."""
