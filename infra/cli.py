"""The `oblio` command line: the local stack and data-map tools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

STATE = Path(".oblio/local.json")
#: where `oblio local up` writes its state by default: the checkout's .oblio/local.json
CHECKOUT_STATE = Path(__file__).resolve().parents[1] / ".oblio" / "local.json"


class CliError(Exception):
    """What went wrong, in one line with the fix; printed without a traceback (exit 2)."""


def _state_file() -> Path:
    """The local stack's state: ./.oblio/local.json, or the checkout's when the command runs
    from another directory (where `oblio local up` writes it by default)."""
    return STATE if STATE.exists() or not CHECKOUT_STATE.exists() else CHECKOUT_STATE


def _state(path: Path | None = None) -> dict[str, Any]:
    """The running local stack's URLs and keys."""
    path = path or _state_file()
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"no local stack found ({path} is missing): start one with `make run`, "
                       "or give --api-url and --api-key") from None
    except ValueError:
        raise CliError(f"{path} is not the state a local stack writes: start the stack again "
                       "with `make run`") from None
    return data


def _key_of(state: dict[str, Any], tenant: str, path: Path = STATE) -> str:
    try:
        return str(state["tenants"][tenant]["api_key"])
    except KeyError:
        known = ", ".join(sorted(state.get("tenants", {}))) or "none"
        raise CliError(f"no key for tenant {tenant!r} in {path} (tenants there: {known}); "
                       "give --api-key, or start the stack with --tenant "
                       f"{tenant}") from None


def _endpoint(args: argparse.Namespace, operator: bool = False) -> tuple[str, str]:
    """The API's URL and the key to call it with: --api-url / --api-key, or the local stack's
    state file (the tenant's admin key, or the operator key)."""
    api_url, key = args.api_url, args.api_key
    if not (api_url and key):
        state = _state()
        api_url = api_url or state["api_url"]
        if not key and operator:
            key = state.get("operator_key")
            if not key:
                raise CliError(f"{STATE} holds no operator key: start the stack again with "
                               "`make run`, or give --api-key")
        key = key or _key_of(state, args.tenant)
    return str(api_url), str(key)


def _call(api_url: str, key: str, method: str, path: str, body: Any, timeout: float) -> Any:
    """One JSON call to oblio's API with the tenant's key. An error answer or an API that does
    not answer becomes a CliError that says what to do."""
    import urllib.error
    import urllib.request  # only the commands that call the API need it

    req = urllib.request.Request(
        api_url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())["error"]
            message = f"{exc.code} {err['code']}: {err['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"{exc.code} from {method} {path}"
        raise CliError(message) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"the API at {api_url} does not answer ({reason}): is the local stack "
                       "running? start it with `make run`") from None

def _local_up(args: argparse.Namespace) -> int:
    import logging

    from infra.local.stack import LocalStack  # heavy (moto, chalice): only for this command

    access = logging.getLogger("oblio.access")
    access.addHandler(logging.StreamHandler())
    access.setLevel(logging.INFO)
    access.propagate = False  # one line per request, not one more through the root logger
    from oblio.core.errors import DataMapError

    stack = LocalStack(api_port=args.api_port, aws_port=args.aws_port, datamap=args.datamap,
                       demo=not args.no_demo, demo_contacts=args.demo_contacts,
                       fixtures=args.fixtures, tenants=tuple(args.tenant or ()),
                       state_file=args.state, aws_endpoint=args.aws_endpoint,
                       faults=args.faults)
    try:
        info = stack.start()
    except DataMapError as exc:
        print(f"oblio local up: refusing to start: {exc.message}", file=sys.stderr)
        return 2
    print(f"\noblio is running.\n  API:        {info['api_url']}\n"
          f"  console:    {info['console_url']}  (sign in with the demo key)\n"
          f"  local AWS:  {info['aws_endpoint_url']} ({info['region']})")
    if info.get("faults"):
        print(f"  faults:     {json.dumps(info['faults']['plan'])} (local only; counts in "
              f"{info['faults']['counts_file']})")
    if args.aws_endpoint:
        print(f"  your data:  {args.aws_endpoint} (the data map's tables and buckets)")
    for tenant, t in info["tenants"].items():
        print(f"  {tenant + ' key:':<16}{t['api_key']}")
    print(f"  {'operator key:':<16}{info['operator_key']}  (tenants and keys: POST /v1/tenants)")
    print(f"  state:      {args.state or '.oblio/local.json'}\nPress Ctrl-C to stop.",
          flush=True)
    stack.wait()
    return 0


