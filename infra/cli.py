"""The `oblio` command line: the local stack and data-map tools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _call(api_url: str, key: str, method: str, path: str, body: Any, timeout: float) -> Any:
    """One JSON call to oblio's API with the tenant's key."""
    import urllib.request  # only the commands that call the API need it

    req = urllib.request.Request(
        api_url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())

def _local_up(args: argparse.Namespace) -> int:
    import logging

    from infra.local.stack import LocalStack  # heavy (moto, chalice): only for this command

    access = logging.getLogger("oblio.access")
    access.addHandler(logging.StreamHandler())
    access.setLevel(logging.INFO)
    from oblio.core.errors import DataMapError

    stack = LocalStack(api_port=args.api_port, aws_port=args.aws_port, datamap=args.datamap,
                       demo=not args.no_demo, demo_contacts=args.demo_contacts)
    try:
        info = stack.start()
    except DataMapError as exc:
        print(f"oblio local up: refusing to start: {exc.message}", file=sys.stderr)
        return 2
    print(f"\noblio is running.\n  API:        {info['api_url']}\n"
          f"  console:    {info['console_url']}  (sign in with the demo key)\n"
          f"  local AWS:  {info['aws_endpoint_url']} ({info['region']})")
    for tenant, t in info["tenants"].items():
        print(f"  {tenant + ' key:':<16}{t['api_key']}")
    print("  state:      .oblio/local.json\nPress Ctrl-C to stop.", flush=True)
    stack.wait()
    return 0


def _bulk_erase(args: argparse.Namespace) -> int:
    """Upload a CSV for bulk erasure and follow the job with a progress bar."""
    import time
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    api_url, key = args.api_url, args.api_key
    if not (api_url and key):
        state = json.loads(Path(".oblio/local.json").read_text())
        api_url = api_url or state["api_url"]
        key = key or state["tenants"]["demo"]["api_key"]

    def call(method: str, path: str, body: Any = None) -> Any:
        return _call(api_url, key, method, path, body, timeout=60)

    try:
        job = call("POST", "/v1/bulk-erasures", {"dry_run": args.dry_run})
        with open(args.file, "rb") as fh:
            # without a type urllib says it is a form, and a form body is not stored as sent
            urllib.request.urlopen(urllib.request.Request(
                job["upload_url"], data=fh.read(), method="PUT",
                headers={"Content-Type": "text/csv"}), timeout=300).read()
    except urllib.error.HTTPError as exc:
        print(f"oblio bulk-erase: {exc.code}: {exc.read().decode()}", file=sys.stderr)
        return 2
    print(f"job {job['job_id']}: uploaded {args.file}")
    bar = tqdm(total=None, unit="row", desc="erasing")
    while True:
        state = call("GET", f"/v1/bulk-erasures/{job['job_id']}")
        if state["rows_total"] and bar.total is None:
            bar.total = state["rows_total"]
            bar.refresh()
        bar.n = state["rows_done"]
        bar.set_postfix(erased=state["erased"], not_found=state["not_found"],
                        invalid=state["invalid"], failed=state["failed"])
        if state["status"] in ("completed", "completed_with_errors", "failed"):
            break
        time.sleep(args.poll)
    bar.close()
    print(json.dumps({k: v for k, v in state.items() if k != "report_url"}, indent=2))
    if state.get("report_url"):
        print(f"report (valid for minutes): {state['report_url']}")
    return 0 if state["status"] == "completed" else 1


def _sweep(args: argparse.Namespace) -> int:
    """Run a tenant's retention policies by hand (all enabled ones, or --policy), through
    the API of the local stack (or --api-url / --api-key), and print each sweep's counts."""
    import time
    import urllib.error

    api_url, key = args.api_url, args.api_key
    if not (api_url and key):
        state = json.loads(Path(".oblio/local.json").read_text())
        api_url = api_url or state["api_url"]
        if not key:
            if args.tenant not in state["tenants"]:
                print(f"oblio sweep: no key for tenant {args.tenant!r} in .oblio/local.json",
                      file=sys.stderr)
                return 2
            key = state["tenants"][args.tenant]["api_key"]

    def call(method: str, path: str, body: Any = None) -> Any:
        return _call(api_url, key, method, path, body, timeout=120)

    worst = 0
    try:
        policies = call("GET", "/v1/retention-policies")["items"]
        chosen = [p for p in policies if (p["id"] == args.policy if args.policy
                                          else p["enabled"])]
        if args.policy and not chosen:
            print(f"oblio sweep: no policy {args.policy!r}", file=sys.stderr)
            return 2
        for p in chosen:
            out = call("POST", f"/v1/retention-policies/{p['id']}/run",
                       {"dry_run": args.dry_run})
            if not args.dry_run:
                while out.get("status") not in ("completed", "completed_with_errors",
                                                "failed"):
                    time.sleep(args.poll)
                    out = call("GET", f"/v1/retention-sweeps/{out['sweep_id']}")
                worst = max(worst, 0 if out["status"] == "completed" else 1)
            print(json.dumps({"policy": p["id"], **{k: out.get(k) for k in (
                "sweep_id", "status", "dry_run", "action", "cutoff", "tables")
                if k in out}}, indent=2))
    except urllib.error.HTTPError as exc:
        print(f"oblio sweep: {exc.code}: {exc.read().decode()}", file=sys.stderr)
        return 2
    return worst


def _datamap_check(args: argparse.Namespace) -> int:
    from oblio.core import datamap
    from oblio.core.errors import DataMapError

    try:
        dm = datamap.load(args.file)
    except DataMapError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    print(f"{args.file}: valid; {len(dm.tables)} tables, walk order: {' -> '.join(dm.order)}")
    return 0


def _datamap_schema(_: argparse.Namespace) -> int:
    from oblio.core import datamap

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
    be = sub.add_parser("bulk-erase", help="erase the people of a CSV (email, phone, "
                                           "external_id columns) and follow the job")
    be.add_argument("file", type=Path)
    be.add_argument("--dry-run", action="store_true", help="report what would be erased")
    be.add_argument("--api-url", help="default: .oblio/local.json")
    be.add_argument("--api-key", help="default: the demo key in .oblio/local.json")
    be.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    be.set_defaults(fn=_bulk_erase)
    sw = sub.add_parser("sweep", help="run a tenant's retention policies now")
    sw.add_argument("--tenant", default="demo")
    sw.add_argument("--policy", help="one policy (default: every enabled one)")
    sw.add_argument("--dry-run", action="store_true", help="report what would be done")
    sw.add_argument("--api-url", help="default: .oblio/local.json")
    sw.add_argument("--api-key", help="default: the tenant's key in .oblio/local.json")
    sw.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    sw.set_defaults(fn=_sweep)
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
