"""Command line: ``emohrnet-fast <command>`` (also ``python -m emohrnet_fast``)."""

from __future__ import annotations

import argparse
import json
import sys


def _info(args: argparse.Namespace) -> int:
    from emohrnet_fast import info

    report = info()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    build = report["build"]
    cuda = (
        f"yes (sm {build['cuda_architectures']}, CUDA {build['cuda_toolkit']})"
        if build["cuda"]
        else "no"
    )
    print(
        f"emohrnet_fast {report['version']}  (torch {report['torch']}, Python {report['python']})"
    )
    print(f"CPU kernels:  {', '.join(report['kernels']['cpu'])}")
    print(f"CUDA kernels: {cuda}")
    print(f"devices:      {', '.join(report['devices'])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emohrnet-fast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info_cmd = commands.add_parser("info", help="version, build (CPU/CUDA kernels) and devices")
    info_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    info_cmd.set_defaults(run=_info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
