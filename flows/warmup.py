"""Load what the later stages need on a thread of its own while collect reads and stores.

Great Expectations takes about 3 s to import, jieba about 1 s to load its dictionary, and the
sentiment model, statsmodels and scikit-learn another second; each would otherwise be paid inside
its stage, after collect. Collect spends much of its time in SQLite and the CSV parser, which let
other threads run, so on a machine with two cores most of that loading costs nothing. A failure
here is ignored: the stage that needs the thing loads it again and reports its own error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from config import Settings

log = logging.getLogger(__name__)


def _gx() -> None:
    from tasks import validate

    validate._gx()


def _stats() -> None:
    import statsmodels.stats.proportion  # noqa: F401  (KPI intervals, effects)


def _dictionary() -> None:
    from tasks.comments import _jieba

    _jieba().initialize()


def _steps(settings: Settings) -> list[Callable[[], object]]:
    from tasks.sentiment import load_model

    return [_gx, _stats, lambda: load_model(settings), _dictionary]


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
