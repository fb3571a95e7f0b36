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
    assert "Value error" not in message  # pydantic's prefix to a validator's own words


@pytest.mark.parametrize(("name", "value", "says"), [
    ("CXLOOP_KPIS__MIN_N", "abc", "kpis.min_n (set by environment variable CXLOOP_KPIS__MIN_N): "),
    ("CXLOOP_PROJECT_TIMEZON", "UTC",
     "project.timezon (set by environment variable CXLOOP_PROJECT_TIMEZON): Extra inputs are not permitted"),
    ("CXLOOP_SOURCES__0__KIND", "xml",
     "sources[0].kind (set by environment variable CXLOOP_SOURCES__0__KIND): "),
    ("CXLOOP_SOURCES__0__KIND", "sql",  # the source's own check fails, not the key
     "sources[0] (partly set by environment variable CXLOOP_SOURCES__0__KIND): "),
    ("CXLOOP_KPIS__MIN_N_PER_KPI__NPS", "0",
     "kpis.min_n_per_kpi (partly set by environment variable CXLOOP_KPIS__MIN_N_PER_KPI__NPS): "),
])
def test_a_bad_value_from_the_environment_names_its_variable(tmp_path: Path, name: str, value: str,
                                                              says: str) -> None:
    """The fix goes in the environment, not the file: the message says which variable set it."""
    cfg = write(tmp_path, '[[sources]]\nname = "web"\nkind = "csv"\npath = "a.csv"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={name: value})
    assert says in str(err.value), str(err.value)
    with pytest.raises(ConfigError) as err:  # the same value in the file: no variable named
        load_settings(write(tmp_path, '[kpis]\nmin_n = "abc"\n'), env={})
    assert "kpis.min_n: " in str(err.value) and "environment" not in str(err.value)


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


DEPARTMENT = '[project]\nname = "体验闭环"\n[departments.cs]\nname = "客服部"\n'


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk"])
def test_bom_and_gbk_configs_load(tmp_path: Path, encoding: str) -> None:
    """Notepad on Chinese Windows saves UTF-8 with a BOM, or "ANSI" (GBK): both load as written."""
    cfg = tmp_path / "cxloop.toml"
    cfg.write_bytes(DEPARTMENT.encode(encoding))
    settings = load_settings(cfg, env={})
    assert settings.project.name == "体验闭环" and settings.departments["cs"].name == "客服部"


@pytest.mark.parametrize(("content", "reason"), [
    ("id,渠道,评分\n1,热线,5\n".encode("gbk"), "not UTF-8 text (byte 3 is 0xc7)"),  # a GBK CSV
    ('[project\nname = "客服"\n'.encode("gbk"), "not UTF-8 text (byte 17 is 0xbf)"),  # GBK, not TOML
    (b"\xef\xbb\xbf\x00\x9f\xff\xfe junk", "not UTF-8 text (byte 4 is 0x9f)"),  # offset counts the BOM
    (None, "is a directory, not a config file"),
])
def test_config_that_is_not_text_or_a_directory(tmp_path: Path, content: bytes | None, reason: str) -> None:
    cfg = tmp_path / "cxloop.toml"
    if content is None:
        cfg.mkdir()
    else:
        cfg.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    message = str(err.value)
    assert message.startswith(f"{cfg}: ") and reason in message and "\n" not in message
    if content is not None:
        assert "save it as UTF-8" in message


@pytest.mark.parametrize(("case", "reason"), [
    ("gbk_csv", "not UTF-8 text (byte 3 is 0xc7)"),
    ("gbk_toml", "sources[0].kind"),  # read as GBK: validation, not a decode error, names the key
    ("bom_toml", "sources[0].kind"),  # the BOM dropped: not "not valid TOML ... line 1, column 1"
    ("dir_option", "is a directory, not a config file"),
    ("dir_env", "is a directory, not a config file"),
])
def test_unreadable_config_exits_2_with_one_line(tmp_path: Path, case: str, reason: str) -> None:
    """Through a real process: what a new user on Chinese Windows sees for a config that is a GBK
    data file, a GBK or BOM-marked cxloop.toml (with a bad key, to show it was parsed), or a folder."""
    bad_kind = '[[sources]]\nname = "热线"\nkind = "xlsx"\npath = "a.xlsx"\n' + DEPARTMENT
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    command = ["collect", "--period", "2026-10"]
    cfg = tmp_path / "cxloop.toml"
    if case == "gbk_csv":
        cfg = tmp_path / "hotline_2026-10.csv"
        cfg.write_bytes("id,渠道,评分\n1,热线,5\n".encode("gbk"))
    elif case in ("gbk_toml", "bom_toml"):
        cfg.write_bytes(bad_kind.encode("gbk" if case == "gbk_toml" else "utf-8-sig"))
    else:
        cfg = tmp_path / "conf"
        cfg.mkdir()
        command = ["run", "--period", "2026-10"]
    if case == "dir_env":
        env["CXLOOP_CONFIG"] = str(cfg)
    else:
        command += ["-c", str(cfg) + ("/" if case == "dir_option" else "")]
    done = subprocess.run([sys.executable, "-m", "cxloop", *command], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"config error {cfg}: ") and reason in done.stderr, lines
    if not case.endswith("_toml"):  # an invalid key's message lists the keys on lines of their own
        assert len(lines) == 1, lines
    assert "Traceback" not in done.stderr + done.stdout
