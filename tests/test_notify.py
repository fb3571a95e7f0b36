"""Notices really delivered: e-mail through an SMTP server and JSON to a webhook, both on loopback.

Rows of Action / ActionEvent / Measurement / QualityCheck are made directly, so these tests do not
depend on the stages that normally write them.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from cxloop.config import Settings, settings_from_dict
from cxloop.db import session_scope
from cxloop.models import Action, ActionEvent, Measurement, OutboxMessage, QualityCheck, utcnow
from cxloop.tasks.notify import deliver, queue_notices, scrub, secret_fragments, verdict_sentence
from cxloop.tasks.notify.delivery import _claim
from tests.receivers import HttpReceiver, SmtpReceiver, free_port

P = "2026-10"
PASSWORD = "Sup3rSecretPW"
COMMENT = ("快递三天没到 <script>alert(1)</script> 请打13812345678 或 zhang@example.com "
           "身份证11010519491231002X")
EN_COMMENT = "Driver never came <script>alert('x')</script>, call me on 13912345678"


def make_settings(tmp_path: Path, logistics: list[str], service: list[str] | None = None,
                  **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "project": {"name": "cxloop", "language": "zh"},
        "departments": {
            "logistics": {"name": "物流部", "head": "王经理", "language": "zh", "notify": logistics,
                          "owns": {"journey_stage": ["delivery"]}},
            "service": {"name": "Customer Service", "head": "Ann Lee", "language": "en",
                        "notify": service or []},
        },
        "notify": {"retries": 1, "retry_delay_seconds": 0.01, **extra.pop("notify", {})},
    }
    data.update(extra)
    return settings_from_dict(data, base_dir=tmp_path, env={})


def seed(engine: Engine) -> dict[str, int]:
    """One new and one overdue action for logistics (with a verdict), one new for service."""
    with session_scope(engine) as s:
        new = Action(kpi="nps", scope="journey_stage", scope_value="delivery", department="logistics",
                     head="王经理", severity="high", opened_period=P, due=date(2026, 11, 14),
                     target=30.0, baseline_value=12.0, playbook="联系承运商，复盘超时订单",
                     evidence=[{"period": P, "value": 12.0, "ci_low": 4.1, "ci_high": 19.8, "n": 220,
                                "target": 30.0, "gap": -18.0, "comments": [COMMENT, {"text": "还行"}]}])
        old = Action(kpi="complaint_rate", scope="journey_stage", scope_value="delivery",
                     department="logistics", severity="medium", opened_period="2026-08",
                     due=date(2026, 9, 30), status="in_progress", target=5.0, baseline_value=9.0,
                     evidence=[{"period": "2026-08", "value": 9.0, "n": 300, "target": 5.0}])
        closed = Action(kpi="csat", scope="channel", scope_value="app", department="logistics",
                        opened_period="2026-07", status="cancelled", due=date(2026, 8, 1))
        svc = Action(kpi="csat", scope="channel", scope_value="hotline", department="service",
                     severity="low", opened_period=P, due=date(2026, 12, 15), target=80.0,
                     evidence=[{"period": P, "value": 71.0, "n": 90, "target": 80.0,
                                "comments": [EN_COMMENT]}])
        for a in (new, old, closed, svc):
            s.add(a)
        s.flush()
        s.add(Measurement(action_id=old.id or 0, period=P, value=13.0, n=410, baseline=9.0, change=4.0,
                          change_ci_low=1.0, change_ci_high=7.0, effect=9.5, effect_ci_low=4.1,
                          effect_ci_high=14.8, method="did", comparison_scopes=6, verdict="improved"))
        return {"new": new.id or 0, "old": old.id or 0, "svc": svc.id or 0}


def outbox(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as s:
        return list(s.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all())  # type: ignore[arg-type]


def all_stored_text(engine: Engine) -> str:
    return json.dumps([m.model_dump(mode="json") for m in outbox(engine)], ensure_ascii=False)


# --------------------------------------------------------------------------------------------


def test_digest_content_language_escaping_and_masking(engine: Engine, tmp_path: Path) -> None:
    ids = seed(engine)
    settings = make_settings(tmp_path, ["json://127.0.0.1:9/x"], ["json://127.0.0.1:9/y"])
    msgs = {m.recipient: m for m in queue_notices(settings, engine, P, held=False)}
    assert set(msgs) == {"logistics", "service"}
    lg, sv = msgs["logistics"], msgs["service"]
    assert (lg.language, sv.language) == ("zh", "en")
    assert lg.kind == sv.kind == "digest"
    assert "新增 1 项" in lg.subject and "其中逾期 1 项" in lg.subject
    assert "1 new, 0 still open from earlier (0 overdue) actions" in sv.subject
    for body in (lg.body_html, lg.body_text):
        assert f"#{ids['new']}" in body or f">{ids['new']}<" in body
        assert "本期新增事项" in body and "已逾期" in body
        assert "13812345678" not in body and "zhang@example.com" not in body
        assert "11010519491231002X" not in body
        # the DiD verdict of the overdue action, in plain Chinese words
        assert "比可比旅程阶段多上升 9.5 分（95% 置信区间 4.1 至 14.8）" in body
    assert "[phone]" in lg.body_html and r"\[phone\]" in lg.body_text  # Markdown-escaped in chat
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in lg.body_html and "<script>" not in lg.body_html
    assert r"\<script\>alert(1)\</script\>" in lg.body_text  # escaped: chat shows it as text
    assert "Customer experience actions for Customer Service" in sv.body_html
    assert "&lt;script&gt;" in sv.body_html and "13912345678" not in sv.body_html + sv.body_text
    assert "cancelled" not in lg.body_text.lower() and "已取消" not in lg.body_text


def test_verdict_sentence_plain_words(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [])
    action = Action(id=1, kpi="nps", scope="journey_stage", scope_value="delivery", department="x",
                    opened_period="2026-09")
    m = Measurement(action_id=1, period=P, effect=9.5, effect_ci_low=4.1, effect_ci_high=14.8,
                    method="did", verdict="improved", n=400)
    assert verdict_sentence(settings, action, m, "en") == (
        "NPS of delivery rose 9.5 points (95% CI 4.1 to 14.8) more than in comparable stages.")
    assert "配送的净推荐值比可比旅程阶段多上升 9.5 分" in verdict_sentence(settings, action, m, "zh")
    down = Measurement(action_id=1, period=P, change=-6.0, change_ci_low=-9.0, change_ci_high=-2.5,
                       method="pre_post", verdict="worsened", n=300)
    assert verdict_sentence(settings, action, down, "en") == (
        "NPS of delivery fell 6.0 points since 2026-09 (95% CI 2.5 to 9.0); no comparable stages, "
        "so this is a before/after change only.")
    empty = Measurement(action_id=1, period=P, method="", verdict="insufficient", n=7)
    assert "Too few responses" in verdict_sentence(settings, action, empty, "en")


def test_email_and_webhook_really_arrive(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    with SmtpReceiver(user="cx", password=PASSWORD) as smtp, HttpReceiver() as hook:
        settings = make_settings(tmp_path, [smtp.url(to="wang@example.com")], [hook.url("/svc")])
        queue_notices(settings, engine, P, held=False)
        summary = deliver(settings, engine, P)
        assert summary.counts()["sent"] == 2 and summary.failed == 0
        assert len(smtp.messages) == 1 and len(hook.requests) == 1
        mail = smtp.messages[0]
        assert mail.recipients == ["wang@example.com"]
        assert "物流部" in mail.subject
        assert "王经理" in mail.html and "本期新增事项" in mail.html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mail.html and "<script>" not in mail.html
        assert "13812345678" not in mail.html + mail.text and "zhang@example.com" not in mail.html
        payload = hook.requests[0].json()
        assert hook.requests[0].path == "/svc"
        assert "Customer Service" in payload["title"]
        assert r"\<script\>alert('x')\</script\>" in payload["message"]  # text, not markup
        assert "13912345678" not in payload["message"] and r"\[phone\]" in payload["message"]
        assert "New actions this cycle" in payload["message"]
    rows = {m.recipient: m for m in outbox(engine)}
    assert rows["logistics"].status == rows["service"].status == "sent"
    assert rows["logistics"].attempts == 1 and rows["logistics"].sent_at is not None
    assert rows["logistics"].route.startswith("mailto://cx:****@127.0.0.1")
    assert PASSWORD not in all_stored_text(engine)


def test_unknown_tag_and_missing_route_are_no_route(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    cfg = tmp_path / "apprise.yml"
    cfg.write_text("urls:\n  - json://127.0.0.1:9/never:\n      tag: dept-marketing\n", encoding="utf-8")
    settings = make_settings(tmp_path, ["dept-unknown"], [], notify={"apprise_config": "apprise.yml"})
    queue_notices(settings, engine, P, held=False)
    summary = deliver(settings, engine, P)
    assert summary.sent == 0 and summary.no_route == 2
    rows = {m.recipient: m for m in outbox(engine)}
    assert rows["logistics"].status == "no_route" and "dept-unknown" in (rows["logistics"].last_error or "")
    assert rows["service"].status == "no_route" and rows["service"].route == "(no route)"
    assert rows["service"].last_error == "[departments.service] notify is empty"
    assert deliver(settings, engine, P).counts()["no_route"] == 0  # not retried on its own


def test_receiver_down_then_back_arrives_exactly_once(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    hook = HttpReceiver(port=free_port())  # not started: the receiver is down
    settings = make_settings(tmp_path, [hook.url("/lg")], [])
    queue_notices(settings, engine, P, held=False)
    first = deliver(settings, engine, P)
    assert first.failed == 1 and first.sent == 0
    [msg] = [m for m in outbox(engine) if m.recipient == "logistics"]
    assert msg.status == "failed" and msg.attempts == 2  # one try + settings.notify.retries quick retry
    assert msg.next_attempt_at is not None and msg.next_attempt_at > utcnow()
    assert msg.last_error and "127.0.0.1" in msg.last_error
    # Still inside the back-off: nothing is tried.
    assert deliver(settings, engine, P).counts()["waiting"] == 1
    with hook:
        later = utcnow() + timedelta(hours=7)
        assert deliver(settings, engine, P, now=later).sent == 1
        assert deliver(settings, engine, P, now=later).sent == 0
        queue_notices(settings, engine, P, held=False)  # a re-run of the cycle
        assert deliver(settings, engine, None, force=True).sent == 0
    assert len(hook.requests) == 1
    [msg] = [m for m in outbox(engine) if m.recipient == "logistics"]
    assert msg.status == "sent" and msg.attempts == 3


def test_a_file_sink_that_cannot_write_says_why(engine: Engine, tmp_path: Path) -> None:
    """The outbox records the operating system's reason (Apprise alone recorded "An exception
    occured sending a cxloop file sink notification"); the notice is retried later."""
    seed(engine)
    (tmp_path / "notices").write_text("a file where the folder should be")
    settings = make_settings(tmp_path, [f"cxfile://localhost/{tmp_path}/notices/logistics"], [])
    queue_notices(settings, engine, P, held=False)
    assert deliver(settings, engine, P).failed == 1
    [msg] = [m for m in outbox(engine) if m.recipient == "logistics"]
    assert msg.status == "failed" and msg.next_attempt_at is not None
    # (the route's path is masked there, as any part of a route's URL may be a token)
    assert "cxfile: cannot write to " in (msg.last_error or "")
    assert ": Not a directory" in (msg.last_error or "") and "exception" not in (msg.last_error or "")
    (tmp_path / "notices").unlink()
    assert deliver(settings, engine, None, force=True).sent == 1
    assert len(list((tmp_path / "notices" / "logistics").iterdir())) == 1


