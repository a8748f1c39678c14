"""`python -m vtag` and the `vtag` console script."""

import sys


def run() -> None:
    # Importing the CLI (Typer, Rich, the command modules) takes seconds on a loaded machine; a Ctrl-C
    # then lands before main()'s handler exists and Python would die of SIGINT with a traceback.
    try:
        from vtag.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
