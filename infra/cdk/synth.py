"""`python -m infra.cdk.synth` (`make synth`): write the CloudFormation template without AWS
credentials, into cdk.out/, and print its path.

The catalogue is checked first: a bad entry stops the synth with a message naming it. The
synthesized stack must pass cdk-nag (AwsSolutions, every acknowledged finding carrying its
reason) and, unless --no-lint, cfn-lint without errors. Exit status: 0 good, 1 findings,
2 a catalogue or context value that could not deploy.

    python -m infra.cdk.synth [--outdir cdk.out] [--no-lint] [-c name=value ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.catalogue import CATALOGUE, Catalogue
from infra.cdk.app import build


class SynthError(Exception):
    """The catalogue or a context value cannot deploy; the message names the entry."""


@dataclass(frozen=True)
class Synthesized:
    template_path: Path
    template: dict[str, Any]
    #: cdk-nag findings not acknowledged: (level, construct path, message)
    nag_findings: list[tuple[str, str, str]]
    #: every acknowledged finding: (rule, construct path, reason)
    nag_suppressed: list[tuple[str, str, str]]
    app: Any
    stack: Any
    seconds: float


def synthesize(context: dict[str, Any] | None = None, catalogue: Catalogue = CATALOGUE,
               outdir: str | Path = "cdk.out") -> Synthesized:
    """Build and synthesize the stack; raises SynthError for a catalogue that could not
    deploy (before anything is built)."""
    import json

    started = time.monotonic()
    try:
        app, stack = build(context, catalogue, str(outdir))
    except ValueError as exc:
        raise SynthError(str(exc)) from None
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    path = Path(assembly.directory) / artifact.template_file
    findings = nag_findings(Path(assembly.directory), stack.artifact_id)
    suppressed = []
    template = json.loads(path.read_text())
    for logical_id, resource in template["Resources"].items():
        meta = (resource.get("Metadata") or {}).get("cdk_nag") or {}
        for entry in meta.get("rules_to_suppress", []):
            suppressed.append((entry["id"], logical_id, entry.get("reason", "")))
    return Synthesized(path, template, findings, suppressed, app, stack,
                       time.monotonic() - started)


def nag_findings(assembly: Path, artifact_id: str) -> list[tuple[str, str, str]]:
    """cdk-nag's findings on a stack, as (level, construct path, message): the annotations in
    the cloud assembly's manifest and in the stack's additional metadata file (where the CDK
    moves large metadata, and which the artifact's `messages` do not read)."""
    import json

    manifest = json.loads((assembly / "manifest.json").read_text())
    entry = manifest["artifacts"][artifact_id]
    metadata = dict(entry.get("metadata") or {})
    if entry.get("additionalMetadataFile"):
        more = json.loads((assembly / entry["additionalMetadataFile"]).read_text())
        for where, entries in more.items():
            metadata[where] = [*metadata.get(where, []), *entries]
    levels = {"aws:cdk:error": "error", "aws:cdk:warning": "warning", "aws:cdk:info": "info"}
    return sorted((levels[e["type"]], where, str(e["data"]))
                  for where, entries in metadata.items() for e in entries
                  if e.get("type") in levels and str(e.get("data")).startswith("AwsSolutions-"))


def lint(template_path: Path) -> list[Any]:
    """cfn-lint's matches for the template (errors and warnings)."""
    from cfnlint.api import ManualArgs, lint_file

    # W3005: a function depends on its whole role construct (role and default policy), so
    # the CDK lists the role in DependsOn beside the GetAtt of its ARN: redundant, harmless
    return list(lint_file(template_path, config=ManualArgs(regions=["eu-west-1"],
                                                          ignore_checks=["W3005"])))


def _context(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"-c takes name=value, not {pair!r}")
        out[name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.cdk.synth",
                                     description="write oblio's CloudFormation template")
    parser.add_argument("--outdir", default="cdk.out")
    parser.add_argument("--no-lint", action="store_true", help="skip cfn-lint")
    parser.add_argument("-c", "--context", action="append", default=[],
                        metavar="NAME=VALUE", help="a CDK context value (repeatable)")
    args = parser.parse_args(argv)
    try:
        out = synthesize(_context(args.context), catalogue=CATALOGUE, outdir=args.outdir)
    except SynthError as exc:
        print(f"synth refused: {exc}", file=sys.stderr)
        return 2
    status = 0
    errors = [f for f in out.nag_findings if f[0] == "error"]
    for level, where, message in out.nag_findings:
        print(f"cdk-nag {level}: {where}: {message.splitlines()[0]}", file=sys.stderr)
    if errors:
        status = 1
    if not args.no_lint:
        matches = lint(out.template_path)
        for m in matches:
            print(f"cfn-lint: {m}", file=sys.stderr)
        if any(m.rule.id.startswith("E") for m in matches):
            status = 1
    print(f"template: {out.template_path}")
    print(f"({len(out.template['Resources'])} resources, {len(out.nag_suppressed)} cdk-nag "
          f"findings acknowledged with a reason, {out.seconds:.1f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
