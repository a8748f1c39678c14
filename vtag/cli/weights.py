"""`vtag weights` (list, pull, import, forget): the official feature-extractor weight files, and a
user's own VGGish weights installed with `import --unverified`."""

from __future__ import annotations

from pathlib import Path

import typer

from vtag.cli.app import app, console, err_console


# ---- weights and feature extraction: weights, extract ---------------------------------------------

weights_app = typer.Typer(
    help="Official feature-extractor weight files: list them, download them, or import local copies.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(weights_app, name="weights")


@weights_app.callback()
def weights_list(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="JSON Lines: one object per weight file (docs/JSON.md)."),
) -> None:
    """List the weight files, whether each is present and verified, and where the cache is."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from vtag.weights import CACHE_ENV, cache_dir, status

    if as_json:
        from vtag.cli.output import emit_lines, json_line
        from vtag.io.user_weights import unverified_status

        rows = ({"name": row.name, "present": bool(row.present), "verified": bool(row.verified),
                 "unverified": bool(getattr(row, "unverified", False)), "path": str(row.path),
                 "detail": row.detail, "cache": str(cache_dir())} for row in status() + unverified_status())
        emit_lines((json_line(row) for row in rows), None)
        return

    table = Table(title=f"weight cache: {cache_dir()}  (set ${CACHE_ENV} or $XDG_CACHE_HOME to move it)", title_justify="left")
    table.add_column("file", no_wrap=True)
    table.add_column("present", no_wrap=True)
    table.add_column("verified", no_wrap=True)
    table.add_column("path", overflow="fold")
    from vtag.io.user_weights import unverified_status

    for row in status() + unverified_status():
        verified = "[green]yes[/]" if row.verified else ("[red]no[/]" if row.present else "-")
        verified = "[bold yellow]unverified[/]" if getattr(row, "unverified", False) else verified
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
    unverified: bool = typer.Option(False, "--unverified", help=(
        "Install your own (e.g. fine-tuned) VGGish network or PCA file without a checksum: its role is "
        "chosen by format and shapes, `vtag weights` lists it as unverified, and it is used instead of "
        "the official file until `vtag weights forget ROLE`.")),
) -> None:
    """Check local copies of weight files (by name and sha256) and install them in the cache."""
    if unverified:
        from vtag.features.vggish_weights import import_unverified

        for file in files:
            role, path = import_unverified(file)
            err_console.print(f"[bold yellow]warning:[/] {file} is installed UNVERIFIED as the {role.description}; "
                              f"vtag uses it instead of the official file (undo: `vtag weights forget {role.role}`)",
                              highlight=False, soft_wrap=True)
            console.print(f"[yellow]installed unverified[/] {path}", highlight=False)
        return
    from vtag.weights import import_files

    for path in import_files(files):
        console.print(f"[green]installed[/] {path}")


@weights_app.command("forget")
def weights_forget(
    role: str = typer.Argument(..., help="vggish or vggish_pca: the role whose user file to remove."),
) -> None:
    """Remove your own unverified weights for a role; vtag goes back to the official files."""
    from vtag.io.user_weights import forget_unverified

    removed = forget_unverified(role)
    console.print(f"removed {removed}" if removed else f"no unverified {role} file was installed", highlight=False)
