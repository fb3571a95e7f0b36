"""Issue 17, item 6: every private internal of a library that cxloop still uses, pinned.

Each was chosen for a measured reason (see the docstring where it is used) and has no public
equivalent in the pinned versions. An upgrade that removes or changes one makes cxloop slower or
wrong without an error, so each test here fails instead, naming what to look at.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest


def test_gx_batch_fingerprint_threshold_still_exists() -> None:
    """`tasks/validate.py` sets it to 0: GX hashes every value of an in-memory batch below it."""
    from great_expectations.execution_engine import pandas_execution_engine as pee

    assert isinstance(pee.HASH_THRESHOLD, int | float), "GX renamed HASH_THRESHOLD: re-measure validate"
    assert "< HASH_THRESHOLD" in inspect.getsource(pee), "GX no longer reads it: drop the setting"


def test_gx_ephemeral_context_still_saves_its_config_through_the_method_cxloop_stubs() -> None:
    """`tasks/validate.py` replaces `_save_project_config` with a no-op (~15 ms per change)."""
    from cxloop.tasks.validate.gx import _context

    ctx: Any = _context()
    assert callable(getattr(type(ctx), "_save_project_config", None)), \
        "GX no longer has _save_project_config: the stub does nothing; re-measure validate"
    assert ctx._save_project_config() is None
    source = inspect.getsource(type(ctx))
    assert "_save_project_config()" in source or any(
        "_save_project_config()" in inspect.getsource(klass) for klass in type(ctx).__mro__[1:]
        if klass.__module__.startswith("great_expectations")), "GX stopped calling it: drop the stub"


def test_prefect_temporary_server_is_one_instance_per_process() -> None:
    """`flows/process.py` starts Prefect's temporary server itself, so that it can watch it; that is
    only the server Prefect's clients use if the class hands out one instance."""
    from prefect.server.api.server import SubprocessASGIServer

    assert SubprocessASGIServer() is SubprocessASGIServer(), \
        "SubprocessASGIServer is no longer a singleton: cxloop would start a second server"


@pytest.mark.parametrize("url", ["json://127.0.0.1:9/hook", "mailto://user:pass@mail.example.com?to=head@example.com"])
def test_apprise_plugins_still_declare_their_header_argument(url: str) -> None:
    """`tasks/notify.py` adds the notice's idempotency key where a plugin lists `headers` in its
    `template_kwargs`; without it every notice would go out without its key."""
    import apprise

    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=False)
    assert "headers" in getattr(plugin, "template_kwargs", {})
