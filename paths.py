"""Where the shipped, user-editable resources live (next to the code, also in an editable install)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
TEMPLATES = ROOT / "templates"
EXPECTATIONS = ROOT / "expectations"
