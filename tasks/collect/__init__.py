"""Collection: every configured source -> canonical feedback rows of one period, loaded once.

Why it is shaped this way:
- Each file's records are mapped to canonical typed rows by `tasks/mapping.py` (vectorised, no
  database); this module stores them with the driver's bulk paths (executemany on SQLite, COPY on
  PostgreSQL), never row-by-row ORM: a million responses load in seconds. A big CSV export is
  read and mapped in chunks by a second process while this one stores them (`tasks/collect/chunked.py`).
- The key is (source, response_id) with a hash of the canonical content, so re-collecting a file,
  or an export that overlaps last month's, adds nothing twice; a changed response is updated.
- Exports overlap months, so rows of other months are counted as `out_of_period`, not as errors.
- Rows that cannot be mapped are kept in `QuarantinedRow` (stage "collect") with the file, row and
  reasons; once the export is fixed, the next collect loads the row and marks its quarantine
  entry readmitted.
- One transaction per source file: a file either loads completely with its import record or
  not at all, and a file that cannot be read records its error while the other files still load.
"""

from cxloop.tasks.collect.example import CannotWrite, write_example_project
from cxloop.tasks.collect.records import list_imports
from cxloop.tasks.collect.sources import read_file, source_files
from cxloop.tasks.collect.stage import collect_period
from cxloop.tasks.collect.summary import CollectSummary

__all__ = [
    "CannotWrite",
    "CollectSummary",
    "collect_period",
    "list_imports",
    "read_file",
    "source_files",
    "write_example_project",
]
