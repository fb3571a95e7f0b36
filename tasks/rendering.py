"""One Jinja2 environment per language for every human-facing text (notices, reports, playbooks).

Templates ending in `.html` are autoescaped (customer comments can hold `<script>`); text and
Markdown templates are not. Translations are JSON catalogs `templates/i18n/<area>.<lang>.json`
mapping the English text to the translation, used through `jinja2.ext.i18n` (`{{ _("...") }}`).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from cxloop.paths import TEMPLATES, shipped
from cxloop.tasks.masking import mask_pii

LANGUAGES = ("zh", "en")


@cache
def catalog(lang: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted(shipped("templates/i18n").glob(f"*.{lang}.json")):
        merged.update(json.loads(path.read_text(encoding="utf-8")))
    return merged


def translate(text: str, lang: str) -> str:
    return catalog(lang).get(text, text) if lang != "en" else text


# What Markdown (CommonMark/GFM) can turn into a link, an image, raw HTML, code or emphasis. An
# underscore inside a word (`expect_column_values`, `cx_office`) cannot emphasise and stays as is.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*~\[\]<>]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def escape_markdown(value: Any) -> str:
    """A value as literal text inside a Markdown notice (the `md` filter of the `.md` templates).

    Chat receivers render the notice as Markdown, so a customer's `![x](http://evil/x.png)` would
    load a tracking image and `[click](javascript:...)` would be a live link; a config string is no
    more trusted. Backslash-escaping brackets, angle brackets, backticks and emphasis marks keeps the
    text readable while no link, image, autolink, raw HTML or code span can form, and line breaks
    become spaces so a value can never start a heading, list or link definition of its own.
    """
    text = "" if value is None else str(value)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _LINE_BREAKS.sub(" ", text))


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{float(value):,.{digits}f}"


def _signed(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{float(value):+,.{digits}f}"


def to_target(value: Any, target: Any) -> float | None:
    """A KPI's distance from its target as notices and pages show it, value - target: NPS -22.4
    against 20 reads -42.4, a response time of 9.5 h against 4 reads +5.5 (the evidence's own
    `gap` is the shortfall, positive = worse, `actions.gap_of`). None when either is missing."""
    if value is None or target is None:
        return None
    return float(value) - float(target)


def oneline(value: Any) -> str:
    """Text on one line, every run of white space one space: a customer's comment quoted in
    Markdown stays inside its "> " quote, and a line of it cannot become a heading of the page."""
    return " ".join(str(value).split())


@cache
def environment(lang: str = "en") -> Environment:
    if lang not in LANGUAGES:
        raise ValueError(f"language {lang!r} not supported; use one of {LANGUAGES}")
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "htm", "xml", "html.j2"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    cat = catalog(lang)
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=lambda s: cat.get(s, s) if lang != "en" else s,
        ngettext=lambda s, p, n: (cat.get(s, s) if n == 1 else cat.get(p, p)) if lang != "en"
        else (s if n == 1 else p),
        newstyle=True,
    )
    env.filters.update(mask=mask_pii, num=_num, signed=_signed, md=escape_markdown, to_target=to_target,
                       oneline=oneline)
    env.globals["lang"] = lang
    return env


def render(template: str, lang: str, **context: Any) -> str:
    """Render a template in a language; `lang` is also visible to the template."""
    return environment(lang).get_template(template).render(lang=lang, **context)