def _bulk_erase(args: argparse.Namespace) -> int:
    """Upload a CSV for bulk erasure and follow the job with a progress bar."""
    import urllib.error
    import urllib.request

    if not args.file.is_file():  # before a job is created that nothing would ever fill
        raise CliError(f"{args.file}: no such file; give the path of a CSV with an email, "
                       "phone or external_id column")
    api_url, key = _endpoint(args)

    def call(method: str, path: str, body: Any = None) -> Any:
        return _call(api_url, key, method, path, body, timeout=60)

    job = call("POST", "/v1/bulk-erasures", {"dry_run": args.dry_run})
    try:
        # without a type urllib says it is a form, and a form body is not stored as sent
        urllib.request.urlopen(urllib.request.Request(
            job["upload_url"], data=args.file.read_bytes(), method="PUT",
            headers={"Content-Type": "text/csv"}), timeout=300).read()
    except urllib.error.URLError as exc:
        raise CliError(f"the upload of {args.file} failed ({getattr(exc, 'reason', exc)}); "
                       f"job {job['job_id']} waits for a file: run the command again") from None
    print(f"job {job['job_id']}: uploaded {args.file}")
    return _follow(call, job["job_id"], args.poll)


def _bulk_retry(args: argparse.Namespace) -> int:
    """Resume a failed bulk erasure job (the chunks not done) and follow it."""
    api_url, key = _endpoint(args)

    def call(method: str, path: str, body: Any = None) -> Any:
        return _call(api_url, key, method, path, body, timeout=60)

    job = call("POST", f"/v1/bulk-erasures/{args.job_id}/retry", {})
    print(f"job {job['job_id']}: attempt {job['attempt']} resumes the chunks not done")
    return _follow(call, job["job_id"], args.poll)


def _follow(call: Any, job_id: str, poll: float) -> int:
    """Follow a bulk job with a progress bar to its end; print its outcome."""
    import time

    from tqdm import tqdm

    bar = tqdm(total=None, unit="row", desc="erasing")
    while True:
        state = call("GET", f"/v1/bulk-erasures/{job_id}")
        if state["rows_total"] and bar.total is None:
            bar.total = state["rows_total"]
            bar.refresh()
        bar.n = state["rows_done"]
        bar.set_postfix(erased=state["erased"], not_found=state["not_found"],
                        invalid=state["invalid"], failed=state["failed"])
        if state["status"] in ("completed", "completed_with_errors", "failed"):
            break
        time.sleep(poll)
    bar.close()
    print(json.dumps({k: v for k, v in state.items() if k != "report_url"}, indent=2))
    if state.get("report_url"):
        print(f"report (valid for minutes): {state['report_url']}")
    return 0 if state["status"] == "completed" else 1


