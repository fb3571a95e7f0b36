"""The PDF of a report page, printed by a headless Chromium when one is installed."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def find_chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def write_pdf(html_path: Path, timeout: float = 120) -> Path:
    """Print a report page to PDF with headless Chromium (the page's print CSS applies).

    Chromium is already needed for the browser test and is a Debian package; no PDF library is
    added for this one copy."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("--pdf needs Chromium (apt-get install chromium)")
    pdf = html_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="cxloop-chromium-") as profile:
        proc = subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
             f"--print-to-pdf={pdf}", html_path.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not pdf.exists():
        raise RuntimeError(f"{html_path}: Chromium could not print a PDF: {proc.stderr.strip()[-400:]}")
    return pdf
