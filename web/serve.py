"""The application factory uvicorn's worker processes import (`cxloop web --workers N`): each
worker reads the config named by $CXLOOP_CONFIG, which `cxloop web` sets to the one it loaded."""

from __future__ import annotations

import os

from fastapi import FastAPI

from cxloop.config import load_settings
from cxloop.db import open_db
from cxloop.web.app import create_app


def app_from_env() -> FastAPI:
    settings = load_settings(os.environ.get("CXLOOP_CONFIG"))
    return create_app(settings, open_db(settings.database_url))
