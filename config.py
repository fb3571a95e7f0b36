"""The `cxloop.toml` schema: validated once at start-up so a typo fails loudly, not mid-cycle.

Every value may be overridden from the environment (`CXLOOP_DATABASE_URL`,
`CXLOOP_DEPARTMENTS__LOGISTICS__NOTIFY`, ...) and `${VAR}` inside any string is expanded,
so secrets such as SMTP passwords need not sit in the file.
"""

from __future__ import annotations

import codecs
import os
import re
import tomllib
from collections.abc import Sequence
from datetime import date, time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cxloop.models import MAPPED_FIELDS, SCORE_FIELDS
from cxloop.vocabulary import CROSS_SEP, KPIS

Scope = Literal[
    "overall", "department", "journey_stage", "touchpoint", "channel", "segment", "region", "topic"
]
OWNABLE = ("journey_stage", "touchpoint", "channel", "topic")
KPI_NAMES = KPIS  # the KPIs a config may name: the vocabulary's
ENV_PREFIX = "CXLOOP_"
SEVERITY_LEVELS = ("high", "medium", "low")
DEFAULT_CHANNELS = ["web", "app", "hotline", "store", "email", "social", "ticket", "wechat", "survey"]


class ConfigError(Exception):
    """A config that cannot be used; the message names the file and the key path."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectConfig(Strict):
    name: str = "cxloop"
    timezone: str = "Asia/Shanghai"
    language: Literal["zh", "en"] = "zh"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v


class DatabaseConfig(Strict):
    url: str = ""

    @field_validator("url")
    @classmethod
    def _usable_url(cls, v: str) -> str:
        """An unparsable URL or an unknown database kind fails here, naming the key, instead of
        as SQLAlchemy's traceback when the database is first opened."""
        if v:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

            try:
                make_url(v).get_dialect()
            except ArgumentError as exc:
                raise ValueError(f"not a usable SQLAlchemy database URL ({exc})") from None
        return v


class SourceConfig(Strict):
    """One feedback export. Canonical field names given directly are constants for the whole source."""

    name: str
    kind: Literal["csv", "excel", "json", "jsonl", "sql"]
    path: str | None = None
    url: str | None = None
    query: str | None = None
    encoding: str = "auto"
    sheet: str | int | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, Any]] = Field(default_factory=dict)
    constants: dict[str, Any] = Field(default_factory=dict)
    data_owners: list[str] = Field(default_factory=list)
    drivers: dict[str, str] = Field(default_factory=dict)  # driver name -> the column of its rating

    @model_validator(mode="before")
    @classmethod
    def _lift_constants(cls, data: Any) -> Any:
        if isinstance(data, dict):
            consts = dict(data.get("constants", {}))
            for key in [k for k in data if k in MAPPED_FIELDS]:
                consts[key] = data.pop(key)
            if consts:
                data["constants"] = consts
        return data

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        if self.kind == "sql":
            if not (self.url and self.query):
                raise ValueError("a sql source needs both `url` and `query`")
        elif not self.path:
            raise ValueError(f"a {self.kind} source needs `path` (a file or glob)")
        for section, fields in (("columns", self.columns), ("values", self.values),
                                ("constants", self.constants)):
            unknown = sorted(set(fields) - set(MAPPED_FIELDS))
            if unknown:
                raise ValueError(f"{section}: unknown canonical field(s) {unknown}; "
                                 f"known: {', '.join(MAPPED_FIELDS)}")
        return self


