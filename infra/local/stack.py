"""The embedded local stack: moto in server mode on 127.0.0.1 executing the state machines for
real, Lambda invocations dispatched in-process to the project's handlers, every resource made
from the catalogue, the demo tenants with keys and data, and the Chalice API.

`LocalStack.start()` is what `oblio local up` and the integration tests both call. Settings
are read from the environment, so the environment is set before any oblio module reads it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parents[2]
DEMO_ADMIN_SCOPES = ("admin",)
TENANT_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61})[a-z0-9]$")


def port_free(port: int) -> bool:
    """Whether a server of ours could bind `port` on 127.0.0.1 now. Like the servers, the probe
    sets SO_REUSEADDR: a port that a stopped stack left in TIME_WAIT counts as free."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure_environment(aws_port: int, datamap: Path | None = None,
                          region: str = "eu-west-1", data_endpoint: str | None = None) -> None:
    """Point every AWS client of this process at the local AWS (and the data map's tables and
    buckets at `data_endpoint`, the user's own local AWS, when given). Call before importing
    oblio."""
    endpoint = f"http://127.0.0.1:{aws_port}"
    os.environ.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": region, "MOTO_PORT": str(aws_port),
        "OBLIO_ACCOUNT_ID": "123456789012",
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "oblio",
        "POWERTOOLS_DEV": os.environ.get("POWERTOOLS_DEV", "false"),
    })
    if datamap is not None:
        os.environ["OBLIO_DATAMAP"] = str(Path(datamap).resolve())
    if data_endpoint:
        os.environ["OBLIO_DATA_ENDPOINT_URL"] = data_endpoint
    else:
        os.environ.pop("OBLIO_DATA_ENDPOINT_URL", None)


#: deliveries of one event to its target, as AWS retries an asynchronous invocation twice
DELIVERY_ATTEMPTS = 3


def deliver(invoke: Any, payload: bytes, attempts: int = DELIVERY_ATTEMPTS,
            wait: Any = None) -> tuple[bool, int, str]:
    """Invoke a target with `payload` until it succeeds (no exception, no FunctionError), at
    most `attempts` times with a short backoff; returns (delivered, tries, last error)."""
    import time

    error = ""
    for n in range(1, attempts + 1):
        try:
            resp = invoke(payload)
            if not resp.get("FunctionError"):
                return True, n, ""
            error = str(resp.get("FunctionError"))
        except Exception as exc:  # noqa: BLE001 - recorded in the dead letter
            error = type(exc).__name__
        if n < attempts:
            (wait or time.sleep)(0.2 * 2 ** (n - 1))
    return False, attempts, error


def dead_letter(path: Path, queue: str, function: str, body: str, tries: int,
                error: str) -> None:
    """Append an event that could not be delivered to the local dead-letter file (events
    carry references only, never personal data)."""
    import json as _json
    from datetime import UTC, datetime

    from infra.deadletters import locked

    with locked(path) as f:  # `oblio dead-letters redrive` rewrites it under the same lock
        f.write((_json.dumps({"at": datetime.now(UTC).isoformat(), "queue": queue,
                              "function": function, "attempts": tries, "error": error,
                              "body": body}) + "\n").encode("utf-8"))


