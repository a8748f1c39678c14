"""`vtag help [COMMAND]...`: the help of vtag or of one of its commands, as `COMMAND --help` prints it."""

from __future__ import annotations

import difflib

import typer

from vtag.cli.app import app
from vtag.errors import VtagError


def did_you_mean(name: str, choices, what: str, listing: str) -> str:
    """One sentence for an unknown name: the close ones, else where the list is."""
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(close)}?" if close else f"see `{listing}` for the list"
    return f"{what} {name!r} is unknown: {hint}"


def check_model_name(model: str | None) -> None:
    """--model: a name that is neither a file, a folder, a URL nor a registry name gets the registry's
    "did you mean" (the one `vtag train --model` gives) before anything loads."""
    if model is None:
        return
    from pathlib import Path

    from vtag.io.remote import is_url

    if is_url(model) or Path(model).expanduser().exists():
        return
    from vtag.models.registry import MODELS, unknown_model_message

    if model not in MODELS:
        raise VtagError(f"--model {model}: no such model folder, and {unknown_model_message(model)}")


@app.command("help")
def help_command(
    ctx: typer.Context,
    command: list[str] = typer.Argument(None, metavar="[COMMAND]...", help="A command (and subcommand), e.g. classify or weights pull."),
) -> None:
    """Show the help of vtag, or of a command."""
    parent = ctx.find_root()
    target = parent.command
    for name in command or []:
        # Typer carries its own copy of click: groups are known by what they do, not by class
        group = hasattr(target, "get_command")
        found = target.get_command(parent, name) if group else None
        if found is None:
            names = target.list_commands(parent) if group else []
            raise VtagError(did_you_mean(name, names, "command", "vtag help"))
        parent = type(parent)(found, info_name=name, parent=parent)
        target = found
    text = parent.get_help()
    if text:  # Typer's rich help prints itself and returns nothing
        typer.echo(text)