class DriverConfig(Strict):
    """One attribute question analysed as a key driver (tasks/drivers.py): "seat comfort", 1-5."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    label_zh: str = ""
    label_en: str = ""
    scale: tuple[float, float] = (1, 5)
    not_rated: list[str | int | float] = Field(default_factory=list)  # answers meaning "not rated", e.g. 0
    journey_stage: str | None = None  # where it sits, and so which department owns it
    touchpoint: str | None = None

    @model_validator(mode="after")
    def _check(self) -> DriverConfig:
        if not self.scale[0] < self.scale[1]:
            raise ValueError(f"scale: the lowest rating must be below the highest, not {list(self.scale)}")
        return self


class DriverAnalysisConfig(Strict):
    outcome: Literal["nps", "csat", "ces", "cx_success", "cx_effort", "cx_emotion"] = "nps"
    min_n: int = Field(default=200, ge=30)  # responses per scope before drivers are analysed
    resamples: int = Field(default=400, ge=99)


OUTCOME_MEASURES = ("orders", "spend", "visits")  # summed over the window after a response
OUTCOME_FLAGS = ("churned", "renewed")  # 1 when set on any row in the window
OUTCOME_FIELDS = ("customer_id", "date", *OUTCOME_MEASURES, *OUTCOME_FLAGS)


class OutcomesConfig(Strict):
    """What customers did afterwards (orders, spend, visits, churn/renewal flags by customer and date),
    read from a CSV or Excel export like a source and joined to responses by customer id
    (tasks/collect/outcomes.py, tasks/outcomes.py)."""

    kind: Literal["csv", "excel"]
    path: str
    encoding: str = "auto"
    sheet: str | int | None = None
    columns: dict[str, str]  # outcome field -> the file's column
    window_days: int = Field(default=90, ge=1)  # outcomes counted in this many days after a response
    min_customers: int = Field(default=100, ge=10)  # joined customers before the report shows outcomes
    currency: str = ""  # shown after spend, e.g. "CNY"

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(OUTCOME_FIELDS))
        if unknown:
            raise ValueError(f"unknown outcome field(s) {unknown}; known: {', '.join(OUTCOME_FIELDS)}")
        missing = [f for f in ("customer_id", "date") if f not in v]
        if missing:
            raise ValueError(f"must map {' and '.join(missing)} to the file's column")
        if not set(v) & {*OUTCOME_MEASURES, *OUTCOME_FLAGS}:
            outcomes = ", ".join((*OUTCOME_MEASURES, *OUTCOME_FLAGS))
            raise ValueError(f"must map at least one outcome: {outcomes}")
        empty = sorted(k for k, col in v.items() if not str(col).strip())
        if empty:
            raise ValueError(f"empty column name for {empty}")
        return v


class DepartmentConfig(Strict):
    name: str
    head: str = ""
    language: Literal["zh", "en"] | None = None
    notify: list[str] = Field(default_factory=list)
    owns: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("owns")
    @classmethod
    def _ownable(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        bad = sorted(set(v) - set(OWNABLE))
        if bad:
            raise ValueError(f"can own only {', '.join(OWNABLE)}; not {bad}")
        return v


BASE_SCOPE_NAMES: tuple[str, ...] = get_args(Scope)


class TargetConfig(Strict):
    kpi: str
    scope: str = "overall"
    match: str | None = None
    value: float
    min_n: int | None = Field(default=None, ge=1)

    @field_validator("kpi")
    @classmethod
    def _known_kpi(cls, v: str) -> str:
        if v not in KPI_NAMES:
            raise ValueError(f"unknown KPI {v!r}; known: {', '.join(KPI_NAMES)}")
        return v

    @field_validator("scope")
    @classmethod
    def _known_scope(cls, v: str) -> str:
        """A base scope, or a crossing of two or more ("department x channel"): a crossing cell is
        judged only when a target names the crossing itself."""
        parts = [p.strip() for p in v.split(CROSS_SEP)]
        if any(p not in BASE_SCOPE_NAMES or p == "overall" for p in parts) and v not in BASE_SCOPE_NAMES:
            raise ValueError(f"unknown scope {v!r}; known: {', '.join(BASE_SCOPE_NAMES)}, or a crossing "
                             "such as 'department x channel'")
        if len(parts) != len(set(parts)):
            raise ValueError(f"scope {v!r} names a part twice")
        return CROSS_SEP.join(parts)


class KpiConfig(Strict):
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    min_n: int = Field(default=30, ge=1)
    min_n_per_kpi: dict[str, int] = Field(default_factory=dict)
    first_response_sla_hours: float = 24.0
    resolution_sla_hours: float = 72.0
    crossings: list[list[Scope]] = Field(default_factory=list)
    bootstrap_resamples: int = Field(default=999, ge=99)
    history_cycles: int = Field(default=12, ge=3)

    @field_validator("min_n_per_kpi")
    @classmethod
    def _known_kpis(cls, v: dict[str, int]) -> dict[str, int]:
        """A misspelt KPI (`{ NPS = 100 }`) would silently keep the default minimum."""
        bad = sorted(set(v) - set(KPI_NAMES))
        if bad:
            raise ValueError(f"unknown KPI(s) {bad}; known: {', '.join(KPI_NAMES)}")
        small = sorted(k for k, n in v.items() if n < 1)
        if small:
            raise ValueError(f"a minimum n must be at least 1, not for {small}")
        return v


class ActionsConfig(Strict):
    default_owner: str = "cx_office"
    due_days: dict[str, int] = Field(default_factory=lambda: {"high": 14, "medium": 30, "low": 45})
    watch_cycles: int = Field(default=3, ge=0)
    escalation_notify: list[str] = Field(default_factory=list)
    min_effect: float = 0.0
    worst_comments: int = Field(default=3, ge=0)
    # Raise an action's severity one level when a driver it names is clearly important (its
    # importance interval lies above the average driver's) and performs below average. Off by default:
    # severity then stays a function of the KPI's own gap and reach (README "Key drivers").
    weigh_driver_importance: bool = False
    key_drivers: int = Field(default=3, ge=0)  # drivers named in an action's evidence at most

    @field_validator("due_days")
    @classmethod
    def _every_severity(cls, v: dict[str, int]) -> dict[str, int]:
        """Every action gets a due date from its severity: all three must be set, nothing else."""
        missing = [k for k in SEVERITY_LEVELS if k not in v]
        unknown = sorted(set(v) - set(SEVERITY_LEVELS))
        if missing or unknown:
            raise ValueError(f"needs exactly {', '.join(SEVERITY_LEVELS)}"
                             + (f"; missing {missing}" if missing else "")
                             + (f"; unknown {unknown}" if unknown else ""))
        if any(days < 0 for days in v.values()):
            raise ValueError("days must not be negative")
        return v


# Cron nicknames Prefect accepts, as the five fields they stand for.
_CRON_NICKNAMES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                   "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                   "@hourly": "0 * * * *"}


class DecisionsConfig(Strict):
    """How KPI results become actions when a company judges hundreds at once (docs/decisions.md)."""

    fdr: float = Field(default=0.1, gt=0, lt=1)
    margin: float = Field(default=0.0, ge=0)
    margin_per_kpi: dict[str, float] = Field(default_factory=dict)
    actionable_n: int = Field(default=100, ge=1)
    persistence: bool = True
    signal_kpis: list[str] = Field(default_factory=list)

    @field_validator("margin_per_kpi")
    @classmethod
    def _margins(cls, v: dict[str, float]) -> dict[str, float]:
        for kpi, margin in v.items():
            if kpi not in KPI_NAMES:
                raise ValueError(f"unknown KPI {kpi!r}; known: {', '.join(KPI_NAMES)}")
            if margin < 0:
                raise ValueError(f"{kpi}: a margin cannot be negative ({margin})")
        return v

    @field_validator("signal_kpis")
    @classmethod
    def _signal_kpis(cls, v: list[str]) -> list[str]:
        unknown = [k for k in v if k not in KPI_NAMES]
        if unknown:
            raise ValueError(f"unknown KPI {unknown[0]!r}; known: {', '.join(KPI_NAMES)}")
        return v

    def margin_for(self, kpi: str) -> float:
        return float(self.margin_per_kpi.get(kpi, self.margin))


class ScheduleConfig(Strict):
    cron: str = "0 6 1 * *"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        """Checked at load, not when `serve` hands it to Prefect (a traceback, and no schedule)."""
        return check_cron(v)


def check_cron(v: str) -> str:
    """A cron expression Prefect accepts, or a ValueError saying what one looks like."""
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    try:
        CronSim(_CRON_NICKNAMES.get(v.strip().lower(), v), datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ValueError(f"not a valid cron expression {v!r} ({exc}); five fields: minute hour "
                         "day-of-month month day-of-week, e.g. '0 6 1 * *'") from None
    return v


class CaseRuleConfig(Strict):
    """One way a response opens a follow-up case; every condition given must hold (a response
    matching any rule opens one). E.g. `{ name = "detractor", nps_max = 6 }`."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    nps_max: int | None = Field(default=None, ge=0, le=10)
    csat_max: int | None = Field(default=None, ge=1, le=5)
    complaint: bool | None = None
    topics: list[str] = Field(default_factory=list)  # a negative comment on one of these topics
    queue: str | None = None

    @model_validator(mode="after")
    def _some_condition(self) -> CaseRuleConfig:
        if self.nps_max is None and self.csat_max is None and self.complaint is None and not self.topics:
            raise ValueError(f"rule {self.name!r} has no condition: give nps_max, csat_max, complaint "
                             "or topics")
        return self


