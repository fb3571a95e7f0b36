"""cxloop: runs a company's customer-experience improvement loop end to end.

The repository root is this package (`pyproject.toml` maps it), so the design card's folders stay
at the root while every import reads `cxloop.<stage>`: `tasks/` the stages' logic, `flows/` the
Prefect wiring, `commands/` + `cli.py` the command line, `templates/`, `expectations/` and
`migrations/` the files shipped with it. Importing the package loads nothing else.
"""

__version__ = "0.2.0"