def _sweep(args: argparse.Namespace) -> int:
    """Run a tenant's retention policies by hand (all enabled ones, or --policy), through
    the API of the local stack (or --api-url / --api-key), and print each sweep's counts."""
    import time

    api_url, key = _endpoint(args)

    def call(method: str, path: str, body: Any = None) -> Any:
        return _call(api_url, key, method, path, body, timeout=120)

    worst = 0
    policies = call("GET", "/v1/retention-policies")["items"]
    chosen = [p for p in policies if (p["id"] == args.policy if args.policy
                                      else p["enabled"])]
    if args.policy and not chosen:
        raise CliError(f"tenant {args.tenant!r} has no policy {args.policy!r}; its "
                       f"policies: {', '.join(p['id'] for p in policies) or 'none'}")
    if not chosen:
        print(f"tenant {args.tenant!r} has no enabled retention policy: nothing to run "
              "(PUT /v1/retention-policies/{id} creates one)")
    for p in chosen:
        # `oblio sweep` without --dry-run is the explicit confirmation a sweep needs
        out = call("POST", f"/v1/retention-policies/{p['id']}/run",
                   {"dry_run": True} if args.dry_run else {"confirm": True})
        if not args.dry_run:
            while out.get("status") not in ("completed", "completed_with_errors",
                                            "failed"):
                time.sleep(args.poll)
                out = call("GET", f"/v1/retention-sweeps/{out['sweep_id']}")
            worst = max(worst, 0 if out["status"] == "completed" else 1)
        print(json.dumps({"policy": p["id"], **{k: out.get(k) for k in (
            "sweep_id", "status", "dry_run", "action", "cutoff", "tables")
            if k in out}}, indent=2))
    return worst


def _backfill(args: argparse.Namespace) -> int:
    """`oblio backfill start|status|list`: the shadows of identities stored as typed, written
    once by a parallel segmented Scan (through the API of the local stack, or --api-url /
    --api-key); --wait follows the backfill with a progress bar of its segments."""
    import time

    api_url, key = _endpoint(args)

    def call(method: str, path: str, body: Any = None) -> Any:
        return _call(api_url, key, method, path, body, timeout=60)

    if args.backfill_command == "list":
        for b in call("GET", "/v1/backfills")["items"]:
            c = b["counts"]
            print(f"{b['backfill_id']}  {b['status']:<21} {', '.join(b['tables'])}: "
                  f"{c['items_read']} read, {c['items_written']} written, "
                  f"{c['already_right']} already right")
        return 0
    if args.backfill_command == "start":
        body: dict[str, Any] = {}
        if args.table:
            body["tables"] = args.table
        if args.segments:
            body["segments"] = args.segments
        out = call("POST", "/v1/backfills", body)
        print(f"backfill {out['backfill_id']}: {', '.join(out['tables'])} "
              f"({out['segments']['total']} segments)")
    else:
        out = call("GET", f"/v1/backfills/{args.backfill_id}")
    if args.wait and out["status"] not in ("completed", "completed_with_errors", "failed"):
        from tqdm import tqdm

        bar = tqdm(total=out["segments"]["total"], unit="segment", desc="backfilling")
        while out["status"] not in ("completed", "completed_with_errors", "failed"):
            time.sleep(args.poll)
            out = call("GET", f"/v1/backfills/{out['backfill_id']}")
            c = out["counts"]
            bar.n = out["segments"]["done"]
            bar.set_postfix(read=c["items_read"], written=c["items_written"],
                            right=c["already_right"], unparsable=c["values_unparsable"])
        bar.close()
    print(json.dumps(out, indent=2))
    return 0 if out["status"] in ("completed", "running") else 1


def _tenants(args: argparse.Namespace) -> int:
    """`oblio tenants create|list`: with the operator key (the local stack's, or --api-key)."""
    api_url, key = _endpoint(args, operator=True)
    if args.tenants_command == "list":
        out = _call(api_url, key, "GET", "/v1/tenants", None, timeout=30)
        for t in out["items"]:
            parent = f"  (child of {t['parent_id']})" if t["parent_id"] else ""
            print(f"{t['tenant_id']:<24}{t['name']}{parent}")
        return 0
    body: dict[str, Any] = {"tenant_id": args.tenant_id, "name": args.name or args.tenant_id}
    if args.parent:
        body["parent_id"] = args.parent
    made = _call(api_url, key, "POST", "/v1/tenants", body, timeout=30)
    print(f"tenant {made['tenant']['tenant_id']} created"
          + (f" under {args.parent}" if args.parent else ""))
    print(f"admin key {made['key_id']}: {made['api_key']}")
    print("  (shown this once: oblio keeps only its hash)")
    return 0