class CasesConfig(Strict):
    """Follow-up cases (issue 19): which responses open one, the SLA clock and personal data."""

    rules: list[CaseRuleConfig] = Field(default_factory=list)
    merge_window_days: float = Field(default=7, ge=0)
    first_contact_hours: float = Field(default=24, gt=0)  # working hours
    close_days: float = Field(default=5, gt=0)  # working days
    remind_before_hours: float = Field(default=4, ge=0)  # working hours before a breach
    working_hours: tuple[str, str] = ("09:00", "18:00")
    working_days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])  # ISO: 1 = Monday
    holidays: list[date] = Field(default_factory=list)
    extra_workdays: list[date] = Field(default_factory=list)  # weekend days worked (调休)
    notify: Literal["digest", "per_case"] = "digest"
    escalation_notify: list[str] = Field(default_factory=list)  # default: [actions] escalation_notify
    retention_days: int = Field(default=180, ge=1)
    schedule: str = "0 7 * * *"

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, v: tuple[str, str]) -> tuple[str, str]:
        try:
            start, end = (time.fromisoformat(t) for t in v)
        except ValueError:
            raise ValueError(f"must be two times HH:MM, not {list(v)}") from None
        if not start < end:
            raise ValueError(f"the day must start before it ends, not {list(v)}")
        return v

    @field_validator("working_days")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if not v or any(d not in range(1, 8) for d in v):
            raise ValueError(f"ISO weekdays 1 (Monday) to 7 (Sunday), at least one, not {v}")
        return sorted(set(v))

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)

    @model_validator(mode="after")
    def _unique_rules(self) -> CasesConfig:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rules: duplicate rule name(s) {dupes}")
        return self


