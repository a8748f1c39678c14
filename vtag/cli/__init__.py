"""The `vtag` command line: a thin Typer layer over functions that are just as usable from Python.

`vtag.cli.app` holds the Typer app and `main`; each module beside it registers one group of commands:
`data` (info, labels, models), `training` (train, eval, memory, ensemble), `weights`, `tagging`
(extract, classify, batch), `report`, `export` (ONNX). Errors the user can fix arrive as `VtagError`
and are printed as one line (exit code 2).
"""

# each module registers its commands on app; imported in the order `vtag --help` lists them
from vtag.cli import data  # noqa: F401, I001
from vtag.cli import training  # noqa: F401
from vtag.cli import transfer  # noqa: F401
from vtag.cli import weights  # noqa: F401
from vtag.cli import tagging  # noqa: F401
from vtag.cli import report  # noqa: F401
from vtag.cli import export  # noqa: F401
from vtag.cli import meta  # noqa: F401
from vtag.cli.app import app, main

__all__ = ["app", "main"]
