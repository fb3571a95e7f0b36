"""Issue 17, item 1: the package ships every file it reads at run time.

`.ci/wheel-check` proves it end to end with a built wheel in a fresh environment; this test says
which file a change forgot, in a second, from `pyproject.toml` alone.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import cxloop
from cxloop.paths import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _package_of(folder: Path) -> str:
    return ".".join(["cxloop", *folder.relative_to(ROOT).parts])


def test_every_shipped_file_is_package_data() -> None:
    packages, data = set(SETUPTOOLS["packages"]), SETUPTOOLS["package-data"]
    shipped = [p for folder in ("templates", "expectations", "migrations") for p in (ROOT / folder).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc")]
    assert len(shipped) > 50
    missing = []
    for path in shipped:
        package = _package_of(path.parent)
        patterns = data.get(package, []) if package in packages else []
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            missing.append(str(path.relative_to(ROOT)))
    assert missing == [], "not in the wheel: add the folder to packages and a pattern to package-data"


def test_every_python_package_is_listed() -> None:
    found = {_package_of(init.parent) for init in ROOT.rglob("__init__.py")  # not .venv, .git, ...
             if not any(part in ("tests", "build") or part.startswith(".")
                        for part in init.relative_to(ROOT).parts)}
    assert found - set(SETUPTOOLS["packages"]) == set()


def test_one_version() -> None:
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert SETUPTOOLS["dynamic"]["version"] == {"attr": "cxloop.__version__"}
    assert cxloop.__version__.count(".") == 2