class QualityConfig(Strict):
    max_quarantine_share: float = Field(default=0.05, ge=0, le=1)
    volume_band: tuple[float, float] = (0.5, 2.0)
    volume_history: int = Field(default=6, ge=1)
    null_rate_jump: float = Field(default=0.25, ge=0, le=1)
    data_owners: list[str] = Field(default_factory=list)
    severity: dict[str, Literal["warning", "critical"]] = Field(default_factory=dict)

    @field_validator("volume_band")
    @classmethod
    def _ordered_band(cls, v: tuple[float, float]) -> tuple[float, float]:
        """`[2.0, 0.5]` would hold every month, whatever its volume."""
        if not 0 <= v[0] <= v[1]:
            raise ValueError(f"must be [low, high] with 0 <= low <= high, not {list(v)}")
        return v


class NotifyConfig(Strict):
    apprise_config: str | None = None
    all_clear: bool = False
    retries: int = Field(default=3, ge=0)
    retry_delay_seconds: float = Field(default=2.0, ge=0)
    report_base_url: str | None = None

    @field_validator("report_base_url")
    @classmethod
    def _web_address(cls, v: str | None) -> str | None:
        """Notices link to it, so only a web address: a `javascript:` or `data:` URL would be a
        live script link in every chat message and e-mail."""
        if v is not None and (not re.match(r"https?://[^\s/?#<>]+", v, re.IGNORECASE)
                              or re.search(r"[\s<>\"'`]", v)):
            raise ValueError(f"must be an http:// or https:// address without spaces or quotes, not {v!r}")
        return v


_WEB_ADDRESS = re.compile(r"https?://[^\s/?#<>]+", re.IGNORECASE)