def _keys(args: argparse.Namespace) -> int:
    """`oblio keys create|list|rotate|revoke --tenant T`: any tenant's keys, with the operator
    key; without --tenant, a tenant admin's --api-key acts on its own tenant's keys."""
    own = not args.tenant  # a tenant admin's --api-key, acting on its own tenant
    if own and not args.api_key:
        raise CliError("name the tenant whose keys these are with --tenant T (or give a "
                       "tenant admin's --api-key to act on its own tenant)")
    api_url, key = _endpoint(args, operator=not own)
    base = "/v1/keys" if own else f"/v1/tenants/{args.tenant}/keys"
    cmd = args.keys_command
    if cmd == "list":
        for k in _call(api_url, key, "GET", base, None, timeout=30)["items"]:
            state = f"revoked {k['revoked_at'] or ''}".strip() if k["revoked"] else "active"
            print(f"{k['key_id']}  {','.join(k['scopes']):<40} {state:<32} {k['name']}")
        return 0
    if cmd == "create":
        made = _call(api_url, key, "POST", base,
                     {"scopes": args.scope, "name": args.name, "children": args.children},
                     timeout=30)
    else:
        made = _call(api_url, key, "POST", f"{base}/{args.key_id}/{cmd}", None, timeout=30)
    if cmd == "revoke":
        print(f"key {made['key_id']} revoked: refused from its next call on")
        return 0
    replaces = f" (replaces {made['replaces']}, now revoked)" if made.get("replaces") else ""
    print(f"key {made['key_id']}{replaces}: {made['api_key']}")
    print(f"  scopes {', '.join(made['scopes'])}; shown this once: oblio keeps only its hash")
    return 0


