"""The common Lambda layer: the `oblio` package and its third-party runtime dependencies, laid
out as `python/...` (what Lambda puts on sys.path from /opt/python).

No Docker here: the dependencies are installed with `pip install --target` for the Lambda
platform (manylinux aarch64, the functions' arm64: `oblio.core.prices.LAMBDA_ARCHITECTURE`;
CPython 3.11, binary wheels only), pinned to the versions of this
virtualenv (the versions the test suite ran on). The install is cached under
build/cdk/layer/ by a hash of what goes in, so only the first synth (or a dependency
change) needs PyPI. boto3/botocore/s3transfer are left to the Lambda runtime.
"""

from __future__ import annotations

import hashlib
import importlib.util
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

from infra.cdk.config import ROOT
from oblio.core.prices import LAMBDA_ARCHITECTURE

BUILD = ROOT / "build" / "cdk"
SOURCE = ROOT / "layers" / "common" / "oblio"
#: the wheels' platform for the functions' architecture
PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
PLATFORM = PLATFORMS[LAMBDA_ARCHITECTURE]
PYTHON = "3.11"
#: in the Lambda Python runtime already; shipping them would only add ~100 MB to the layer
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
#: the data map shipped in the layer lands at /opt/<this>
DATAMAP_IN_LAYER = "oblio-datamap.yaml"


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def requirements() -> list[str]:
    """pyproject's runtime dependencies, each pinned to the version installed here."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = []
    for req in project["dependencies"]:
        name = _name(req)
        if name in RUNTIME_PROVIDED:
            continue
        extras = re.search(r"\[[^\]]*\]", req)
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            out.append(req)  # not installed here: pip resolves it from the range
            continue
        out.append(f"{name}{extras.group(0) if extras else ''}=={version}")
    return sorted(out)


def _constraints() -> str:
    """Every distribution of this virtualenv pinned: the dependencies' own dependencies come
    in the versions the suite ran with."""
    pins = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name not in RUNTIME_PROVIDED and name != "oblio":
            pins.add(f"{name}=={dist.version}")
    return "\n".join(sorted(pins)) + "\n"


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _install(target: Path, reqs: list[str], constraints: str) -> None:
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "python").mkdir(parents=True)
    (tmp / "constraints.txt").write_text(constraints)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--target", str(tmp / "python"), "--platform", PLATFORM, "--implementation", "cp",
           "--python-version", PYTHON, "--only-binary=:all:",
           "-c", str(tmp / "constraints.txt"), *reqs]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError("could not install the layer's dependencies with pip (PyPI is "
                           "needed once; `-c layer_deps=none` synthesizes without them):\n"
                           + done.stderr[-2000:])
    for name in RUNTIME_PROVIDED:
        for p in (tmp / "python").glob(f"{name}*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    shutil.rmtree(tmp / "python" / "bin", ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _zip_dir(zf: zipfile.ZipFile, root: Path, arcroot: str) -> None:
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if f.is_file() and rel.parts[0] != "oblio":  # the package goes in fresh each build
            zf.write(f, f"{arcroot}/{rel.as_posix()}")


def build(deps: str = "pip", datamap: Path | None = None) -> tuple[Path, str]:
    """The layer as a zip (python/... inside); returns (zip path, content hash). A zip, not a
    directory: the CDK copies an asset into every cloud assembly, and one file copies in a
    blink where thousands of small ones take seconds."""
    reqs = requirements() if deps == "pip" else []
    constraints = _constraints() if reqs else ""
    key = hashlib.sha256("\n".join([PLATFORM, PYTHON, *reqs, constraints]).encode()).hexdigest()
    home = BUILD / "layer" / key[:16]
    if reqs and not (home / "deps.zip").is_file():
        if not (home / "python").is_dir():
            _install(home, reqs, constraints)
        with zipfile.ZipFile(home / "deps.zip.partial", "w", zipfile.ZIP_DEFLATED) as zf:
            _zip_dir(zf, home / "python", "python")
        (home / "deps.zip.partial").rename(home / "deps.zip")
    home.mkdir(parents=True, exist_ok=True)
    parts = [key, _tree_digest(SOURCE)]
    if datamap is not None:
        parts.append(hashlib.sha256(datamap.read_bytes()).hexdigest())
    digest = hashlib.sha256("".join(parts).encode()).hexdigest()
    out = home / f"layer-{digest[:16]}.zip"
    if not out.is_file():
        for old in home.glob("layer-*.zip"):
            old.unlink()
        partial = out.with_suffix(".partial")
        if reqs:
            shutil.copyfile(home / "deps.zip", partial)
        with zipfile.ZipFile(partial, "a" if reqs else "w", zipfile.ZIP_DEFLATED) as zf:
            _add_package(zf)
            if datamap is not None:
                zf.write(datamap, DATAMAP_IN_LAYER)
        partial.rename(out)
    return out, digest


def _add_package(zf: zipfile.ZipFile) -> None:
    """The oblio package, with byte code compiled for the runtime when this interpreter is
    the runtime's version (cold starts skip compiling; Lambda's file system is read-only)."""
    compile_here = f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON
    for f in sorted(SOURCE.rglob("*")):
        if not f.is_file() or "__pycache__" in f.parts or f.suffix == ".pyc":
            continue
        rel = f.relative_to(SOURCE.parent).as_posix()
        zf.write(f, f"python/{rel}")
        if compile_here and f.suffix == ".py":
            with tempfile.TemporaryDirectory() as tmp:
                pyc = py_compile.compile(
                    str(f), cfile=str(Path(tmp) / "x.pyc"), dfile=f"/opt/python/{rel}",
                    doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
                name = Path(importlib.util.cache_from_source(f"/opt/python/{rel}")).name
                zf.write(pyc, f"python/{Path(rel).parent.as_posix()}/__pycache__/{name}")