class WebConfig(Strict):
    """The web workspace (`cxloop web`, web/): where it is reached and how long sign-ins last."""

    base_url: str | None = None  # e.g. "https://cx.example.com": notices link each action into it
    secret_key: str | None = None  # signs sessions and links; default: a key file next to the config
    link_hours: float = Field(default=72.0, gt=0)  # a notice's sign-in link expires after this
    session_hours: float = Field(default=12.0, gt=0)
    # password guessing: this many failures for one account (or from one client address) within
    # the window, and password sign-in is refused until the window has passed (web/throttle.py)
    login_attempts: int = Field(default=5, ge=1)
    login_attempts_per_client: int = Field(default=20, ge=1)
    login_window_minutes: float = Field(default=15.0, gt=0)
    # `cxloop users link`: the Apprise e-mail URL a personal sign-in link is sent through, without
    # a recipient (the account's name, an e-mail address, is added as `to=`)
    link_mail: str | None = None

    @field_validator("base_url")
    @classmethod
    def _web_address(cls, v: str | None) -> str | None:
        """Every notice links to it: only an http(s) address, never `javascript:` or a quote."""
        if v is not None and (not _WEB_ADDRESS.match(v) or re.search(r"[\s<>\"'`]", v)):
            raise ValueError(f"must be an http:// or https:// address without spaces or quotes, not {v!r}")
        return v

    @field_validator("link_mail")
    @classmethod
    def _mail_url(cls, v: str | None) -> str | None:
        """A personal sign-in link goes to one person's mailbox, never to a shared channel."""
        if v is not None and not re.match(r"mailtos?://\S+$", v, re.IGNORECASE):
            raise ValueError("must be an Apprise e-mail URL (mailto:// or mailtos://) without a recipient, "
                             "e.g. \"mailtos://user:${SMTP_PASSWORD}@smtp.example.com?from=cx@example.com\"")
        if v is not None and re.search(r"[?&]to=", v, re.IGNORECASE):
            raise ValueError("must not name a recipient (to=): each link goes to its account's own address")
        return v

    @field_validator("secret_key")
    @classmethod
    def _long_enough(cls, v: str | None) -> str | None:
        if v is not None and len(v) < 32:
            raise ValueError("must be at least 32 characters (e.g. `python -c 'import secrets; "
                             "print(secrets.token_urlsafe(32))'`, or set $CXLOOP_WEB_SECRET_KEY)")
        return v


class VocabularyConfig(Strict):
    channel: list[str] = Field(default_factory=lambda: list(DEFAULT_CHANNELS))
    journey_stage: list[str] = Field(default_factory=list)
    touchpoint: list[str] = Field(default_factory=list)


class TopicConfig(Strict):
    id: str
    name_zh: str
    name_en: str
    keywords: dict[Literal["zh", "en"], list[str]] = Field(default_factory=dict)
    patterns: dict[Literal["zh", "en"], list[str]] = Field(default_factory=dict)