class EventPump(threading.Thread):
    """moto's EventBridge delivers rules only to SQS: drain each rule's local queue into the
    target it has in AWS (a function), as EventBridge would."""

    def __init__(self, settings: Any) -> None:
        super().__init__(name="oblio-event-pump", daemon=True)
        from infra.catalogue import CATALOGUE

        self.settings = settings
        self.routes = [(r.local_queue, r.target) for r in CATALOGUE.rules
                       if r.local_queue and r.target[0] == "function"]
        self._halt = threading.Event()
        self.dead_letters = Path(os.environ.get("OBLIO_LOCAL_DEAD_LETTERS",
                                                ".oblio/dead-letters.jsonl"))

    def run(self) -> None:
        import logging

        from oblio.store import aws

        sqs, lam = aws.client("sqs"), aws.client("lambda")
        urls = {q: sqs.get_queue_url(QueueName=f"{self.settings.resource_prefix}-{q}")[
            "QueueUrl"] for q, _ in self.routes}
        while not self._halt.is_set():
            idle = True
            for queue, (_, fn) in self.routes:
                try:
                    msgs = sqs.receive_message(QueueUrl=urls[queue], MaxNumberOfMessages=10,
                                               WaitTimeSeconds=1).get("Messages", [])
                    for msg in msgs:
                        idle = False
                        name = self.settings.function(fn)
                        ok, tries, error = deliver(
                            lambda p, name=name: lam.invoke(FunctionName=name, Payload=p),
                            msg["Body"].encode())
                        if not ok:  # as AWS after its two retries: a record you can see
                            dead_letter(self.dead_letters, queue, fn, msg["Body"], tries, error)
                            logging.getLogger("oblio.local").error(
                                "event pump: %s failed %d times; dead letter in %s",
                                fn, tries, self.dead_letters)
                        sqs.delete_message(QueueUrl=urls[queue],
                                           ReceiptHandle=msg["ReceiptHandle"])
                except Exception:
                    if self._halt.is_set():
                        return
                    logging.getLogger("oblio.local").exception("event pump: delivery failed")
            if idle:  # the long poll above already waited
                self._halt.wait(0.05)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


class ScheduleTimer(threading.Thread):
    """moto keeps schedule rules but never fires them: invoke each scheduled rule's function
    every `seconds` (settings.local_schedule_seconds; 0 turns the timer off), as EventBridge
    would on its schedule."""

    def __init__(self, settings: Any, seconds: float) -> None:
        super().__init__(name="oblio-schedules", daemon=True)
        from infra.catalogue import CATALOGUE

        self.settings, self.seconds = settings, seconds
        self.rules = [r for r in CATALOGUE.rules if r.schedule and r.target[0] == "function"]
        self._halt = threading.Event()

    def run(self) -> None:
        import logging

        from oblio.store import aws

        while not self._halt.wait(self.seconds):
            for rule in self.rules:
                try:
                    aws.client("lambda").invoke(
                        FunctionName=self.settings.function(rule.target[1]),
                        Payload=json.dumps({"source": "aws.events",
                                            "detail-type": "Scheduled Event",
                                            "resources": [rule.name], "detail": {}}).encode())
                except Exception:
                    logging.getLogger("oblio.local").exception("schedule %s failed", rule.name)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _refuse_a_dead_endpoint(url: str) -> None:
    """`--aws-endpoint` must answer as an AWS endpoint before anything is started."""
    from infra.local import yours

    if not re.match(r"^https?://[^/\s]+/?$", url):
        raise yours.Refused([f"--aws-endpoint {url!r}: give the endpoint's URL, such as "
                             "http://127.0.0.1:5000 (scheme, host and port, no path)"])
    try:
        urlopen(Request(url.rstrip("/") + "/", method="GET"), timeout=5).read()
    except HTTPError:
        return  # it answers (an AWS endpoint answers a bare GET with an error document)
    except (URLError, OSError) as exc:
        kind = type(exc).__name__
        raise yours.Refused([f"--aws-endpoint {url}: nothing answers there ({kind}): start "
                             "your local AWS first (e.g. `moto_server -p 5000`), or leave the "
                             "option out to let oblio start one"]) from None


