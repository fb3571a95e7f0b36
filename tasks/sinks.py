"""`cxfile://localhost/<dir>`: an Apprise scheme that writes each notice to a file.

For the demo and for trying cxloop without a mail server: every notice lands in a folder a user
can open. Add `?format=html` to keep HTML bodies (Apprise converts to text otherwise).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from apprise.decorators import notify

_UNSAFE = re.compile(r"[^\w.-]+", re.UNICODE)


@notify(on="cxfile", name="cxloop file sink")
def file_sink(body: str, title: str, notify_type: str, meta: dict[str, Any], *args: Any,
              **kwargs: Any) -> bool:
    folder = Path(meta.get("fullpath") or ".")
    folder.mkdir(parents=True, exist_ok=True)
    fmt = str(kwargs.get("body_format") or meta.get("qsd", {}).get("format") or "text")
    ext = {"html": "html", "markdown": "md"}.get(fmt, "txt")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    name = _UNSAFE.sub("_", title or "notice").strip("_")[:80] or "notice"
    text = f"<!-- {title} -->\n{body}" if ext == "html" else f"{title}\n\n{body}"
    (folder / f"{stamp}-{name}.{ext}").write_text(text, encoding="utf-8")
    return True
