"""`cxfile://localhost/<dir>`: an Apprise scheme that writes each notice to a file.

For the demo and for trying cxloop without a mail server: every notice lands in a folder a user
can open. Apprise hands custom schemes text or Markdown (it converts HTML to text first), so
route Markdown digests here.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from apprise.decorators import notify

_UNSAFE = re.compile(r"[^\w.-]+", re.UNICODE)
# Apprise's own logger: what is said there at WARNING is what the outbox records as the reason.
# An exception raised here would be recorded only as "An exception occured sending ...".
_log = logging.getLogger("apprise")


@notify(on="cxfile", name="cxloop file sink")
def file_sink(body: str, title: str, notify_type: str, meta: dict[str, Any], *args: Any,
              **kwargs: Any) -> bool:
    folder = Path(meta.get("fullpath") or ".")
    ext = "md" if "markdown" in str(kwargs.get("body_format", "")).lower() else "txt"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    name = _UNSAFE.sub("_", title or "notice").strip("_")[:80] or "notice"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stamp}-{name}.{ext}").write_text(f"# {title}\n\n{body}\n", encoding="utf-8")
    except OSError as exc:  # a full disk, a folder that is a file, no permission
        _log.warning("cxfile: cannot write to %s: %s", folder, exc.strerror or exc)
        return False
    return True
