"""`cxloop.toml` loading: validation with key paths, env overrides, ${VAR} expansion, defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cxloop.config import ConfigError, load_settings, settings_from_dict
from cxloop.paths import TEMPLATES

SOURCE = '[[sources]]\nname = "web"\nkind = "csv"\npath = "data/*.csv"\n'


def write(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "cxloop.toml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def test_example_config_is_valid_and_documents_every_section() -> None:
    text = (TEMPLATES / "init" / "cxloop.toml").read_text(encoding="utf-8")
    settings = load_settings(TEMPLATES / "init" / "cxloop.toml", env={})
    assert settings.project.timezone == "Asia/Shanghai"
    assert {s.kind for s in settings.sources} == {"csv", "excel", "jsonl"}
    assert settings.sources[1].constants == {"channel": "hotline", "touchpoint": "hotline"}
    assert settings.sources[1].values["csat"]["非常满意"] == 5
    for section in ("[project]", "[database]", "[[sources]]", "[departments.", "[[targets]]", "[kpis]",
                    "[actions]", "[decisions]", "[schedule]", "[quality]", "[notify]", "[vocabulary]",
                    "[comments]",
                    "[[topics]]"):
        assert section in text, section


def test_example_cases_block_uncommented_is_valid_and_states_the_defaults(tmp_path: Path) -> None:
    """The init config's commented `[cases]` block is what a user uncomments: it must load, and the
    values it shows must be the defaults it claims to be."""
    from cxloop.config import CasesConfig

    text = (TEMPLATES / "init" / "cxloop.toml").read_text(encoding="utf-8")
    block = text[text.index("# [cases]"):]
    lines = [line[2:] if line.startswith("# ") else "" for line in block.splitlines()]
    settings = load_settings(write(tmp_path, SOURCE + "\n".join(lines) + "\n"), env={})
    cases = settings.cases
    assert [r.name for r in cases.rules] == ["detractor", "complaint", "negative_delivery"]
    assert cases.rules[1].queue == "complaints" and cases.rules[2].topics == ["delivery"]
    assert cases.model_dump(exclude={"rules"}) == CasesConfig().model_dump(exclude={"rules"})
    assert "contact_ok" in text and "contact_phone" in text


def test_default_sqlite_url_is_next_to_the_config(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, SOURCE), env={})
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'cxloop.db'}"
    assert settings.resolve("data/x.csv") == tmp_path.resolve() / "data" / "x.csv"
    assert settings.resolve("/abs/x.csv") == Path("/abs/x.csv")


def test_env_overrides_file_values(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[database]\nurl = "sqlite:///in-file.db"\n[project]\ntimezone = "UTC"\n' + SOURCE)
    env = {"CXLOOP_DATABASE_URL": "postgresql+psycopg://u:p@db/cx",
           "CXLOOP_PROJECT_TIMEZONE": "Europe/Berlin",
           "CXLOOP_KPIS__MIN_N": "50", "CXLOOP_SOURCES__0__ENCODING": "gbk"}
    settings = load_settings(cfg, env=env)
    assert settings.database_url == "postgresql+psycopg://u:p@db/cx"
    assert settings.project.timezone == "Europe/Berlin" and settings.kpis.min_n == 50
    assert settings.sources[0].encoding == "gbk"


def test_env_var_expansion(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[database]\nurl = "postgresql+psycopg://cx:${DB_PASSWORD}@db/cx"\n'
                          '[departments.cs]\nname = "客服"\nnotify = ["mailto://u:${SMTP_PW}@x.com"]\n')
    settings = load_settings(cfg, env={"DB_PASSWORD": "s3cret", "SMTP_PW": "pw"})
    assert settings.database.url == "postgresql+psycopg://cx:s3cret@db/cx"
    assert settings.departments["cs"].notify == ["mailto://u:pw@x.com"]
    with pytest.raises(ConfigError, match=r"database.url: environment variable DB_PASSWORD is not set"):
        load_settings(cfg, env={"SMTP_PW": "pw"})


@pytest.mark.parametrize(("text", "path", "reason"), [
    ('[[sources]]\nname = "x"\nkind = "xml"\npath = "a"\n', "sources[0].kind", "'csv'"),
    ('[project]\nname = "x"\ncolour = "red"\n', "project.colour", "Extra inputs are not permitted"),
    ('[project]\ntimezone = "Mars/Olympus"\n', "project.timezone", "unknown IANA time zone"),
    ('[[sources]]\nname = "x"\nkind = "sql"\n', "sources[0]", "needs both `url` and `query`"),
    ('[[sources]]\nname = "x"\nkind = "csv"\npath = "a"\n[sources.columns]\nscore = "s"\n', "sources[0]",
     "unknown canonical field(s) ['score']"),
    ('[[targets]]\nkpi = "happiness"\nvalue = 1\n', "targets[0].kpi", "unknown KPI"),
    ('[departments.ops]\nname = "Ops"\nowns = { region = ["east"] }\n', "departments.ops.owns",
     "can own only"),
    ('[shedule]\ncron = "x"\n', "shedule", "Extra inputs are not permitted"),
    ('[decisions]\nfdr = 1.5\n', "decisions.fdr", "less than 1"),
    ('[decisions]\nfdr = 0\n', "decisions.fdr", "greater than 0"),
    ('[decisions]\nmargin = -1\n', "decisions.margin", "greater than or equal to 0"),
    ('[decisions]\nmargin_per_kpi = { nps = -2 }\n', "decisions.margin_per_kpi", "cannot be negative"),
    ('[decisions]\nsignal_kpis = ["joy"]\n', "decisions.signal_kpis", "unknown KPI 'joy'"),
    ('[[targets]]\nkpi = "nps"\nscope = "department x galaxy"\nvalue = 1\n', "targets[0].scope",
     "unknown scope"),
])
def test_invalid_config_names_key_path(tmp_path: Path, text: str, path: str, reason: str) -> None:
    cfg = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    message = str(err.value)
    assert str(cfg) in message and f"  {path}: " in message and reason in message


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[project\nname = 1\n"), env={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_config_from_env_var_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, '[project]\nname = "from env"\n')
    monkeypatch.chdir(tmp_path.parent)
    assert load_settings(env={"CXLOOP_CONFIG": str(cfg)}).project.name == "from env"


def test_duplicate_source_names_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"duplicate source name\(s\) \['web'\]"):
        settings_from_dict({"sources": [{"name": "web", "kind": "csv", "path": "a"},
                                        {"name": "web", "kind": "csv", "path": "b"}]}, tmp_path, env={})


def test_invalid_file_exits_2_with_key_path(tmp_path: Path) -> None:
    """Through a real process: the exit code and the one-line message an admin sees."""
    cfg = write(tmp_path, '[[sources]]\nname = "x"\nkind = "xlsx"\npath = "a.xlsx"\n')
    done = subprocess.run([sys.executable, "-m", "cxloop", "collect", "--period", "2026-10",
                           "--config", str(cfg)], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert done.returncode == 2, done.stderr
    assert "sources[0].kind" in done.stderr and "Traceback" not in done.stderr
