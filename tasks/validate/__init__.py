"""The data-quality gate: Great Expectations suites over a period's feedback, before any KPI is published.

Two levels of suites, both plain GX 1.x JSON files in `expectations/` (and in the folder
`expectations/` next to the config file, if it exists; a file there with the same name replaces the
shipped one):

- row suites (`meta.level = "row"`) run on one row per Feedback response. A row failing a
  `critical` expectation is quarantined (kept in `quarantined_row` with every reason, flagged in
  `feedback.quarantined`, never counted in a KPI); a `warning` expectation is only reported.
- batch suites (`meta.level = "batch"`) run on small metrics tables ("frames") built here: `batch`
  (one row), `sources` (one row per source), `channels` (channels present in every recent period)
  and `score_columns` (one row per score column). A failed `critical` batch check holds the cycle.

Values that depend on the config or the period are written as placeholders (`"${vocabulary.channel}"`,
`"${period.start}"`, ...) and filled in at run time; an empty vocabulary list drops the expectation.
Every run validates ALL rows of the period again (clean and quarantined), so fixed rows come back.
"""

from cxloop.tasks.validate.batch import check_batch
from cxloop.tasks.validate.gx import (
    _COMPLETE,
    _context,
    _errors,
    _failing,
    _gx,
    build_gx,
    columns_used,
    run_expectations,
)
from cxloop.tasks.validate.messages import check_result
from cxloop.tasks.validate.results import CheckResult
from cxloop.tasks.validate.rows import (
    check_rows,
    keyed_row_frame,
    keys_by_equality,
    needed_columns,
    row_frame,
)
from cxloop.tasks.validate.stage import readmit, validate_period
from cxloop.tasks.validate.suites import (
    Expectation,
    SuiteError,
    expectations_of,
    load_suites,
    placeholder_values,
)
from cxloop.tasks.validate.tables import FB, QC, QR

__all__ = [
    "CheckResult",
    "Expectation",
    "FB",
    "QC",
    "QR",
    "SuiteError",
    "_COMPLETE",
    "check_result",
    "columns_used",
    "_context",
    "_errors",
    "_failing",
    "_gx",
    "keys_by_equality",
    "needed_columns",
    "keyed_row_frame",
    "build_gx",
    "check_batch",
    "check_rows",
    "expectations_of",
    "load_suites",
    "placeholder_values",
    "readmit",
    "row_frame",
    "run_expectations",
    "validate_period",
]