class CommentsConfig(Strict):
    model: Literal["auto", "snownlp", "trained"] = "auto"
    model_path: str = "sentiment/model.joblib"
    negative_below: float = Field(default=0.4, ge=0, le=1)
    positive_above: float = Field(default=0.6, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered_cut_offs(self) -> CommentsConfig:
        """Inverted cut-offs would call a comment both negative and positive (wrong labels)."""
        if self.negative_below > self.positive_above:
            raise ValueError(f"negative_below ({self.negative_below}) must not be above "
                             f"positive_above ({self.positive_above})")
        return self


class EngineConfig(Strict):
    """Where big months are worked on: the folder of the columnar copies (`tasks.columnar`; storage
    every Dask worker sees, in a cluster) and the Dask scheduler that runs the partitioned work
    (empty: this machine alone)."""

    columnar_dir: str = "columnar"
    dask_address: str = ""


class Settings(Strict):
    project: ProjectConfig = Field(default_factory=ProjectConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    departments: dict[str, DepartmentConfig] = Field(default_factory=dict)
    targets: list[TargetConfig] = Field(default_factory=list)
    kpis: KpiConfig = Field(default_factory=KpiConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)
    decisions: DecisionsConfig = Field(default_factory=DecisionsConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    vocabulary: VocabularyConfig = Field(default_factory=VocabularyConfig)
    topics: list[TopicConfig] | None = None
    comments: CommentsConfig = Field(default_factory=CommentsConfig)
    drivers: list[DriverConfig] = Field(default_factory=list)
    driver_analysis: DriverAnalysisConfig = Field(default_factory=DriverAnalysisConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    cases: CasesConfig = Field(default_factory=CasesConfig)
    outcomes: OutcomesConfig | None = None
    engine: EngineConfig = Field(default_factory=EngineConfig)
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sources: duplicate source name(s) {dupes}")
        drivers = [d.name for d in self.drivers]
        dupes = sorted({n for n in drivers if drivers.count(n) > 1})
        if dupes:
            raise ValueError(f"drivers: duplicate driver name(s) {dupes}")
        for i, source in enumerate(self.sources):
            unknown_drivers = sorted(set(source.drivers) - set(drivers))
            if unknown_drivers:
                raise ValueError(f"sources[{i}].drivers: undeclared driver(s) {unknown_drivers}; declare "
                                 "each under [[drivers]] with its name, labels and scale")
        if any(rule.topics for rule in self.cases.rules):
            topic_ids = {t.id for t in self.topics} if self.topics is not None else _shipped_topic_ids()
            for i, rule in enumerate(self.cases.rules):
                bad = sorted(set(rule.topics) - topic_ids)
                if bad:
                    raise ValueError(f"cases.rules[{i}] ({rule.name}).topics: unknown topic(s) {bad}; "
                                     f"known: {', '.join(sorted(topic_ids))}")
        unknown = sorted(set(self.quality.severity) - _check_ids(self.base_dir))
        if unknown:
            raise ValueError(f"quality.severity: unknown check id(s) {unknown}; see the expectations of "
                             "`expectations/*.json` (meta.id) or an expectation type")
        return self

    def resolve(self, path: str) -> Path:
        """Paths in the config are relative to the config file, not to where cxloop is run."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.project.timezone)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.base_dir / 'cxloop.db'}"

    def department_language(self, dept_id: str) -> str:
        dept = self.departments.get(dept_id)
        return (dept.language if dept and dept.language else None) or self.project.language

    def driver_owner(self, driver: DriverConfig) -> str | None:
        """The department owning a driver's touchpoint, else its journey stage; None when neither."""
        for field, value in (("touchpoint", driver.touchpoint), ("journey_stage", driver.journey_stage)):
            owner = self.owner_of(field, value) if value else None
            if owner:
                return owner
        return None

    def owner_of(self, field: str, value: str) -> str | None:
        """The department whose `owns` lists this value, if any."""
        for dept_id, dept in self.departments.items():
            if value in dept.owns.get(field, []):
                return dept_id
        return None


@lru_cache(maxsize=1)
def shipped_topic_tables() -> tuple[dict[str, Any], ...]:
    """The shipped taxonomy's `[[topics]]` tables as read (`templates/topics.default.toml`), which
    apply when the config has none: one reading for the config's checks and the comments stage."""
    from cxloop.paths import shipped

    with shipped("templates/topics.default.toml").open("rb") as fh:
        return tuple(tomllib.load(fh).get("topics", []))


def _shipped_topic_ids() -> set[str]:
    return {str(t["id"]) for t in shipped_topic_tables()}


def _check_ids(base_dir: Path) -> set[str]:
    """The ids `[quality] severity` may name: each expectation's `meta.id`, its type, and the
    `type(column)` name of one without an id, in the shipped suites and the config's
    `expectations/` folder (a file that cannot be read is left to the validate stage to report)."""
    import json

    from cxloop.paths import EXPECTATIONS

    ids: set[str] = set()
    for folder in (EXPECTATIONS, base_dir / "expectations"):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                expectations = json.loads(path.read_text(encoding="utf-8")).get("expectations") or []
            except (OSError, ValueError, AttributeError):
                continue  # not a suite: the validate stage names the file
            for exp in expectations if isinstance(expectations, list) else []:
                if isinstance(exp, dict) and "type" in exp:
                    kwargs: dict[str, Any] = exp.get("kwargs") or {}
                    meta: dict[str, Any] = exp.get("meta") or {}
                    column = kwargs.get("column", kwargs.get("column_A", ""))
                    ids |= {str(exp["type"]), f"{exp['type']}({column})", str(meta.get("id") or "")}
    return ids - {""}


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECTIONS = ("project", "database", "kpis", "actions", "decisions", "schedule", "quality", "notify",
             "vocabulary", "comments", "web", "cases", "outcomes")


def _expand(value: Any, where: str, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")
            return env[m.group(1)]
        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else k, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    return value


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_path(name: str) -> list[str] | None:
    rest = name[len(ENV_PREFIX):].lower()
    if rest == "config":
        return None
    if "__" in rest:
        return rest.split("__")
    section, _, key = rest.partition("_")
    return [section, key] if section in _SECTIONS and key else None


def _apply_env(data: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    """Set the values `CXLOOP_...` variables name; -> key path (as errors name it) -> variable."""
    applied: dict[str, str] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = _env_path(name)
        if not path:
            continue
        applied[_key_path([int(p) if p.isdigit() else p for p in path])] = name
        node: Any = data
        try:
            for part in path[:-1]:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            if isinstance(node, list):
                node[int(path[-1])] = _parse_env_value(raw)
            else:
                node[path[-1]] = _parse_env_value(raw)
        except (IndexError, ValueError, TypeError, AttributeError) as exc:
            why = {IndexError: "a list index past its end", ValueError: "a list index that is not a number"
                   }.get(type(exc), "a key inside a value that is not a table")
            raise ConfigError(f"environment variable {name}: cannot set {'.'.join(path)}: it names "
                              f"{why}") from None
    return applied


def _key_path(loc: Sequence[Any]) -> str:
    """A key path as messages name it: sources[5].encoding."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format_error(source: str, exc: ValidationError, from_env: dict[str, str] | None = None) -> str:
    """One line per error, naming the key path, and the environment variable that set the value
    (`from_env`, from `_apply_env`) when one did: that is where the fix goes, not the file."""
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        loc = _key_path(err["loc"])
        # a validator's own words, without pydantic's "Value error, " in front
        lines.append(f"  {loc or '(top level)'}{_set_by(loc, from_env or {})}: "
                     f"{err['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def _set_by(loc: str, from_env: dict[str, str]) -> str:
    """The suffix naming the environment variable behind the value at `loc`: "set by" when it set
    that value or a table holding it, "partly set by" when it set a key inside the table at `loc`
    (a check of the whole table failed); "" when none did: the fix goes in the file."""
    def within(key: str, table: str) -> bool:
        return key.startswith((f"{table}.", f"{table}["))

    for key, var in from_env.items():
        if loc and (loc == key or within(loc, key)):
            return f" (set by environment variable {var})"
    part = next((var for key, var in from_env.items() if loc and within(key, loc)), None)
    return f" (partly set by environment variable {part})" if part else ""


def settings_from_dict(data: dict[str, Any], base_dir: Path, source: str = "config",
                       env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    data = _expand(data, "", env)
    from_env = _apply_env(data, env)
    try:
        return Settings(**data, base_dir=base_dir)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc, from_env)) from None


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Load and validate a config file (default: $CXLOOP_CONFIG or ./cxloop.toml)."""
    env = dict(os.environ) if env is None else env
    cfg = Path(path or env.get("CXLOOP_CONFIG") or "cxloop.toml").expanduser()
    if not cfg.exists():
        raise ConfigError(f"{cfg}: config file not found (create one with `cxloop init`)")
    if cfg.is_dir():
        raise ConfigError(f"{cfg}: is a directory, not a config file (name the cxloop.toml in it)")
    try:
        raw = cfg.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{cfg}: cannot be read ({exc.strerror or exc})") from None
    return settings_from_dict(_parse_config(cfg, raw), cfg.resolve().parent, str(cfg), env)


def _parse_config(cfg: Path, raw: bytes) -> dict[str, Any]:
    """The config's TOML, as Windows editors save it: Notepad writes UTF-8 with a BOM, or "ANSI",
    which is GBK on Chinese Windows. A BOM is dropped; GB18030 (a superset of GBK) is tried only
    when the bytes are not UTF-8, and kept only if the text then parses as TOML, so a data file
    passed as the config by mistake (or binary junk) is told it is not UTF-8 text, at which byte,
    rather than reported as a TOML syntax error in mojibake."""
    body = raw.removeprefix(codecs.BOM_UTF8)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        try:
            return tomllib.loads(body.decode("gb18030"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            at = exc.start + len(raw) - len(body)
            raise ConfigError(f"{cfg}: not UTF-8 text (byte {at} is 0x{raw[at]:02x}): if this is the config, "
                              "save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg}: not valid TOML: {exc}") from None


__all__ = ["ConfigError", "Settings", "load_settings", "settings_from_dict", "SCORE_FIELDS", "KPI_NAMES"]
