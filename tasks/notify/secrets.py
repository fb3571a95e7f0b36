"""Secrets in routes: found in Apprise URLs, scrubbed from any text and from Apprise's logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

_SECRET_KEY = re.compile(r"token|key|secret|pass|pwd|auth|sig|code", re.I)
# Schemes whose host is a server name, not a credential.
_PLAIN_HOST_SCHEMES = ("mailto", "mailtos", "json", "jsons", "xml", "xmls", "form", "forms", "cxfile",
                       "workflows", "workflow", "http", "https")


def secret_fragments(url: str) -> list[str]:
    """Parts of a URL that may be secret: the URL itself, user info, path segments, query values."""
    frags = {url}
    try:
        parts = urlsplit(url)
        candidates = [parts.password or ""]
        if parts.password is None and "@" in parts.netloc:  # dingtalk://SECRET@TOKEN, slack://bot@...
            candidates.append(parts.netloc.rsplit("@", 1)[0])
        candidates += [seg for seg in parts.path.split("/") if len(seg) >= 6 and "@" not in unquote(seg)]
        candidates += [value for key, _, value in (kv.partition("=") for kv in parts.query.split("&"))
                       if _SECRET_KEY.search(key) and len(value) >= 4]
        host = parts.netloc.rsplit("@", 1)[-1].split(":")[0]
        if parts.scheme not in _PLAIN_HOST_SCHEMES and len(host) >= 6:
            candidates.append(host)  # wecombot://KEY, feishu://TOKEN: the token is the "host"
    except ValueError:
        candidates = []
    for c in candidates:
        if len(c) >= 3:
            frags.update({c, unquote(c), quote(unquote(c), safe="")})
    return sorted((f for f in frags if len(f) >= 3), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Remove every secret fragment from a text (longest first, so a URL goes before its parts)."""
    for s in sorted(set(secrets), key=len, reverse=True):
        if s:
            text = text.replace(s, "***")
    return text


class SecretFilter(logging.Filter):
    """Scrubs every secret cxloop has seen in a route from Apprise's (and urllib3's) log records.

    Apprise logs request URLs and exception texts at DEBUG/WARNING; webhook URLs carry their token
    in the path, so whatever logging the host application configures must never see them.
    """

    LOGGERS = ("apprise", "urllib3.connectionpool")

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        self.secrets.update(s for s in secrets if len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            cleaned = scrub(text, self.secrets)
            if cleaned != text:
                record.msg, record.args = cleaned, ()
        return True


_SECRET_FILTER = SecretFilter()
CONFIG_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


def install_secret_filter() -> SecretFilter:
    for name in SecretFilter.LOGGERS:
        logger = logging.getLogger(name)
        if _SECRET_FILTER not in logger.filters:
            logger.addFilter(_SECRET_FILTER)
    return _SECRET_FILTER
