"""The collect stage: every configured source of one period, file by file (reused, chunked or
read whole).
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import Engine

from cxloop.config import Settings, SourceConfig
from cxloop.models import utcnow
from cxloop.periods import parse_period
from cxloop.tasks import readers
from cxloop.tasks.collect import reuse
from cxloop.tasks.collect.big import _collect_big, _is_big
from cxloop.tasks.collect.outcomes import collect_outcomes
from cxloop.tasks.collect.reuse import _fingerprint
from cxloop.tasks.collect.sources import _label, read_file, source_files
from cxloop.tasks.collect.store import _record_failure, _store
from cxloop.tasks.collect.summary import CollectSummary, ImportSummary
from cxloop.tasks.mapping import prepare
from cxloop.tasks.readers import SourceError


def collect_source(settings: Settings, engine: Engine, source: SourceConfig, period: str
                   ) -> list[ImportSummary]:
    """Load one configured source (every file its glob matches, or its SQL query).

    A file whose exact content was imported before under the same mapping is not parsed again
    when that says nothing can change for this period (see `_reuse`)."""
    started = utcnow()  # every record of this collect of the source says so (`ImportSummary`)
    loaders: list[tuple[str, Path | None]] = []
    if source.kind == "sql":
        assert source.url is not None and source.query is not None
        url = readers.resolve_sql_url(source.url, settings.base_dir)
        loaders.append((f"sql:{readers.mask_url(url)}", None))
    else:
        try:
            files = source_files(settings, source)
        except SourceError as exc:
            imp = ImportSummary(source.name, source.path or "", error=str(exc), collect_started=started)
            _record_failure(engine, period, imp, "")
            return [imp]
        loaders.extend((_label(settings, path), path) for path in files)
    fingerprint = _fingerprint(settings, source)
    done: list[ImportSummary] = []
    for label, path in loaders:
        if path is not None and _is_big(source, path):
            big = _collect_big(settings, engine, source, path, label, fingerprint, period, started)
            if big is not None:
                done.append(big)
                continue
        imp = ImportSummary(source.name, label, collect_started=started)
        digest = ""
        try:
            if path is None:
                raw = readers.read_sql(url, source.query or "", label)
            else:
                data = functools.cache(path.read_bytes)
                digest = readers.file_digest(data())
                if reuse._reuse(engine, source, label, data, digest, fingerprint, period, imp):
                    done.append(imp)
                    continue
                raw = read_file(settings, source, path, label, data())
                data.cache_clear()
            digest, imp.encoding = raw.content_hash, raw.encoding
            prep = prepare(settings, source, raw, period, label)
        except SourceError as exc:
            imp.error = str(exc)
        except Exception as exc:  # an unforeseen shape of data must not stop the other sources
            imp.error = f"{label}: cannot be read ({type(exc).__name__}: {exc})"
        if imp.error:
            _record_failure(engine, period, imp, digest)
        else:
            _store(engine, source, prep, period, imp, digest, {
                "config": fingerprint, "rows": prep.periods, "undated": prep.undated, "reused": None})
        done.append(imp)
    return done


def collect_period(settings: Settings, engine: Engine, period: str) -> CollectSummary:
    """Read every `[[sources]]` entry and load the responses submitted in `period`; then the
    `[outcomes]` files, when configured (not monthly: every file, unchanged ones skipped)."""
    summary = CollectSummary(parse_period(period))
    for source in settings.sources:
        summary.imports.extend(collect_source(settings, engine, source, summary.period))
    if settings.outcomes is not None:
        summary.outcomes = collect_outcomes(settings, engine)
    return summary
