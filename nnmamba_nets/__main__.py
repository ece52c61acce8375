"""Command line: ``python -m nnmamba_nets info`` and ``python -m nnmamba_nets pictures <kind> <folder> ...``."""

from __future__ import annotations

import argparse

from .info import environment_report


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    ``pictures`` hands its arguments to :func:`nnmamba_nets.common.pictures.main`, imported only then
    (it needs matplotlib and tensorboard).

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m nnmamba_nets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions, CUDA, and which scan backend CPU and CUDA tensors would use, and why")
    commands.add_parser(
        "pictures",
        add_help=False,  # `pictures --help` is the pictures command's own help
        help="PNG pictures of a bundle run from its outputs: curves, segmentation, classification, landmarks "
        "(see `pictures --help`)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "pictures":
        from .common.pictures import main as pictures_main

        return pictures_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    print(environment_report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
