"""KPI stage: every CX KPI per scope, with n and an interval, against its target, over time.

Pipeline of one period (`compute_kpis`):

1. take the period's clean responses from the month frame (`load_responses`, `tasks.month`; only
   the needed columns, durations and `has_comment` derived as the database used to compute them);
   a month too large to keep comes in parts of a million rows (`response_parts`);
2. count a histogram per (scope, scope value, family, bin) - the sufficient statistics of every
   KPI (`histograms`), per part; histograms of parts merge by adding counts (`merge_histograms`),
   exactly;
3. per scope value, compute each KPI and its interval from the histogram (`tasks.stats`), find its
   target and judge the status (`rows_from_histograms`);
4. compare with earlier cycles on a control chart (`tasks.spc`) for signal_high / signal_low;
5. upsert `KpiResult` (histogram in `stats`, so later stages can merge or re-measure) and the
   `AppliedTarget` rows of the period, in one transaction; re-running replaces, never duplicates.

Units: NPS and nets -100..100, proportions and shares in percent, CES mean 1..7, times in hours,
responses a count. Durations are binned (0.1 h below 10 h, 0.5 h below 100 h, 1 h below 1000 h,
10 h beyond) so their histograms stay small; the % within SLA is counted from exact durations.
"""

from cxloop.tasks.kpis.histograms import histograms, merge_histograms
from cxloop.tasks.kpis.measures import HistItem, kpi_from_hist, kpi_from_stats, measure_many, merge_stats
from cxloop.tasks.kpis.prepare import scope_frame, scope_names, time_codes, time_labels
from cxloop.tasks.kpis.responses import family_bins, kpi_value, response_scores, scope_mask
from cxloop.tasks.kpis.rows import KpiRow, rows_from_histograms
from cxloop.tasks.kpis.signals import History, apply_signals
from cxloop.tasks.kpis.specs import BASE_SCOPES, KPI_COLUMNS, SPECS
from cxloop.tasks.kpis.stage import compute_kpis, compute_rows, counts, judge_cycle
from cxloop.tasks.kpis.store import columns_for, load_responses, response_parts, stored_rows
from cxloop.tasks.kpis.targets import default_min_n, judge, target_for
from cxloop.vocabulary import CROSS_SEP, LOWER_IS_BETTER, OVERALL, TOPIC_ONLY

__all__ = [
    "BASE_SCOPES",
    "CROSS_SEP",
    "HistItem",
    "History",
    "KPI_COLUMNS",
    "KpiRow",
    "LOWER_IS_BETTER",
    "OVERALL",
    "SPECS",
    "TOPIC_ONLY",
    "apply_signals",
    "columns_for",
    "compute_kpis",
    "compute_rows",
    "counts",
    "default_min_n",
    "family_bins",
    "histograms",
    "judge",
    "judge_cycle",
    "kpi_from_hist",
    "kpi_from_stats",
    "kpi_value",
    "load_responses",
    "measure_many",
    "merge_histograms",
    "merge_stats",
    "response_parts",
    "response_scores",
    "rows_from_histograms",
    "scope_frame",
    "scope_mask",
    "scope_names",
    "stored_rows",
    "target_for",
    "time_codes",
    "time_labels",
]
