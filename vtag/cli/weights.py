"""`vtag weights` (list, pull, import): the official feature-extractor weight files."""

from __future__ import annotations

from pathlib import Path

import typer

from vtag.cli.app import app, console


# ---- weights and feature extraction: weights, extract ---------------------------------------------

weights_app = typer.Typer(
    help="Official feature-extractor weight files: list them, download them, or import local copies.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(weights_app, name="weights")


@weights_app.callback()
def weights_list(ctx: typer.Context) -> None:
    """List the weight files, whether each is present and verified, and where the cache is."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from vtag.weights import CACHE_ENV, cache_dir, status

    table = Table(title=f"weight cache: {cache_dir()}  (set ${CACHE_ENV} to move it)", title_justify="left")
    table.add_column("file", no_wrap=True)
    table.add_column("present", no_wrap=True)
    table.add_column("verified", no_wrap=True)
    table.add_column("path", overflow="fold")
    for row in status():
        verified = "[green]yes[/]" if row.verified else ("[red]no[/]" if row.present else "-")
        present = "yes" if row.present else ("[yellow]partial[/]" if row.detail else "[red]no[/]")
        path = f"{row.path}" + (f"  [dim]({row.detail})[/]" if row.detail else "")
        table.add_row(row.name, present, verified, path)
    console.print(table)
    console.print("fetch missing files: [bold]vtag weights pull[/]  |  install local copies: "
                  "[bold]vtag weights import FILE...[/]")


@weights_app.command("pull")
def weights_pull(
    names: list[str] = typer.Argument(None, help="Weight files to fetch (default: all of them)."),
    base_url: str = typer.Option(None, "--base-url", help="A mirror serving the same file names."),
) -> None:
    """Download weight files from their official URLs, check their sha256, install them in the cache."""
    from vtag.weights import pull

    for path in pull(names or None, base_url_override=base_url):
        console.print(f"[green]ok[/] {path}")


@weights_app.command("import")
def weights_import(
    files: list[Path] = typer.Argument(..., help="Local copies of weight files (or yt8m_pca members)."),
) -> None:
    """Check local copies of weight files (by name and sha256) and install them in the cache."""
    from vtag.weights import import_files

    for path in import_files(files):
        console.print(f"[green]installed[/] {path}")
