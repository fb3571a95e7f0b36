"""Where a notice goes: a recipient's routes (Apprise URLs or config tags), described without
secrets, and the `Router` that resolves them to Apprise targets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from cxloop.config import Settings
from cxloop.tasks.notify.secrets import CONFIG_URL, install_secret_filter, secret_fragments

if TYPE_CHECKING:
    import apprise  # on use: about 0.4 s that `cxloop` start-up need not pay

ESCALATION_RECIPIENT, DATA_OWNERS = "escalation", "data_owners"
CASE_ESCALATION = "case_escalation"  # follow-up cases past a deadline: `[cases] escalation_notify`
USER_PREFIX = "user:"  # a message to one account of the web workspace (`cxloop users link`)


def routes_for(settings: Settings, recipient: str) -> list[str]:
    """The `notify` entries (Apprise URLs or tags) configured for a recipient."""
    if recipient == ESCALATION_RECIPIENT:
        routes = list(settings.actions.escalation_notify)
    elif recipient == CASE_ESCALATION:  # a customer-service lead, say; else whoever hears of actions
        routes = list(settings.cases.escalation_notify or settings.actions.escalation_notify)
    elif recipient == DATA_OWNERS:
        routes = list(settings.quality.data_owners)
        routes += [r for s in settings.sources for r in s.data_owners]
    elif recipient.startswith(USER_PREFIX):
        mail = settings.web.link_mail
        address = quote(recipient[len(USER_PREFIX):], safe="@")
        routes = [f"{mail}{'&' if '?' in mail else '?'}to={address}"] if mail else []
    else:
        dept = settings.departments.get(recipient)
        routes = list(dept.notify) if dept else []
    return list(dict.fromkeys(r.strip() for r in routes if r.strip()))


def is_url(route: str) -> bool:
    return "://" in route


def describe_url(url: str) -> str:
    """An Apprise URL with its secrets hidden, short enough for a table: scheme, host and masked path."""
    import apprise  # on use: about 0.4 s that `cxloop` start-up need not pay

    import cxloop.tasks.sinks  # noqa: F401  (registers cxfile://)

    install_secret_filter().add(secret_fragments(url))  # Apprise logs a rejected token verbatim
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        scheme = url.split("://", 1)[0]
        return f"{scheme}://*** (not a usable Apprise URL)"
    return _privacy_url(plugin)


_WEBHOOK_SCHEMES = ("json", "jsons", "xml", "xmls", "form", "forms")


def _privacy_url(plugin: Any) -> str:
    """Apprise's privacy form without the query; generic webhooks also get their path masked,
    since Apprise shows it in full and such URLs often carry their token there."""
    text = unquote(str(plugin.url(privacy=True)).split("?", 1)[0])
    scheme, sep, rest = text.partition("://")
    if scheme in _WEBHOOK_SCHEMES and "/" in rest:
        host, _, path = rest.partition("/")
        path = "/".join(f"{seg[0]}...{seg[-1]}" if len(seg) >= 6 else seg for seg in path.split("/"))
        text = f"{scheme}{sep}{host}/{path}"
    return text


def describe_routes(routes: Iterable[str]) -> str:
    parts = [describe_url(r) if is_url(r) else f"tag:{r}" for r in routes]
    return "; ".join(parts) if parts else "(no route)"


@dataclass
class Target:
    """One receiver behind a route: an instantiated Apprise plugin."""

    key: str  # masked, stable: what `OutboxMessage.delivered` remembers
    plugin: Any
    # Gets the HTML body: the plugin's own format (a `?format=` in its URL, else its first one).
    # Apprise 2 gives many plugins several formats (e-mail: HTML then text; webhooks: text first).
    html: bool
    secrets: list[str]


class Router:
    """Turns `notify` entries into Apprise plugins; loads the Apprise config file once per run."""

    def __init__(self, settings: Settings) -> None:
        import apprise  # on use: about 0.4 s that `cxloop` start-up need not pay

        import cxloop.tasks.sinks  # noqa: F401  (registers cxfile://)

        self.settings = settings
        self.log_filter = install_secret_filter()
        self.asset = apprise.AppriseAsset(app_id=settings.project.name or "cxloop",
                                          app_desc="cxloop notices", storage_mode="memory")
        self._config: apprise.Apprise | None = None
        self._config_error: str | None = None
        self._loaded = False

    def _config_servers(self) -> apprise.Apprise | None:
        import apprise  # on use: about 0.4 s that `cxloop` start-up need not pay

        if not self._loaded:
            self._loaded = True
            name = self.settings.notify.apprise_config
            if not name:
                self._config_error = "no [notify] apprise_config file is set"
            else:
                path = self.settings.resolve(name)
                if not path.is_file():
                    self._config_error = f"Apprise config {path} not found"
                else:
                    for url in CONFIG_URL.findall(path.read_text(encoding="utf-8", errors="replace")):
                        self.log_filter.add(secret_fragments(url.rstrip(":")))
                    cfg = apprise.AppriseConfig(asset=self.asset)
                    if not cfg.add(str(path)):
                        self._config_error = f"Apprise config {path} could not be read"
                    else:
                        self._config = apprise.Apprise(asset=self.asset)
                        self._config.add(cfg)
        return self._config

    def _target(self, plugin: Any) -> Target:
        from apprise import NotifyFormat

        raw = str(plugin.url(privacy=False))
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        return Target(key=f"{_privacy_url(plugin)} #{digest}", plugin=plugin,
                      html=plugin.resolve_format(None) == NotifyFormat.HTML,
                      secrets=secret_fragments(raw))

    def resolve(self, routes: list[str]) -> tuple[list[Target], list[str], list[str]]:
        """(receivers, problems, secrets): problems say which routes led nowhere, secret-free."""
        import apprise  # on use: about 0.4 s that `cxloop` start-up need not pay

        targets: dict[str, Target] = {}
        problems: list[str] = []
        secrets: list[str] = []
        for route in routes:
            if is_url(route):
                secrets += secret_fragments(route)
                self.log_filter.add(secrets)
                plugin = apprise.Apprise.instantiate(route, asset=self.asset, suppress_exceptions=True)
                if plugin is None:
                    problems.append(f"{describe_url(route)}: Apprise cannot use this URL")
                    continue
                plugins = [plugin]
            else:
                cfg = self._config_servers()
                if cfg is None:
                    problems.append(f"tag {route}: {self._config_error}")
                    continue
                plugins = list(cfg.find(tag=route))
                if not plugins:
                    problems.append(f"tag {route}: no URL in the Apprise config has this tag")
                    continue
            for plugin in plugins:
                target = self._target(plugin)
                secrets += target.secrets
                targets.setdefault(target.key, target)
        self.log_filter.add(secrets)
        return list(targets.values()), problems, secrets
