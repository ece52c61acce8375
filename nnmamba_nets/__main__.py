"""Command line: ``python -m nnmamba_nets info``."""

from __future__ import annotations

import argparse

from .info import environment_report


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m nnmamba_nets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, CUDA, and which scan backend CPU and CUDA tensors would use, and why")
    args = parser.parse_args(argv)
    if args.command == "info":
        print(environment_report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
