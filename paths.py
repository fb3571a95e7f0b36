"""Where the shipped, user-editable resources live: inside the package, in a wheel as in a checkout."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
TEMPLATES = ROOT / "templates"
EXPECTATIONS = ROOT / "expectations"


class MissingResource(FileNotFoundError):
    """A file cxloop ships is not where the package keeps it: a broken or partial install. Said in
    one line naming the file, rather than a command carrying on with nothing (issue 17, item 2)."""


def shipped(relative: str) -> Path:
    """The shipped file or folder `relative` (to the package), which must exist and, for a folder,
    hold at least one file."""
    path = ROOT / relative
    if not path.exists() or (path.is_dir() and not any(p.is_file() for p in path.rglob("*"))):
        raise MissingResource(f"cxloop's shipped {relative} is missing or empty ({path}); "
                              "reinstall cxloop (pip install --force-reinstall cxloop)")
    return path
