"""`cxloop comments train|analyse` and `cxloop themes`: the company sentiment model, a month's themes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxloop.commands.common import ConfigOpt, CxError, FormatOpt, PeriodOpt, load
from cxloop.config import ConfigError, load_settings
from cxloop.output import Format, emit

comments_app = typer.Typer(help="Comment sentiment and themes: train the company model, analyse a month.",
                           no_args_is_help=True)
THEME_COLUMNS = ["topic", "name", "owner", "count", "share", "share_ci", "negative_share", "negative_ci",
                 "example"]


@comments_app.command("train")
def train_command(
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled comments: CSV, Excel or JSON lines.",
                                       show_default=False)],
    text_column: Annotated[str | None, typer.Option(
        "--text-column",
        help="Column with the comment (default: comment / review / text / content).")] = None,
    label_column: Annotated[str | None, typer.Option(
        "--label-column", help="Column with the label: 1/0, positive/negative, 好评/差评 "
        "(default: label / sentiment / polarity).")] = None,
    test_size: Annotated[float, typer.Option("--test-size", min=0.05, max=0.5,
                                             help="Share held out to measure accuracy.")] = 0.2,
    config: ConfigOpt = None,
) -> None:
    """Fit the company sentiment model, print held-out accuracy and macro-F1, store it for `auto`."""
    from cxloop.tasks.sentiment import ModelError, train_from_file

    settings = load_settings(config)
    try:
        result, path = train_from_file(settings, data, text_column, label_column, test_size)
    except ModelError as exc:
        raise CxError(str(exc)) from None
    typer.echo(f"trained on {result.n_train} comments, tested on {result.n_test} held out"
               + (f" ({result.dropped} neutral rows skipped)" if result.dropped else ""))
    typer.echo(f"accuracy {result.accuracy:.3f}   macro-F1 {result.macro_f1:.3f}   "
               f"{result.per_second:,.0f} comments/s")
    typer.echo(f"model saved to {path} (refitted on all {result.model.n_train} rows); "
               f"used from now on while comments.model = \"{settings.comments.model}\""
               + ("" if settings.comments.model != "snownlp" else " - set it to \"auto\" to use it"))


@comments_app.command("analyse")
def analyse_command(period: PeriodOpt, config: ConfigOpt = None, fmt: FormatOpt = Format.table) -> None:
    """Fill sentiment and themes for every comment of the period (re-running changes nothing)."""
    from cxloop.tasks.comments import analyse_comments
    from cxloop.tasks.sentiment import ModelError

    settings, engine = load(config)
    try:
        summary = analyse_comments(settings, engine, period)
    except (ModelError, ConfigError) as exc:
        raise CxError(str(exc)) from None
    emit([summary.counts()], fmt, title=f"comments {period}")


def themes_command(period: PeriodOpt, config: ConfigOpt = None, fmt: FormatOpt = Format.table,
                   examples: Annotated[int, typer.Option("--examples", min=0, max=5,
                                                         help="Example comments per topic.")] = 1,
                   ) -> None:
    """Each topic of the month: comments, share and negative share with intervals, an example (masked)."""
    from cxloop.tasks.comments import analysed_counts, theme_overview

    settings, engine = load(config)
    with_comment, analysed = analysed_counts(engine, period)
    if with_comment and not analysed:
        raise CxError(f"{period}: {with_comment} comments not analysed yet; run "
                      f"`cxloop comments analyse --period {period}`")
    rows = []
    for r in theme_overview(settings, engine, period, examples=examples):
        d = r.as_dict()
        if fmt is Format.table:
            d["share_ci"] = _ci(r.share_low, r.share_high)
            d["negative_ci"] = _ci(r.negative_low, r.negative_high)
        rows.append(d)
    emit(rows, fmt, THEME_COLUMNS, title=f"themes {period} ({analysed} analysed comments)")


def _ci(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"{low:.3f}–{high:.3f}"


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(comments_app, name="comments")
    app.command("themes")(themes_command)