def test_partial_failure_retries_only_the_missing_receiver(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    up = HttpReceiver().start()
    down = HttpReceiver(port=free_port())
    try:
        settings = make_settings(tmp_path, [up.url("/a"), down.url("/b")], [],
                                 notify={"retries": 0})
        queue_notices(settings, engine, P, held=False)
        assert deliver(settings, engine, P).failed == 1
        with down:
            assert deliver(settings, engine, P, force=True).sent == 1
        assert len(up.requests) == 1 and len(down.requests) == 1
    finally:
        up.stop()


def test_rerunning_rerenders_pending_but_never_resends_or_rewrites_sent(engine: Engine,
                                                                        tmp_path: Path) -> None:
    seed(engine)
    with HttpReceiver() as hook:
        settings = make_settings(tmp_path, [hook.url("/lg")], [hook.url("/svc")])
        [first] = [m for m in queue_notices(settings, engine, P, held=False) if m.recipient == "logistics"]
        with session_scope(engine) as s:  # new data before sending: the pending digest is re-rendered
            s.add(Action(kpi="ces", scope="channel", scope_value="web", department="logistics",
                         opened_period=P))
        [again] = [m for m in queue_notices(settings, engine, P, held=False) if m.recipient == "logistics"]
        assert again.id == first.id and "新增 2 项" in again.subject
        for _ in range(2):
            queue_notices(settings, engine, P, held=False)
            deliver(settings, engine, P)
        assert sorted(r.path for r in hook.requests) == ["/lg", "/svc"]
    before = {m.id: (m.body_html, m.sent_at) for m in outbox(engine)}
    # New data after sending does not rewrite what went out.
    with session_scope(engine) as s:
        s.add(Action(kpi="ces", scope="channel", scope_value="app", department="logistics", opened_period=P))
    queue_notices(settings, engine, P, held=False)
    assert {m.id: (m.body_html, m.sent_at) for m in outbox(engine)} == before
    assert len(outbox(engine)) == 2


def test_held_cycle_alerts_data_owners_only(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    with session_scope(engine) as s:
        s.add(QualityCheck(period=P, suite="feedback", expectation="expect_column_values_to_not_be_null",
                           column="channel", success=False, unexpected_count=42,
                           sample=["r1", "13812345678"]))
        s.add(QualityCheck(period=P, suite="feedback", expectation="expect_table_row_count_to_be_between",
                           level="batch", success=True))
    with HttpReceiver() as hook:
        settings = make_settings(
            tmp_path, [hook.url("/lg")], [],
            quality={"data_owners": [hook.url("/owners")]},
            sources=[{"name": "survey", "kind": "csv", "path": "s.csv", "data_owners": [hook.url("/src")]}])
        msgs = queue_notices(settings, engine, P, held=True)
        assert [(m.recipient, m.kind) for m in msgs] == [("data_owners", "data_quality")]
        assert deliver(settings, engine, P).sent == 1
        assert sorted(r.path for r in hook.requests) == ["/owners", "/src"]
        text = hook.requests[0].json()["message"]
        assert "expect_column_values_to_not_be_null" in text and "42" in text
        assert "expect_table_row_count_to_be_between" not in text and "13812345678" not in text
        assert "数据质量关卡" in text


def test_escalations_go_to_the_escalation_route(engine: Engine, tmp_path: Path) -> None:
    ids = seed(engine)
    with session_scope(engine) as s:
        s.add(ActionEvent(action_id=ids["old"], period=P, from_status="in_progress", to_status="escalated",
                          note="no change after the due date"))
        s.add(ActionEvent(action_id=ids["new"], period="2026-09", to_status="escalated", note="old"))
    with HttpReceiver() as hook:
        settings = make_settings(tmp_path, [], [], actions={"escalation_notify": [hook.url("/esc")]})
        msgs = {m.kind: m for m in queue_notices(settings, engine, P, held=False)}
        assert msgs["escalation"].recipient == "escalation"
        deliver(settings, engine, P)
        [req] = [r for r in hook.requests if r.path == "/esc"]
        text = req.json()["message"]
        assert f"#{ids['old']}" in text and "no change after the due date" in text
        assert f"#{ids['new']} " not in text and "已改善" in text


def test_all_clear_only_when_asked(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, [], [])
    assert queue_notices(settings, engine, P, held=False) == []
    settings = make_settings(tmp_path, [], [], notify={"all_clear": True})
    msgs = queue_notices(settings, engine, P, held=False)
    assert {m.recipient for m in msgs} == {"logistics", "service"}
    assert all(m.kind == "digest" for m in msgs)
    assert "nothing to act on" in next(m for m in msgs if m.recipient == "service").subject


def test_apprise_config_tags_route_by_format(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    with SmtpReceiver() as smtp, HttpReceiver() as hook:
        (tmp_path / "apprise.yml").write_text(
            "urls:\n"
            f"  - {smtp.url(to='wang@example.com')}:\n      tag: dept-logistics\n"
            f"  - {hook.url('/chat')}:\n      tag: dept-logistics\n", encoding="utf-8")
        settings = make_settings(tmp_path, ["dept-logistics"], [], notify={"apprise_config": "apprise.yml"})
        queue_notices(settings, engine, P, held=False)
        assert deliver(settings, engine, P).sent == 1
        assert len(smtp.messages) == 1 and len(hook.requests) == 1
        assert "<table" in smtp.messages[0].html  # e-mail gets the HTML digest
        chat = hook.requests[0].json()["message"]
        assert "<table" not in chat and "### 本期新增事项" in chat  # chat gets the Markdown one


def test_dry_run_writes_files_and_sends_nothing(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    with HttpReceiver() as hook, SmtpReceiver() as smtp:
        settings = make_settings(tmp_path, [smtp.url()], [hook.url("/svc")])
        queue_notices(settings, engine, P, held=False)
        out = tmp_path / "dry"
        summary = deliver(settings, engine, P, dry_run_dir=out)
        assert summary.dry_run == 2 and summary.sent == 0
        assert sorted(p.name for p in out.iterdir()) == [f"{P}-logistics-digest.html",
                                                         f"{P}-service-digest.md"]
        assert "&lt;script&gt;" in (out / f"{P}-logistics-digest.html").read_text(encoding="utf-8")
        assert hook.requests == [] and smtp.messages == []
    assert {m.status for m in outbox(engine)} == {"pending"}
    assert all(m.attempts == 0 for m in outbox(engine))


def test_secrets_are_scrubbed_from_error_text() -> None:
    url = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"
    text = f"failed to post to {url} with token TIiajkdnlazkcOXrIdevi7FQ"
    cleaned = scrub(text, secret_fragments(url))
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in cleaned and "A1BRTD4JD" not in cleaned
    mail = f"mailto://bob:{PASSWORD}@smtp.example.com?to=a@example.com"
    assert PASSWORD not in scrub(f"login {PASSWORD} refused for {mail}", secret_fragments(mail))


@pytest.mark.parametrize("scheme_url", [
    "wecombot://ABCDEFGHIJKLMNOPQRSTUVWXYZsecretkey",
    "dingtalk://SECRETTOKEN123456abcdef/",
    "feishu://abcdefgh-1234-secret-token",
    "workflows://prod-00.westus.logic.azure.com:443/workflowid123/signaturesecret123",
])
def test_chat_routes_are_described_without_secrets(scheme_url: str) -> None:
    from cxloop.tasks.notify import describe_url

    described = describe_url(scheme_url)
    assert "secret" not in described.lower() and "://" in described


def test_failed_notice_goes_out_with_the_next_cycle(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    hook = HttpReceiver(port=free_port())
    settings = make_settings(tmp_path, [hook.url("/lg")], [], notify={"retries": 0})
    queue_notices(settings, engine, P, held=False)
    assert deliver(settings, engine, P).failed == 1
    with hook:
        later = utcnow() + timedelta(hours=7)
        nxt = "2026-11"
        queue_notices(settings, engine, nxt, held=False)
        summary = deliver(settings, engine, nxt, now=later)
        assert summary.sent == 2
        assert deliver(settings, engine, nxt, now=later, force=True).sent == 0
    subjects = [r.json()["title"] for r in hook.requests]
    assert sorted(s.split()[1] for s in subjects) == [P, nxt]


def test_documented_routes_are_valid_apprise_urls() -> None:
    """The README must not teach a URL or an Apprise config that Apprise refuses."""
    import re

    import apprise

    import cxloop.tasks.sinks  # noqa: F401  (cxfile://)

    doc = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    urls = set(re.findall(r"`((?:mailtos?|slack|workflows|dingtalk|wecombot|feishu|lark|jsons?|cxfile)://[^`]+)`",
                          doc))
    assert len(urls) >= 10
    for url in urls - {u for u in urls if "..." in u or "****" in u}:  # skip the privacy-form examples
        assert apprise.Apprise.instantiate(url) is not None, url
    yml = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert yml is not None
    cfg = apprise.AppriseConfig()
    cfg.add_config(yml.group(1), format="yaml")
    ap = apprise.Apprise()
    ap.add(cfg)
    assert len(list(ap.find(tag="dept-logistics"))) == 2 and len(list(ap.find(tag="dept-service"))) == 2


def test_secrets_never_reach_the_logs(engine: Engine, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    seed(engine)
    port = free_port()  # nothing listens: the failure path logs the most
    token, pw, bad = "PathTok3nXYZ987", "Pw0rdSecret42", "BADTOKEN_notvalid"
    (tmp_path / "apprise.yml").write_text(
        f"urls:\n  - json://127.0.0.1:{port}/hooks/{token}:\n      tag: dept-svc\n", encoding="utf-8")
    settings = make_settings(tmp_path, [f"json://bot:{pw}@127.0.0.1:{port}/x/{token}",
                                        f"dingtalk://{bad}/"], ["dept-svc"],
                             notify={"apprise_config": "apprise.yml", "retries": 0})
    caplog.set_level("DEBUG")
    queue_notices(settings, engine, P, held=False)
    summary = deliver(settings, engine, P)
    assert summary.failed == 2
    assert "127.0.0.1" in caplog.text  # the logs are there, only the secrets are gone
    for secret in (token, pw, bad):
        assert secret not in caplog.text
        assert secret not in all_stored_text(engine)


def test_digest_of_actions_opened_by_the_actions_stage(engine: Engine, tmp_path: Path) -> None:
    """The evidence the actions stage writes (worst comments, figures) reaches the head, masked."""
    from datetime import UTC, datetime

    from cxloop.models import Feedback, KpiResult
    from cxloop.tasks.actions import open_actions

    with HttpReceiver() as hook:
        settings = make_settings(tmp_path, [hook.url("/lg")], [])
        with session_scope(engine) as s:
            s.add(KpiResult(period=P, kpi="nps", scope="journey_stage", scope_value="delivery", n=120,
                            value=8.0, ci_low=-5.0, ci_high=21.0, target=30.0, min_n=30, status="missed"))
            for i, (score, comment) in enumerate([(1, COMMENT), (9, "great"), (3, "slow, mail me a@b.cn")]):
                s.add(Feedback(source="survey", response_id=f"r{i}", period=P, channel="app",
                               submitted_at=datetime(2026, 10, 5, tzinfo=UTC), journey_stage="delivery",
                               nps=score, comment=comment, sentiment="negative" if score < 7 else "positive",
                               content_hash=f"h{i}"))
        assert open_actions(settings, engine, P).opened == 1
        queue_notices(settings, engine, P, held=False)
        assert deliver(settings, engine, P).sent == 1
    text = hook.requests[0].json()["message"]
    assert "净推荐值 · 配送" in text and "8.0 (目标 30.0" in text
    assert "快递三天没到" in text and r"slow, mail me \[email\]" in text and "great" not in text
    assert "13812345678" not in text and "a@b.cn" not in text


def test_owner_missing_from_config_gets_a_visible_no_route_digest(engine: Engine, tmp_path: Path) -> None:
    with session_scope(engine) as s:
        s.add(Action(kpi="nps", scope="overall", scope_value="all", department="cx_office", opened_period=P))
    settings = make_settings(tmp_path, [], [])
    [msg] = queue_notices(settings, engine, P, held=False)
    assert (msg.recipient, msg.language) == ("cx_office", "zh") and "cx_office" in msg.subject
    deliver(settings, engine, P)
    [row] = outbox(engine)
    assert row.status == "no_route" and "[departments.cx_office]" in (row.last_error or "")


def test_two_runs_at_once_never_both_send(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    with HttpReceiver() as hook:
        settings = make_settings(tmp_path, [hook.url("/lg")], [])
        queue_notices(settings, engine, P, held=False)
        [snapshot] = [m for m in outbox(engine) if m.recipient == "logistics"]
        assert _claim(engine, snapshot, utcnow())  # another run is sending it right now
        assert _claim(engine, snapshot, utcnow()) is False
        busy = deliver(settings, engine, P, force=True)
        assert busy.sent == 0 and busy.counts()["waiting"] == 1 and hook.requests == []
        # That run died mid-send: once its lease is over the message goes out, once.
        later = utcnow() + timedelta(minutes=11)
        assert deliver(settings, engine, P, now=later).sent == 1
        assert deliver(settings, engine, P, now=later + timedelta(hours=1), force=True).sent == 0
        assert len(hook.requests) == 1
        [stale] = [m for m in outbox(engine) if m.recipient == "logistics"]
        stale.status, stale.attempts = "failed", 0  # a run still holding the old row cannot claim it
        assert _claim(engine, stale, later) is False


def test_a_playbook_of_several_sections_is_quoted_whole(tmp_path: Path) -> None:
    """A department's own playbook with two "### " sections: the notice quotes both (the rule
    that took only the last section dropped the steps), and not the facts the notice lists."""
    from cxloop.tasks.notify.items import action_item

    settings = make_settings(tmp_path, [])
    playbook = ("## NPS · delivery\n\n- Value: 12.0\n\n### Steps\n1. Call the carrier.\n"
                "2. Review late orders.\n\n### If it is not better next month\n3. Change carrier.\n")
    action = Action(id=1, kpi="nps", scope="journey_stage", scope_value="delivery", department="logistics",
                    opened_period=P, playbook=playbook,
                    evidence=[{"period": P, "value": 12.0, "target": 30.0}])
    assert action_item(settings, action, P, "en").playbook == (
        "1. Call the carrier.\n2. Review late orders.\nIf it is not better next month\n3. Change carrier.")
    shipped = Action(id=2, kpi="nps", scope="journey_stage", scope_value="delivery", department="logistics",
                     opened_period=P, playbook="just call them back")  # no heading: quoted whole
    assert action_item(settings, shipped, P, "en").playbook == "just call them back"
