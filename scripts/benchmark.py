"""Benchmarks: inference engines, the image path, the training input pipeline, the served API.

Examples:
    python scripts/benchmark.py model --preset ssd300_voc --batch-sizes 1,8
    python scripts/benchmark.py image           # JPEG decode + resize, full vs reduced DCT
    python scripts/benchmark.py data --preset ssd300_voc
    python scripts/benchmark.py serve --protocol http --concurrency 1,4,16,64 --duration 10
Every subcommand has a `--quick` mode that the test suite runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUBCOMMANDS = {
    "model": "benchmarks.model",
    "data": "benchmarks.data",
    "serve": "benchmarks.serve",
    "image": "benchmarks.image",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        summary = (module.__doc__ or name).splitlines()[0]
        module.add_arguments(subparsers.add_parser(name, help=summary))
    args = parser.parse_args(argv)
    return modules[args.command].main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
