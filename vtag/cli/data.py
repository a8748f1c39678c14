"""`vtag info`, `vtag labels`, `vtag models`: what record files, vocabularies and the model registry hold."""

from __future__ import annotations

from pathlib import Path

import typer

from vtag.cli.app import app, console, err_console


# ---- records, vocabularies: info, labels ----------------------------------------------------------


@app.command("info")
def info(
    paths: list[str] = typer.Argument(..., help="Record files, quoted globs or directories; - reads paths from stdin."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines: one object per file (docs/JSON.md)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Count bad records instead of stopping at the first."),
) -> None:
    """Describe YT8M / AudioSet record files: schema, record count, labels, frames, bad records."""
    from rich import box
    from rich.table import Table

    from vtag.io.inspect import inspect_file
    from vtag.io.paths import expand_paths

    from vtag.cli.inputs import refuse_media, with_stdin

    infos = [inspect_file(path, skip_bad=skip_bad) for path in expand_paths(refuse_media(with_stdin(paths)))]
    if as_json:
        from vtag.cli.output import emit_lines, json_line

        emit_lines((json_line(i.as_dict(), str(i.path)) for i in infos), None)
        return
    # file names alone where they are unique keep the table readable in 80 columns
    names = [Path(i.path).name for i in infos]
    if len(set(names)) < len(names):
        names = [str(Path(Path(i.path).parent.name) / Path(i.path).name) for i in infos]
    table = Table(box=box.SIMPLE_HEAD)
    # max label is in --json only: eight columns do not fit 80 characters
    for column in ("file", "kind", "schema", "records", "labelled", "frames", "bad"):
        table.add_column(column, justify="right" if column in ("records", "labelled", "bad") else "left",
                         no_wrap=column == "kind", overflow="fold")
    for name, i in zip(names, infos):
        frames = "-" if i.frames is None else f"{i.frames[0]}/{i.frames[1]:.1f}/{i.frames[2]}"
        bad = f"[red]{i.bad}[/]" if i.bad else "0"
        table.add_row(name, i.kind, i.schema, f"{i.records:,}", f"{i.labelled:,}", frames, bad)
    if len(infos) > 1:
        table.add_section()
        table.add_row(f"{len(infos)} files", "", "", f"{sum(i.records for i in infos):,}",
                      f"{sum(i.labelled for i in infos):,}", "", str(sum(i.bad for i in infos)))
    console.print(table)
    if any(i.frames for i in infos):
        console.print("frames: min/mean/max per record", style="dim")
    for name, warning in ((name, w) for name, i in zip(names, infos) for w in i.warnings):
        console.print(f"{name}: {warning}", style="yellow", highlight=False, soft_wrap=True)


@app.command("labels")
def labels(
    query: str = typer.Argument(None, help="Text to search for in names, Knowledge Graph ids and verticals."),
    vocab: str = typer.Option("2018", "--vocab", help="2017, 2018 or a vocabulary CSV file."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines: one object per class (docs/JSON.md)."),
) -> None:
    """List a YT8M vocabulary, or search it."""
    from rich.table import Table

    from vtag.io.vocab import load_vocabulary

    vocabulary = load_vocabulary(vocab)
    found = vocabulary.search(query) if query else list(range(len(vocabulary)))
    rows = [{"index": i, "name": vocabulary.names[i], "kg_id": vocabulary.kg_ids[i],
             "verticals": list(vocabulary.verticals[i])} for i in found]
    if as_json:
        from vtag.cli.output import emit_lines, json_line

        emit_lines((json_line(dict(row, vocabulary=vocabulary.source)) for row in rows), None)
        return
    title = f"{vocabulary.source} vocabulary: {len(found):,} of {len(vocabulary):,} classes"
    table = Table(title=title + (f" matching {query!r}" if query else ""), title_justify="left")
    for column in ("index", "name", "KG id", "vertical"):
        table.add_column(column, justify="right" if column == "index" else "left")
    for row in rows:
        table.add_row(str(row["index"]), row["name"], row["kg_id"], " / ".join(row["verticals"]))
    console.print(table)
    if query and not found:
        err_console.print(f"no class matches {query!r}")

# ---- models ---------------------------------------------------------------------------------------


@app.command("models")
def models(
    as_json: bool = typer.Option(False, "--json", help="JSON Lines: one object per model (docs/JSON.md)."),
    input_spec: str = typer.Option("mean", "--input-spec", help="Count parameters for 'mean' or 'mean+std' inputs."),
) -> None:
    """List the model zoo: the paper's models, their parameters here and in the paper."""
    from rich.table import Table

    from vtag.models.registry import paper_table

    rows = paper_table(input_spec)
    if as_json:
        from vtag.cli.output import emit_lines, json_line

        emit_lines((json_line(row, row["name"]) for row in rows), None)
        return
    table = Table(title=f"models at the paper's configuration (4,716 classes, {input_spec} inputs)", title_justify="left")
    for column in ("name", "paper's title", "params", "paper", "diff"):
        table.add_column(column, justify="left" if column in ("name", "paper's title") else "right",
                         no_wrap=column != "paper's title")
    for r in rows:
        diff = r["difference_pct"]
        style = "green" if abs(diff) <= 3 else "red"
        table.add_row(r["name"], r["title"], f"{r['params'] / 1e6:.2f}M", f"{r['paper_params'] / 1e6:.0f}M",
                      f"[{style}]{diff:+.2f}%[/]")
    console.print(table)
