"""Notices to department heads: queue them in the outbox, then deliver them through Apprise.

Why an outbox table and not a direct send: a cycle can be re-run, a mail server can be down, and a
department head must still get each notice exactly once. `queue_notices` writes at most one message
per (period, recipient, kind) and never touches one already sent; `deliver` sends what is pending,
remembers every receiver already served (so a retry after a partial failure skips them), retries
with back-off and records why a send failed - with secrets scrubbed, since Apprise URLs carry
passwords, tokens and webhook keys.

Every channel goes through Apprise: a route is an Apprise URL (`mailto://`, `slack://`,
`workflows://`, `dingtalk://`, `wecombot://`, `feishu://`, `json://` ...) or a tag of the Apprise
config file `[notify] apprise_config`. Receivers that show HTML (e-mail) get the HTML digest,
all others the Markdown one.
"""

from cxloop.tasks.notify.delivery import (
    IDEMPOTENCY_HEADER,
    NOTICE_HEADER,
    _claim,
    deliver,
    deliver_message,
    notice_key,
    preview,
)
from cxloop.tasks.notify.items import action_item, verdict_sentence
from cxloop.tasks.notify.notices import build_notices, queue_notices
from cxloop.tasks.notify.outbox import outbox_rows
from cxloop.tasks.notify.routes import describe_url
from cxloop.tasks.notify.secrets import scrub, secret_fragments

__all__ = [
    "IDEMPOTENCY_HEADER",
    "NOTICE_HEADER",
    "_claim",
    "action_item",
    "build_notices",
    "deliver",
    "deliver_message",
    "describe_url",
    "notice_key",
    "outbox_rows",
    "preview",
    "queue_notices",
    "scrub",
    "secret_fragments",
    "verdict_sentence",
]