@dataclass
class LocalStack:
    api_port: int = 8000
    aws_port: int = 5000
    datamap: Path | None = None
    demo: bool = True
    demo_contacts: int = 1000
    demo_api_key: str | None = None
    #: a fixture directory loaded into the map's tables and buckets (infra/local/yours.py)
    fixtures: Path | None = None
    #: more tenants, each with an admin key, listed in .oblio/local.json
    tenants: tuple[str, ...] = ()
    write_state: bool = True
    #: where the state (URLs, keys) is written; default .oblio/local.json of the checkout
    state_file: Path | None = None
    #: a local AWS the user already runs (a moto server holding their tables and buckets):
    #: the data map's tables and buckets are read, created when missing, and written there;
    #: oblio's own tables, buckets and workflows stay in the local AWS this stack starts
    aws_endpoint: str | None = None
    #: a fault plan for this local stack only (a path or inline JSON; default: the
    #: environment's OBLIO_LOCAL_FAULTS), see infra/local/faults.py
    faults: str | None = None
    quiet: bool = False
    #: run each Lambda invocation in a warm worker process of its own, as AWS runs each in a
    #: sandbox (infra/local/sandboxes.py): moto and the handlers then use two cores, not one
    sandboxes: bool = field(
        default_factory=lambda: os.environ.get("OBLIO_LOCAL_SANDBOXES", "") == "1")
    info: dict[str, Any] = field(default_factory=dict)
    _moto: Any = None
    _api: Any = None
    _api_thread: threading.Thread | None = None
    _pump: Any = None
    _timer: Any = None
    _streams: Any = None
    _pool: Any = None

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)

    def start(self) -> dict[str, Any]:
        from infra.local import yours

        configure_environment(self.aws_port, self.datamap, data_endpoint=self.aws_endpoint)
        import logging

        from infra.local import lambdas, moto_http, moto_speed, provision, streams
        from oblio.core import datamap as dmap
        from oblio.core.settings import get_settings

        # moto's server logs every request line: keep the console for what matters
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        settings = get_settings()
        # refuse a bad data map, bad fixtures or a bad tenant name before anything starts
        dm = dmap.load(settings.datamap)
        silo = [*self.tenants, *(("demo", "demo-child") if self.demo else ())]
        fixtures = yours.read_fixtures(dm, Path(self.fixtures), silo) if self.fixtures \
            else None
        for name in self.tenants:
            if not TENANT_NAME.match(name) or name in ("demo", "demo-child"):
                raise yours.Refused([f"--tenant {name!r}: a tenant name is 2 to 63 lower-case "
                                    "letters, digits or '-' (not first or last), and not "
                                    "demo or demo-child"])
        from infra.local import faults as local_faults

        try:
            plan = local_faults.load(self.faults)
        except local_faults.PlanError as exc:
            raise yours.Refused([str(exc)]) from None
        if plan is not None and self.sandboxes:
            raise yours.Refused(["a fault plan hooks the clients of this process, which the "
                                 "Lambda sandboxes' processes do not have: run it without "
                                 "OBLIO_LOCAL_SANDBOXES"])
        if plan is not None:  # every client made from now on carries the (idle) fault hook
            local_faults.patch_sessions()
        self._refuse_a_running_stack()
        if self.aws_endpoint:
            _refuse_a_dead_endpoint(self.aws_endpoint)
        for port in (self.aws_port, self.api_port):
            # moto's server binds in a thread, where a taken port would go unnoticed and the
            # clients would talk to whatever listens there: refuse here instead
            if not port_free(port):
                raise yours.Refused([f"port {port} on 127.0.0.1 is in use: choose another "
                                     "with --aws-port / --api-port"])
        self._moto = moto_http.Server(ip_address="127.0.0.1", port=self.aws_port)
        self._moto.start()
        endpoint = f"http://127.0.0.1:{self.aws_port}"
        urlopen(Request(f"{endpoint}/moto-api/config", method="POST",
                        data=json.dumps({"stepfunctions": {"execute_state_machine": True}})
                        .encode(), headers={"Content-Type": "application/json"}), timeout=10)
        if self.sandboxes:
            from infra.local import sandboxes

            self._pool = sandboxes.Pool()
        lambdas.install(lambdas.Dispatcher(settings.resource_prefix, self._pool))
        moto_speed.install()
        t0 = time.monotonic()
        provision.provision(settings)
        self._say(f"provisioned the catalogue in {time.monotonic() - t0:.1f}s")
        from oblio.store import aws

        try:
            ddb, s3 = aws.data_client("dynamodb"), aws.data_client("s3")
            where = f" on {self.aws_endpoint}" if self.aws_endpoint else ""
            made = yours.create_missing(dm, ddb, s3, settings.region, silo)
            for line in made:
                self._say(f"created {line}{where} (named by the data map)")
            dmap.check_tables(dm, ddb, silo)
            if fixtures is not None:
                yours.load_fixtures(fixtures, ddb, s3)
                self._say(f"fixtures: {fixtures.summary()} from {self.fixtures}")
            # after the fixtures: what they loaded is the backfill's to shadow, what is
            # written from now on the stream consumer's
            shadowed = streams.shadowed_tables(dm, silo)
            for name in streams.enable(ddb, shadowed):
                self._say(f"enabled the stream of table {name} (identities stored as typed: "
                          "the shadow_stream consumer keeps their shadows current)")
        except Exception:
            self.stop()
            raise
        operator = provision.operator_key(settings)
        tenants = self._tenants()
        if self.demo:
            from infra.local import demo

            t0 = time.monotonic()
            counts = demo.seed(dm, ["demo", "demo-child"], self.demo_contacts)
            self._say(f"demo data: {sum(v for k, v in counts.items() if k != 'files')} items, "
                      f"{counts.get('files', 0)} files in {time.monotonic() - t0:.1f}s")
            from oblio.jobs import retention

            retention.seed_demo_policies("demo")
        self._pump = EventPump(settings)
        self._pump.start()
        if shadowed:
            self._streams = streams.StreamPoller(settings, shadowed)
            self._streams.start()
        if settings.local_schedule_seconds > 0:
            self._timer = ScheduleTimer(settings, settings.local_schedule_seconds)
            self._timer.start()
        self._serve_api()
        faults_info: dict[str, Any] | None = None
        if plan is not None:  # set up without faults; from here on they are injected
            counts = Path(os.environ.get("OBLIO_LOCAL_FAULTS_COUNTS",
                                         str(self._state_path().parent / "faults.json")))
            local_faults.activate(plan, counts)
            faults_info = {"plan": plan.as_dict(), "counts_file": str(counts)}
            self._say(f"fault plan: {json.dumps(plan.as_dict())}; counts in {counts}")
        self.info = {
            "api_url": f"http://127.0.0.1:{self.api_port}",
            "console_url": f"http://127.0.0.1:{self.api_port}/console/",
            "aws_endpoint_url": endpoint, "region": settings.region,
            # where the data map's tables and buckets are: the user's local AWS, or oblio's
            "data_endpoint_url": self.aws_endpoint or endpoint,
            "tenants": tenants, "operator_key": operator,
            # what `oblio dead-letters` reads: the file the event pump writes, and how the
            # catalogue's functions are named here
            "dead_letters": str(self._pump.dead_letters.resolve()) if self._pump else None,
            "resource_prefix": settings.resource_prefix,
        }
        if faults_info:
            self.info["faults"] = faults_info
        if self.write_state:
            state = self._state_path()
            state.parent.mkdir(exist_ok=True)
            state.write_text(json.dumps(self.info, indent=2))
        return self.info

    def _state_path(self) -> Path:
        return Path(self.state_file) if self.state_file else ROOT / ".oblio" / "local.json"

    def _refuse_a_running_stack(self) -> None:
        """A state file naming a stack whose API still answers belongs to that stack: writing
        over it would hand its keys out for this one. A stale one is replaced."""
        from infra.local import yours

        path = self._state_path()
        if not self.write_state or not path.exists():
            return
        try:
            url = json.loads(path.read_text())["api_url"]
            urlopen(f"{url}/v1/health", timeout=2).read()
        except Exception:  # noqa: BLE001 - stale, unreadable or down: it can be replaced
            return
        raise yours.Refused([f"another local stack is running (its API answers at {url}, "
                             f"state in {path}): stop it, or give this one --state FILE and "
                             "other ports"])

    def _tenants(self) -> dict[str, Any]:
        from oblio.control import tenants

        tenants.create_tenant("demo", "Demo CRM", settings={"default_phone_region": "IT"})
        tenants.create_tenant("demo-child", "Demo CRM (Italy branch)", parent_id="demo",
                              settings={"default_phone_region": "IT"})
        # the demo's self-service page: POST /v1/public/requests {"tenant": "demo", ...}
        tenants.update_settings("demo", {"public_slug": "demo"})
        key = self.demo_api_key or os.environ.get("OBLIO_DEMO_API_KEY") or None
        _, demo_key = tenants.create_api_key("demo", DEMO_ADMIN_SCOPES, name="demo admin",
                                             children=True, api_key=key)
        _, child_key = tenants.create_api_key("demo-child", DEMO_ADMIN_SCOPES,
                                              name="demo-child admin")
        out = {"demo": {"api_key": demo_key}, "demo-child": {"api_key": child_key}}
        for name in self.tenants:
            tenants.create_tenant(name, name)
            _, key = tenants.create_api_key(name, DEMO_ADMIN_SCOPES, name=f"{name} admin")
            out[name] = {"api_key": key}
        return out

    def _serve_api(self) -> None:
        import sys

        from chalice.config import Config
        from chalice.local import (
            ChaliceRequestHandler,
            CustomLocalChalice,
            LocalChalice,
            LocalDevServer,
        )

        for p in (str(ROOT / "functions" / "api"), str(ROOT / "functions")):
            if p not in sys.path:
                sys.path.insert(0, p)
        from chalice.local import ForbiddenError

        from app import app  # functions/api/app.py
        from chalicelib import gateway
        from oblio.core.bodies import PATH_IDS

        class AccessLog(ChaliceRequestHandler):
            """Access lines go to the `oblio.access` logger with the query string cut and
            every path id that is not of its form redacted: `GET /v1/subjects?email=...` or
            `GET /v1/requests/a@b.com` must not write an identity to a log. A path no route
            serves is answered 404 in the one error shape, as the CDK stack's gateway
            responses answer it (chalice's local gateway answers 403 quoting the
            Authorization header)."""

            def log_message(self, format: str, *args: Any) -> None:
                import logging

                line = format % args
                logging.getLogger("oblio.access").info(redact_request_line(line))

            def _send_error_response(self, error: Any) -> None:
                if isinstance(error, ForbiddenError):  # chalice local: no route matched
                    self._send_http_response(404, {"Content-Type": "application/json"},
                                             gateway.body(*gateway.NOT_FOUND).encode())
                    return
                super()._send_error_response(error)

        routes = [r.split("/")[1:] for r in app.routes]

        def redact_request_line(line: str) -> str:
            """`"GET /v1/requests/<id>?... HTTP/1.1" 200 -` with the query cut, the ids of
            the route's path parameters kept only where they are of their form."""
            import re

            def path(match: re.Match[str]) -> str:
                parts = match.group(1).split("?", 1)[0].split("/")[1:]
                for route in routes:
                    if len(route) == len(parts) and all(
                            r == p or r.startswith("{") for r, p in zip(route, parts,
                                                                      strict=True)):
                        shown = [p if not r.startswith("{") or _id_ok(r.strip("{}"), p)
                                 else "[redacted]" for r, p in zip(route, parts, strict=True)]
                        query = "?[query]" if "?" in match.group(1) else ""
                        return " /" + "/".join(shown) + query + " "
                return " [a path no route serves] "

            return re.sub(r" (/\S*) ", path, line, count=1)

        def _id_ok(name: str, value: str) -> bool:
            known = PATH_IDS.get(name)
            return known is not None and bool(known[0].match(value))


        config = Config.create(chalice_stage="dev", app_name="oblio", chalice_app=app,
                               config_from_disk=json.loads((ROOT / "chalice.json")
                                                           .read_text()))
        # what chalice.local.create_local_server does, with the redacting access log
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
        self._api = LocalDevServer(app, config, "127.0.0.1", self.api_port,
                                   handler_cls=AccessLog)
        self._api_thread = threading.Thread(target=self._api.server.serve_forever,
                                            name="oblio-api", daemon=True)
        self._api_thread.start()

    def wait(self) -> None:
        """Block until interrupted (the CLI's foreground): Ctrl-C, or SIGTERM, stop it
        cleanly."""
        import signal

        def interrupt(*_: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        from infra.local import faults as local_faults
        from infra.local import lambdas

        local_faults.uninstall()  # the counts written once more, the hook idle
        if self.write_state and self.info:
            # the state names this stack's URLs and keys: gone with it, if it is still ours
            path = self._state_path()
            try:
                if json.loads(path.read_text()).get("api_url") == self.info.get("api_url"):
                    path.unlink()
            except (OSError, ValueError):
                pass
        if self._pump is not None:
            self._pump.stop()
            self._pump = None
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._streams is not None:
            self._streams.stop()
            self._streams = None
        if self._api is not None:
            self._api.server.shutdown()
            self._api.server.server_close()
            self._api = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        lambdas.uninstall()
        from infra.local import moto_speed

        moto_speed.uninstall()
