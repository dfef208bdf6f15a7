"""The `oblio` command line: the local stack and data-map tools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _local_up(args: argparse.Namespace) -> int:
    import logging

    from infra.local.stack import LocalStack  # heavy (moto, chalice): only for this command

    access = logging.getLogger("oblio.access")
    access.addHandler(logging.StreamHandler())
    access.setLevel(logging.INFO)
    from oblio.errors import DataMapError

    stack = LocalStack(api_port=args.api_port, aws_port=args.aws_port, datamap=args.datamap,
                       demo=not args.no_demo, demo_contacts=args.demo_contacts)
    try:
        info = stack.start()
    except DataMapError as exc:
        print(f"oblio local up: refusing to start: {exc.message}", file=sys.stderr)
        return 2
    print(f"\noblio is running.\n  API:        {info['api_url']}\n"
          f"  local AWS:  {info['aws_endpoint_url']} ({info['region']})")
    for tenant, t in info["tenants"].items():
        print(f"  {tenant + ' key:':<12}{t['api_key']}")
    print("  state:      .oblio/local.json\nPress Ctrl-C to stop.", flush=True)
    stack.wait()
    return 0


def _datamap_check(args: argparse.Namespace) -> int:
    from oblio import datamap
    from oblio.errors import DataMapError

    try:
        dm = datamap.load(args.file)
    except DataMapError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    print(f"{args.file}: valid; {len(dm.tables)} tables, walk order: {' -> '.join(dm.order)}")
    return 0


def _datamap_schema(_: argparse.Namespace) -> int:
    from oblio import datamap

    print(json.dumps(datamap.schema(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oblio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="the embedded local stack").add_subparsers(
        dest="local_command", required=True)
    up = local.add_parser("up", help="start the local AWS, the API and the demo tenants")
    up.add_argument("--api-port", type=int, default=8000)
    up.add_argument("--aws-port", type=int, default=5000)
    up.add_argument("--datamap", type=Path, default=None,
                    help="a data map file (default: the shipped demo map)")
    up.add_argument("--demo-contacts", type=int, default=1000,
                    help="generated contacts around the named demo subjects")
    up.add_argument("--no-demo", action="store_true", help="provision only, no demo data")
    up.set_defaults(fn=_local_up)
    dmp = sub.add_parser("datamap", help="data map tools").add_subparsers(
        dest="datamap_command", required=True)
    check = dmp.add_parser("check", help="validate a data map file")
    check.add_argument("file", type=Path)
    check.set_defaults(fn=_datamap_check)
    dmp.add_parser("schema", help="print the data map's JSON Schema").set_defaults(
        fn=_datamap_schema)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