def _aws(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """DynamoDB and S3 clients of --aws-endpoint (default: the running local stack's)."""
    import boto3

    endpoint, region = args.aws_endpoint, args.region
    if not endpoint:
        info = _state()
        endpoint, region = info["aws_endpoint_url"], region or info["region"]
    kw = {"endpoint_url": endpoint, "region_name": region or "eu-west-1",
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return boto3.client("dynamodb", **kw), boto3.client("s3", **kw), kw["region_name"]


def _dead_letters(args: argparse.Namespace) -> int:
    """List the dead letters of the local stack's file or of a deployment's queue; with
    `redrive`, invoke each one's function again with its event."""
    import boto3

    from infra import deadletters as dl
    from oblio.core.naming import physical_name

    redrive = args.dead_letters_command == "redrive"
    sqs = lam = None
    path: Path | None = None
    if args.queue_url:
        import os
        import re

        named = re.search(r"sqs\.([a-z0-9-]+)\.amazonaws", args.queue_url)
        region = args.region or (named.group(1) if named else None) or os.environ.get(
            "AWS_DEFAULT_REGION") or "eu-west-1"
        sqs, lam = boto3.client("sqs", region_name=region), boto3.client(
            "lambda", region_name=region)
        letters = dl.from_queue(sqs, args.queue_url)
        where = args.queue_url
    else:
        info = _state() if not args.file else {}
        path = args.file or Path(info.get("dead_letters") or ".oblio/dead-letters.jsonl")
        prefix = info.get("resource_prefix") or args.prefix
        letters = dl.from_file(path, lambda fn: physical_name(prefix, "function", fn))
        where = str(path)
        if redrive:
            info = info or _state()
            lam = boto3.client("lambda", endpoint_url=info["aws_endpoint_url"],
                               region_name=info["region"], aws_access_key_id="testing",
                               aws_secret_access_key="testing")
    print(f"{len(letters)} dead letter(s) in {where}")
    for x in letters:
        fix = "" if x.sendable else f"  ({dl.NOT_SENT.get(x.kind, dl.NOT_SENT['queue'])})"
        print(f"  {x.kind:6} {x.function or '-'}  {x.at or '?'}  {x.error or '-'}{fix}")
    if not redrive:
        if sqs is not None:
            dl.release(sqs, args.queue_url, letters)
        return 0

    def invoke(function: str, payload: bytes) -> str | None:
        try:
            if sqs is not None:  # AWS: queued again, with its retries and destination
                got = lam.invoke(FunctionName=function, InvocationType="Event",
                                 Payload=payload)
                return None if got.get("StatusCode") == 202 else f"status {got['StatusCode']}"
            got = lam.invoke(FunctionName=function, Payload=payload)  # locally: run now
            if got.get("FunctionError"):
                err = json.loads(got["Payload"].read() or b"{}")
                return str(err.get("errorType") or got["FunctionError"])
            return None
        except Exception as exc:  # noqa: BLE001 - said, and the letter kept
            return type(exc).__name__

    sent, failed = dl.send(letters, invoke, only=args.function)
    if sqs is not None:
        for x in sent:
            sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=x.where)
        dl.release(sqs, args.queue_url, [x for x in letters if x not in sent])
    elif path is not None and sent:
        dl.rewrite_file(path, sent)
    left = len(letters) - len(sent)
    how = "accepted by Lambda, which runs it with its retries" if sqs is not None \
        else "ran without error"
    print(f"sent again: {len(sent)} ({how}); failed again: {len(failed)}; "
          f"left in {where}: {left}")
    for x, error in failed:
        print(f"  failed again: {x.function}: {error}")
    return 1 if failed else 0


def _datamap_check(args: argparse.Namespace) -> int:
    from oblio.core import datamap
    from oblio.core.errors import DataMapError

    try:
        dm = datamap.load(args.file)
    except DataMapError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    print(f"{args.file}: valid; {len(dm.tables)} tables, walk order: {' -> '.join(dm.order)}")
    if not args.data:
        return 0
    from infra import mapping

    dynamodb, s3, _ = _aws(args)
    report = mapping.check_data(dm, dynamodb, s3, limit=args.sample,
                                region=args.phone_region)
    sampled = ", ".join(f"{t} {n}" for t, n in report.sampled.items())
    objects = ", ".join(f"{b} {n}" for b, n in report.objects.items()) or "no bucket"
    print(f"sampled items: {sampled}; object keys: {objects}")
    for attr, (holding, right) in report.coverage.items():
        print(f"shadow coverage: {attr}: {right} of {holding} sampled items holding it have "
              "a right shadow")
    for w in report.warnings:
        print(f"warning: {w}")
    print(f"{len(report.warnings)} warning(s)" if report.warnings else
          "no warnings: every sampled attribute and object is covered by the map")
    return 1 if report.warnings else 0


def _datamap_draft(args: argparse.Namespace) -> int:
    from infra import mapping

    dynamodb, s3, _ = _aws(args)
    try:
        print(mapping.draft(dynamodb, args.table, args.bucket or [], limit=args.sample, s3=s3),
              end="")
    except dynamodb.exceptions.ResourceNotFoundException:
        print("oblio datamap draft: a --table does not exist at the endpoint; list them with "
              "aws dynamodb list-tables", file=sys.stderr)
        return 2
    return 0


def _datamap_schema(_: argparse.Namespace) -> int:
    from oblio.core import datamap

    print(json.dumps(datamap.schema(), indent=2))
    return 0


def _api_options(p: argparse.ArgumentParser) -> None:
    """The options of a command that calls the API and follows what it started."""
    p.add_argument("--api-url", help="default: .oblio/local.json")
    p.add_argument("--api-key", help="default: the tenant's key in .oblio/local.json")
    p.add_argument("--tenant", default="demo", help="whose key to take from "
                                                    ".oblio/local.json (default demo)")
    p.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    from oblio import __version__

    parser = argparse.ArgumentParser(prog="oblio", description=__doc__)
    parser.add_argument("--version", action="version", version=f"oblio {__version__}")
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
    up.add_argument("--fixtures", type=Path, default=None,
                    help="load DIR/<table>.jsonl items and DIR/s3/<bucket>/<key> files into "
                         "the map's tables and buckets")
    up.add_argument("--tenant", action="append", metavar="NAME",
                    help="create a tenant with an admin key (repeatable)")
    up.add_argument("--state", type=Path, default=None, metavar="FILE",
                    help="where to write the URLs and keys (default: .oblio/local.json)")
    up.add_argument("--faults", metavar="PLAN", default=None,
                    help="a fault plan for this local stack only (a JSON file or inline "
                         "JSON, default: $OBLIO_LOCAL_FAULTS): task errors, DynamoDB "
                         "throttles and partial batches, S3 503s and partial deletes at "
                         "given rates; see README 'The fault suite'")
    up.add_argument("--aws-endpoint", metavar="URL", default=None,
                    help="a local AWS you already run (e.g. a moto server) holding your "
                         "tables and buckets: the data map's tables and buckets are used "
                         "there (and created there if missing); oblio's own stay in the local "
                         "AWS it starts")
    up.set_defaults(fn=_local_up)
    be = sub.add_parser("bulk-erase", help="erase the people of a CSV (email, phone, "
                                           "external_id columns) and follow the job")
    be.add_argument("file", type=Path)
    be.add_argument("--dry-run", action="store_true", help="report what would be erased")
    _api_options(be)
    be.set_defaults(fn=_bulk_erase)
    br = sub.add_parser("bulk-retry", help="resume a failed bulk erasure job: rerun the "
                                           "chunks not done, from their kept plans")
    br.add_argument("job_id")
    _api_options(br)
    br.set_defaults(fn=_bulk_retry)
    sw = sub.add_parser("sweep", help="run a tenant's retention policies now")
    sw.add_argument("--tenant", default="demo")
    sw.add_argument("--policy", help="one policy (default: every enabled one)")
    sw.add_argument("--dry-run", action="store_true", help="report what would be done")
    sw.add_argument("--api-url", help="default: .oblio/local.json")
    sw.add_argument("--api-key", help="default: the tenant's key in .oblio/local.json")
    sw.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    sw.set_defaults(fn=_sweep)
    bf = sub.add_parser("backfill", help="write the shadows of identities stored as typed "
                                         "(a parallel Scan of the tables) and follow it")
    bsub = bf.add_subparsers(dest="backfill_command", required=True)
    bstart = bsub.add_parser("start", help="start a backfill of the tenant's tables")
    bstart.add_argument("--table", action="append", metavar="T",
                        help="a logical table of the map (repeatable; default: every table "
                             "with an identity stored as typed)")
    bstart.add_argument("--segments", type=int, default=None,
                        help="parallel Scan segments per table (1-64, default 4)")
    bstatus = bsub.add_parser("status", help="a backfill's status and progress")
    bstatus.add_argument("backfill_id")
    blist = bsub.add_parser("list", help="the tenant's backfills, newest first")
    for p in (bstart, bstatus):
        p.add_argument("--wait", action="store_true",
                       help="follow it with a progress bar until it ends")
    for p in (bstart, bstatus, blist):
        p.add_argument("--tenant", default="demo", help="whose key to take from "
                                                        ".oblio/local.json (default demo)")
        p.add_argument("--api-url", help="default: .oblio/local.json")
        p.add_argument("--api-key", help="default: the tenant's key in .oblio/local.json")
        p.add_argument("--poll", type=float, default=1.0, help=argparse.SUPPRESS)
    bf.set_defaults(fn=_backfill)
    dls = sub.add_parser("dead-letters", help="the events that failed after their retries "
                                              "(README: When things fail): list them, or "
                                              "send them again")
    dsub = dls.add_subparsers(dest="dead_letters_command", required=True)
    for name, text in (("list", "every dead letter, by kind, function, time and error"),
                       ("redrive", "invoke each one's function again with its event; those "
                                   "sent leave the file or the queue")):
        dp = dsub.add_parser(name, help=text)
        dp.add_argument("--file", type=Path, default=None,
                        help="the local stack's dead letters (default: the file of the "
                             "stack in .oblio/local.json)")
        dp.add_argument("--queue-url", default=None,
                        help="a deployment's dead-letter queue (<prefix>-dead-letters; AWS "
                             "credentials from the environment) instead of the local file")
        dp.add_argument("--region", default=None, help="default: the queue URL's")
        dp.add_argument("--prefix", default="oblio",
                        help="the local resource prefix, with --file (default oblio)")
        if name == "redrive":
            dp.add_argument("--function", default=None,
                            help="only the dead letters of this function (e.g. bulk_start)")
        else:
            dp.set_defaults(function=None)
    dls.set_defaults(fn=_dead_letters)
    ten = sub.add_parser("tenants", help="create and list tenants (the operator key)")
    tsub = ten.add_subparsers(dest="tenants_command", required=True)
    tc = tsub.add_parser("create", help="a tenant with its first admin key (shown once)")
    tc.add_argument("tenant_id", help="2-63 lower-case letters, digits or '-'")
    tc.add_argument("--name", help="a name people read (default: the id)")
    tc.add_argument("--parent", metavar="TENANT", help="an existing tenant it is a child of")
    tl = tsub.add_parser("list", help="every tenant")
    keys = sub.add_parser("keys", help="a tenant's API keys: create, list, rotate, revoke")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", help="a new key (shown once)")
    kc.add_argument("--scope", action="append", required=True, metavar="SCOPE",
                    help="repeatable: dsr:read, dsr:write, dsr:erase, consent:read, "
                         "consent:write, audit:read, admin")
    kc.add_argument("--name", default=None)
    kc.add_argument("--children", action="store_true", help="may act on child tenants")
    kl = ksub.add_parser("list", help="the tenant's keys (never the keys themselves)")
    kr = ksub.add_parser("rotate", help="a new key with the same scopes; the old one stops")
    kv = ksub.add_parser("revoke", help="refused from its very next call on")
    for p in (kr, kv):
        p.add_argument("key_id")
    for p in (tc, tl, kc, kl, kr, kv):
        p.add_argument("--api-url", help="default: .oblio/local.json")
        p.add_argument("--api-key", help="default: the operator key in .oblio/local.json "
                                         "(keys: a tenant admin's key acts on its own tenant)")
    for p in (kc, kl, kr, kv):
        p.add_argument("--tenant", help="whose keys (with the operator key); without it, "
                                        "--api-key is a tenant admin's, acting on its own")
    ten.set_defaults(fn=_tenants)
    keys.set_defaults(fn=_keys)
    dmp = sub.add_parser("datamap", help="data map tools").add_subparsers(
        dest="datamap_command", required=True)
    check = dmp.add_parser("check", help="validate a data map file")
    check.add_argument("file", type=Path)
    check.add_argument("--data", action="store_true",
                       help="also sample the live tables and buckets and warn about what the "
                            "map misses (exit 1 when it warns)")
    draft = dmp.add_parser("draft", help="print a first data map drafted from live tables")
    draft.add_argument("--table", action="append", required=True, metavar="NAME")
    draft.add_argument("--bucket", action="append", metavar="NAME")
    for p in (check, draft):
        p.add_argument("--aws-endpoint", metavar="URL",
                       help="default: the local stack's (.oblio/local.json)")
        p.add_argument("--region", default=None)
        p.add_argument("--sample", type=int, default=300, metavar="N",
                       help="items read per table and object keys per bucket (default 300)")
    check.add_argument("--phone-region", default=None, metavar="CC",
                       help="the region national phone numbers are read in (e.g. IT)")
    check.set_defaults(fn=_datamap_check)
    draft.set_defaults(fn=_datamap_draft)
    dmp.add_parser("schema", help="print the data map's JSON Schema").set_defaults(
        fn=_datamap_schema)
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args))
    except CliError as exc:
        print(f"oblio {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # a job or sweep already started goes on in the stack: say how to follow it
        print(f"oblio {args.command}: interrupted (what the API started goes on: follow it "
              "with GET /v1/bulk-erasures or /v1/retention-sweeps)", file=sys.stderr)
        return 130
    except Exception as exc:
        from botocore.exceptions import EndpointConnectionError

        if not isinstance(exc, EndpointConnectionError):
            raise
        print(f"oblio {args.command}: the AWS endpoint {exc.kwargs.get('endpoint_url', '')} "
              "does not answer: is the local stack running? start it with `make run`, or "
              "give --aws-endpoint URL", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
