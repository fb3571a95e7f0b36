"""Load what the later stages need on a thread of its own while collect reads and stores.

Great Expectations takes about 3 s to import, jieba about 1 s to load its dictionary, the
sentiment model, statsmodels and scikit-learn another second, and the later stages' own modules,
Apprise and the compiled templates about 1.5 s more, and the fork server of collect's parse
worker (`cxloop.tasks.collect.chunked`) about 1.5 s; each would otherwise be paid inside its
stage, after collect. Collect spends much of its time in SQLite and the CSV parser, which let
other threads run, so on a machine with two cores most of that loading costs nothing. A failure
here is ignored: the stage that needs the thing loads it again and reports its own error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cxloop.config import Settings

log = logging.getLogger(__name__)


def _migrations() -> None:
    """Alembic and the migration scripts, which the cycle's first `open_db` checks (~0.15 s)."""
    from alembic import command  # noqa: F401
    from alembic.script import ScriptDirectory

    from cxloop.db import alembic_config

    ScriptDirectory.from_config(alembic_config(None)).get_current_head()


def _gx() -> None:
    from cxloop.tasks import validate

    validate._gx()


def _stats() -> None:
    import statsmodels.stats.proportion  # noqa: F401  (KPI intervals, effects)


def _dictionary() -> None:
    from cxloop.tasks.segmentation import initialize

    initialize()


def _stages() -> None:
    import apprise  # noqa: F401  (with its plugins: about 0.4 s)

    import cxloop.tasks.actions
    import cxloop.tasks.kpis
    import cxloop.tasks.notify
    import cxloop.tasks.remeasure
    import cxloop.tasks.report
    import cxloop.tasks.sinks  # noqa: F401


def _templates() -> None:
    """Compile every notice, report and playbook template once per process (Jinja caches them)."""
    from cxloop.paths import TEMPLATES
    from cxloop.tasks.rendering import LANGUAGES, environment

    names = [p.relative_to(TEMPLATES).as_posix() for p in sorted(TEMPLATES.rglob("*"))
             if p.suffix in (".html", ".md", ".j2") and p.relative_to(TEMPLATES).parts[0] != "init"]
    for lang in LANGUAGES:
        env = environment(lang)
        for name in names:
            env.get_template(name)


def _parse_worker(settings: Settings) -> None:
    """Start the fork server of collect's parse worker if a source has a file big enough to be
    read in chunks (it holds pandas in memory: not worth it for small exports)."""
    from cxloop.tasks import workers
    from cxloop.tasks.collect import chunked, source_files
    from cxloop.tasks.readers import SourceError

    for source in settings.sources:
        if source.kind != "csv":
            continue
        try:
            files = source_files(settings, source)
        except SourceError:  # collect reports it
            continue
        if any(chunked.wanted(source, path) for path in files):
            workers.start_server()
            return


def _steps(settings: Settings) -> list[Callable[[], object]]:
    from cxloop.tasks.sentiment import load_model

    # In the order the cycle needs them: it opens the database, then collect forks its worker for
    # a big file from the fork server.
    return [_migrations, lambda: _parse_worker(settings), _gx, _stats, lambda: load_model(settings),
            _dictionary, _stages, _templates]


def load_libraries(settings: Settings) -> None:
    """Import and load everything now, in this thread."""
    for step in _steps(settings):
        step()


def warm_up(settings: Settings) -> threading.Thread:
    """Start loading; the caller may `join()` but need not."""
    def run() -> None:
        for step in _steps(settings):
            try:
                step()
            except Exception as exc:  # the stage that needs it reports the real error
                log.debug("warm-up step failed: %s", exc)

    thread = threading.Thread(target=run, name="cxloop-warm-up", daemon=True)
    thread.start()
    return thread
