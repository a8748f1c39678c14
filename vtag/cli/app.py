"""The `vtag` Typer app and its entry point: a thin layer over functions that are just as usable from Python.

Each command parses options, calls one library function and renders its result with Rich. Errors the
user can fix arrive as `VtagError` and are printed as one line (exit code 2); nothing else belongs here.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from vtag.errors import VtagError

app = typer.Typer(
    name="vtag",
    help="Tag videos with YouTube-8M labels: extract features, train, evaluate and classify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


@app.callback()
def _root() -> None:
    """vtag: YouTube-8M video tagging."""


def main() -> None:
    # Typer turns Ctrl-C inside a command into exit code 130 itself (commands that must save work,
    # like batch and train, catch it first); this catches one that lands outside a command.
    try:
        app(prog_name="vtag")
    except VtagError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)
