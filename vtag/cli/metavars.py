"""Help in user words: `FILE...`, `--top-k N`, a flag without `<bool>`, instead of the Python types
(`<list[str]>`, `<int range>`) Typer prints. Applied to the built click command before it runs."""

from __future__ import annotations

import re
from pathlib import Path

# an argument's word, by its parameter name; anything else: the name in capitals
ARGUMENT_WORDS = {"inputs": "FILE", "paths": "FILE", "records": "FILE", "folders": "FOLDER", "videos": "VIDEO",
                  "files": "FILE", "models": "MODEL", "names": "NAME", "command": "COMMAND", "source": "SOURCE",
                  "model": "MODEL", "query": "TEXT", "role": "ROLE"}
OPTION_WORDS = {int: "N", float: "NUMBER", Path: "PATH"}


def _annotation(param):
    descriptor = getattr(param, "type_descriptor", None)
    return getattr(descriptor, "annotation", None)


def _option_word(param) -> str:
    if getattr(param, "is_flag", False) or getattr(param, "is_bool_flag", False):
        return ""
    annotation = _annotation(param)
    if annotation in OPTION_WORDS:
        return OPTION_WORDS[annotation]
    long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
    if "list[" in str(annotation) or getattr(param, "multiple", False):
        return "PATH"
    return long.lstrip("-").rsplit("-", 1)[-1].upper()


def _argument(param) -> None:
    word = ARGUMENT_WORDS.get(param.name, param.name.upper())
    many = param.nargs != 1
    param.metavar = word + ("..." if many else "")
    usage = param.metavar if param.required else f"[{param.metavar}]"
    # Typer's own usage piece would wrap the word in braces and add a second "..."
    param._usage_display_name = lambda: usage
    param.display_type_rich = lambda ctx: None


def _option(param) -> None:
    word = _option_word(param)
    param.metavar = word or None
    param.display_type_rich = lambda ctx: word


def _escape_extras(text: str | None) -> str | None:
    # help is Rich markup: "pip install 'vtag[ray]'" would lose "[ray]" as an unknown tag
    return re.sub(r"vtag\[", r"vtag\\[", text) if text else text


def _with_plain_help_option(command) -> None:
    make = command.get_help_option

    def get_help_option(ctx):
        option = make(ctx)
        if option is not None:
            _option(option)
        return option

    command.get_help_option = get_help_option


def apply(command) -> None:
    """Give every parameter of `command` and its subcommands a user word (in place)."""
    command.help = _escape_extras(command.help)
    _with_plain_help_option(command)
    for param in getattr(command, "params", []):
        param.help = _escape_extras(getattr(param, "help", None))
        if getattr(param, "param_type_name", "") == "argument":
            _argument(param)
        elif getattr(param, "param_type_name", "") == "option":
            _option(param)
    for sub in getattr(command, "commands", {}).values():
        apply(sub)
