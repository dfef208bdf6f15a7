"""The embedded local stack: moto in server mode on 127.0.0.1 executing the state machines for
real, Lambda invocations dispatched in-process to the project's handlers, every resource made
from the catalogue, the demo tenants with keys and data, and the Chalice API.

`LocalStack.start()` is what `oblio local up` and the integration tests both call. Settings
are read from the environment, so the environment is set before any oblio module reads it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

ROOT = Path(__file__).resolve().parents[2]
DEMO_ADMIN_SCOPES = ("admin",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure_environment(aws_port: int, datamap: Path | None = None,
                          region: str = "eu-west-1") -> None:
    """Point every AWS client of this process at the local AWS. Call before importing oblio."""
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
                        lam.invoke(FunctionName=self.settings.function(fn),
                                   Payload=msg["Body"].encode())
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


@dataclass
class LocalStack:
    api_port: int = 8000
    aws_port: int = 5000
    datamap: Path | None = None
    demo: bool = True
    demo_contacts: int = 1000
    demo_api_key: str | None = None
    write_state: bool = True
    quiet: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    _moto: Any = None
    _api: Any = None
    _api_thread: threading.Thread | None = None
    _pump: Any = None
    _timer: Any = None

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)

    def start(self) -> dict[str, Any]:
        configure_environment(self.aws_port, self.datamap)
        import logging

        from moto.server import ThreadedMotoServer

        from infra.local import lambdas, moto_speed, provision
        from oblio.core import datamap as dmap
        from oblio.core.settings import get_settings

        # moto's server logs every request line: keep the console for what matters
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        settings = get_settings()
        # refuse a bad data map before anything starts
        dm = dmap.load(settings.datamap)
        for port in (self.aws_port, self.api_port):
            # moto's server binds in a thread, where a taken port would go unnoticed and the
            # clients would talk to whatever listens there: refuse here instead
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    raise RuntimeError(f"port {port} on 127.0.0.1 is in use: choose another "
                                       "with --aws-port / --api-port") from None
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.aws_port,
                                        verbose=False)
        self._moto.start()
        endpoint = f"http://127.0.0.1:{self.aws_port}"
        urlopen(Request(f"{endpoint}/moto-api/config", method="POST",
                        data=json.dumps({"stepfunctions": {"execute_state_machine": True}})
                        .encode(), headers={"Content-Type": "application/json"}), timeout=10)
        lambdas.install(lambdas.Dispatcher(settings.resource_prefix))
        moto_speed.install()
        t0 = time.monotonic()
        provision.provision(settings)
        self._say(f"provisioned the catalogue in {time.monotonic() - t0:.1f}s")
        from oblio.store import aws

        try:
            dmap.check_tables(dm, aws.client("dynamodb"))
        except Exception:
            self.stop()
            raise
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
        if settings.local_schedule_seconds > 0:
            self._timer = ScheduleTimer(settings, settings.local_schedule_seconds)
            self._timer.start()
        self._serve_api()
        self.info = {
            "api_url": f"http://127.0.0.1:{self.api_port}",
            "console_url": f"http://127.0.0.1:{self.api_port}/console/",
            "aws_endpoint_url": endpoint, "region": settings.region,
            "tenants": tenants,
        }
        if self.write_state:
            state = ROOT / ".oblio" / "local.json"
            state.parent.mkdir(exist_ok=True)
            state.write_text(json.dumps(self.info, indent=2))
        return self.info

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
        return {"demo": {"api_key": demo_key}, "demo-child": {"api_key": child_key}}

    def _serve_api(self) -> None:
        import sys

        from chalice.config import Config
        from chalice.local import (
            ChaliceRequestHandler,
            CustomLocalChalice,
            LocalChalice,
            LocalDevServer,
        )

        class AccessLog(ChaliceRequestHandler):
            """Access lines go to the `oblio.access` logger with the query string cut:
            `GET /v1/subjects?email=...` must not write an identity to a log."""

            def log_message(self, format: str, *args: Any) -> None:
                import logging
                import re

                line = format % args
                logging.getLogger("oblio.access").info(re.sub(r"\?\S*", "?[query]", line))

        for p in (str(ROOT / "functions" / "api"), str(ROOT / "functions")):
            if p not in sys.path:
                sys.path.insert(0, p)
        from app import app  # functions/api/app.py

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
        """Block until interrupted (the CLI's foreground)."""
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        from infra.local import lambdas

        if self._pump is not None:
            self._pump.stop()
            self._pump = None
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if self._api is not None:
            self._api.server.shutdown()
            self._api.server.server_close()
            self._api = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        lambdas.uninstall()
        from infra.local import moto_speed

        moto_speed.uninstall()
