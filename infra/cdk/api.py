"""The HTTP API: the Chalice app of functions/api packaged by `chalice.cdk.Chalice` into
SAM resources (AWS::Serverless::Api + AWS::Serverless::Function), with the configuration of
chalice.json.

Chalice reads its configuration only from `<project>/.chalice/config.json` and packages the
project directory it is given, so the app is staged into build/cdk/chalice/ (app.py,
chalicelib/ and a generated .chalice/config.json); nothing is written under functions/.
Packaging imports the app, updates os.environ with the stage's environment variables, puts
the project on sys.path and writes `chalice.out/` into the working directory: all of that is
contained here and undone afterwards. Values known only at deploy time (the role, the layer,
the account) are set on the packaged resources, never passed through os.environ.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chalice.cdk import Chalice
from constructs import Construct

from infra.catalogue import Function
from infra.cdk.config import ROOT
from oblio.core.prices import LAMBDA_ARCHITECTURE

BUILD = ROOT / "build" / "cdk" / "chalice"
PROJECT = ROOT / "functions" / "api"


@contextlib.contextmanager
def _contained(cwd: Path) -> Iterator[None]:
    environ, path, old_cwd = dict(os.environ), list(sys.path), os.getcwd()
    modules = set(sys.modules)
    # the app's own modules already imported (a test's) are set aside while the staged copy
    # is imported, so that it imports its own: chalice's Blueprint consumes its routes'
    # options when registered, and the real console registered on the staged app would
    # register its routes as GET on the real app afterwards
    own = {name: sys.modules.pop(name) for name in list(sys.modules)
           if name in ("app", "chalicelib") or name.startswith("chalicelib.")}
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # chalice wants one; unused
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(environ)
        sys.path[:] = path
        # the staged copy's modules (chalicelib...) must not shadow the real ones afterwards
        for name in set(sys.modules) - modules:
            if name in own or str(getattr(sys.modules[name], "__file__", "") or "").startswith(
                    str(cwd)):
                del sys.modules[name]
        sys.modules.update(own)


def stage_project(stage: str, chalice_stage: str) -> tuple[Path, dict[str, Any]]:
    """Copy the app into the build directory with a generated .chalice/config.json holding
    chalice.json's settings for `stage` (the name chalice.cdk gives it); returns the project
    directory and chalice.json's environment variables for the stage."""
    config = json.loads((ROOT / "chalice.json").read_text())
    stages = config.get("stages") or {}
    if chalice_stage not in stages:
        raise ValueError(f"chalice.json has no stage {chalice_stage!r} "
                         f"(it has {', '.join(stages) or 'none'})")
    settings = {**{k: v for k, v in config.items() if k != "stages"}, **stages[chalice_stage]}
    environment = dict(settings.pop("environment_variables", None) or {})
    project = BUILD / "api"
    shutil.rmtree(BUILD, ignore_errors=True)
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", ".chalice", "requirements*.txt"))
    (project / ".chalice").mkdir()
    (project / ".chalice" / "config.json").write_text(json.dumps({
        "version": config.get("version", "2.0"), "app_name": config.get("app_name", "oblio"),
        "stages": {stage: settings}}, indent=2))
    return project, environment


def chalice_api(scope: Construct, fn: Function, *, role_arn: str, layer_arn: str,
                function_name: str, environment: dict[str, str],
                chalice_stage: str) -> tuple[Chalice, dict[str, Any]]:
    """Package the app under `scope`; returns the construct and the API's stage settings."""
    stage = scope.to_string()  # what chalice.cdk names the stage
    project, chalice_env = stage_project(stage, chalice_stage)
    overrides: dict[str, Any] = {
        "lambda_timeout": fn.timeout_seconds, "lambda_memory_size": fn.memory_mb,
        "manage_iam_role": False, "iam_role_arn": role_arn, "layers": [layer_arn],
        "xray": True, "api_gateway_endpoint_type": "REGIONAL", "automatic_layer": False,
    }
    with _contained(BUILD):
        api = Chalice(scope, "Api", source_dir=str(project), stage_config=overrides)
    handler = api.get_resource("APIHandler")
    handler.add_property_override("FunctionName", function_name)
    # on the processor the layer is built and Lambda is priced for (Chalice has no setting)
    handler.add_property_override("Architectures", [LAMBDA_ARCHITECTURE])
    for key, value in {**chalice_env, **environment}.items():
        handler.add_property_override(f"Environment.Variables.{key}", value)
    return api, json.loads((project / ".chalice" / "config.json").read_text())["stages"][stage]


def gateway_responses(scope: Construct, rest_api_id: str) -> list[Any]:
    """API Gateway's own answers (a path or method no route serves, a media type, a size or
    rate limit, a timeout) in the one error shape, from functions/api/chalicelib/gateway.py,
    which the local server answers too. None quotes the request: API Gateway's default for
    an unknown path with an API key in the Authorization header repeats that header."""
    from aws_cdk import aws_apigateway as apigw

    spec = importlib.util.spec_from_file_location("oblio_gateway",
                                                  PROJECT / "chalicelib" / "gateway.py")
    assert spec is not None and spec.loader is not None
    gateway = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gateway)
    made = []
    for kind, (status, code, message) in gateway.GATEWAY_RESPONSES.items():
        headers = {"gatewayresponse.header.Content-Type": "'application/json'"}
        if status == 429:
            headers["gatewayresponse.header.Retry-After"] = "'1'"
        made.append(apigw.CfnGatewayResponse(
            scope, f"GatewayResponse{''.join(w.title() for w in kind.split('_'))}",
            rest_api_id=rest_api_id, response_type=kind,
            status_code=None if kind in gateway.KEEP_STATUS else str(status),
            response_parameters=headers,
            response_templates={"application/json": gateway.body(code, message)}))
    return made
