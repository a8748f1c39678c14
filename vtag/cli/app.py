"""The `vtag` Typer app and its entry point: a thin layer over functions that are just as usable from Python.

Each command parses options, calls one library function and renders its result with Rich. Errors the
user can fix arrive as `VtagError` and are printed as one line (exit code 2); nothing else belongs here
but the options every command shares (--version, --quiet, --verbose, -h).
"""

from __future__ import annotations

import sys
import time

import typer
from rich.console import Console
from rich.markup import escape

from vtag.errors import VtagError

app = typer.Typer(
    name="vtag",
    help="Tag videos with YouTube-8M labels: extract features, train, evaluate and classify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click hands these to every command's context, so `vtag classify -h` works like --help
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
GLOBAL_FLAGS = {"-q": "quiet", "--quiet": "quiet", "-v": "verbose", "--verbose": "verbose"}


class Verbosity:
    """--quiet: results and errors only (err_console is silenced; errors are printed past it).
    --verbose: notes on what was loaded and the time taken, and the cause under an error."""

    quiet = False
    verbose = False


def note(message: str) -> None:
    """A detail shown with --verbose only."""
    if Verbosity.verbose:
        err_console.print(f"[dim]{message}[/]", highlight=False, soft_wrap=True)


def show_progress() -> bool:
    """Progress bars go to stderr when a person watches it and did not ask for --quiet."""
    return not Verbosity.quiet and err_console.is_terminal


def _version(value: bool) -> None:
    if value:
        from vtag import __version__

        typer.echo(f"vtag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(None, "--version", "-V", callback=_version, is_eager=True,
                                 help="Print vtag's version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only results and errors: no progress, notes or warnings."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print more detail: what was loaded, the time taken, "
                                 "and the cause under an error."),
) -> None:
    """vtag: YouTube-8M video tagging."""
    if quiet and verbose:
        raise VtagError("--quiet and --verbose contradict each other: give one")
    Verbosity.quiet, Verbosity.verbose = quiet, verbose
    err_console.quiet = quiet


def _hoist_global_flags(argv: list[str]) -> list[str]:
    """`vtag classify x.mp4 -q` means the same as `vtag -q classify x.mp4`: the shared flags are moved
    in front of the command (no command has options of these names; `--` ends the search)."""
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut:]
    else:
        head, tail = argv, []
    flags = [a for a in head if a in GLOBAL_FLAGS]
    return flags + [a for a in head if a not in GLOBAL_FLAGS] + tail


def _print_error(exc: VtagError) -> None:
    err_console.quiet = False  # --quiet keeps errors
    # the message is plain text: "vtag[plot]" in it is not Rich markup
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    cause = exc.__cause__ or exc.__context__
    if Verbosity.verbose and cause is not None:
        err_console.print(f"[dim]cause: {type(cause).__name__}: {escape(str(cause))}[/]", highlight=False, soft_wrap=True)


def main() -> None:
    # Typer turns Ctrl-C inside a command into exit code 130 itself (commands that must save work,
    # like batch and train, catch it first); this catches one that lands outside a command.
    started = time.perf_counter()
    try:
        from vtag.cli import metavars

        command = typer.main.get_command(app)
        metavars.apply(command)
        command.main(args=_hoist_global_flags(sys.argv[1:]), prog_name="vtag")
    except VtagError as exc:
        _print_error(exc)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(EXIT_INTERRUPTED)
    finally:
        note(f"{time.perf_counter() - started:.1f} s")
