"""kuberay/: every manifest is well formed, RayService/RayCluster match the KubeRay CRD schemas.

No Kubernetes here: RayService and RayCluster objects are validated against the
openAPIV3Schema of the CRDs in ../shared/kuberay-crds (every field set must exist with the
right type, required fields present), the kustomize overlays are applied by a small JSON-patch
step, and built-in kinds are checked for what the cluster would refuse or silently ignore.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "kuberay"
CRDS = ROOT.parent / "shared" / "kuberay-crds"
OVERLAYS = ("development", "production", "high-load")
SIZES = {  # overlay -> worker (cpu, memory) of the sizing table
    "development": ("500m", "512Mi"),
    "production": ("2", "2Gi"),
    "high-load": ("4", "4Gi"),
}
QUANTITY = re.compile(r"^(\d+(\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


# ---------------------------------------------------------------- a small openAPIV3Schema validator


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Errors of ``value`` against a structural openAPIV3Schema (what the API server would refuse)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return []
    if value is None:
        return [] if schema.get("nullable") else [f"{path or '/'}: null is not allowed"]
    errors: list[str] = []
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return [f"{path}: expected int or string, got {type(value).__name__}"]
        if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
            return [f"{path}: {value!r} does not match {schema['pattern']}"]
        return []
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected object, got {type(value).__name__}"]
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}/{key}"
            if properties is not None and key in properties:
                errors += validate(item, properties[key], where)
            elif isinstance(extra, dict):
                errors += validate(item, extra, where)
            elif properties is not None and not schema.get("x-kubernetes-preserve-unknown-fields"):
                errors.append(f"{where}: unknown field")
        errors += [f"{path}/{key}: required" for key in schema.get("required", []) if key not in value]
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected array, got {type(value).__name__}"]
        for i, item in enumerate(value):
            errors += validate(item, schema.get("items", {}), f"{path}/{i}")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{path}: expected string, got {type(value).__name__}"]
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected integer, got {type(value).__name__}"]
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{path}: expected number, got {type(value).__name__}"]
    elif kind == "boolean":
        if not isinstance(value, bool):
            return [f"{path}: expected boolean, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not one of {schema['enum']}")
    return errors


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    if not CRDS.is_dir():
        pytest.skip(f"{CRDS} is absent: the KubeRay CRDs are needed to validate RayService manifests")
    return _load_crd_schemas()


@functools.cache
def _load_crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema; 2 MB of YAML, so parsed once and with libyaml when present."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas = {}
    for path in CRDS.glob("ray.io_*.yaml"):
        crd = yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                api_version = f"{crd['spec']['group']}/{version['name']}"
                schemas[(api_version, crd["spec"]["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def _validate_custom(doc: dict[str, Any]) -> list[str]:
    schema = _crd_schemas().get((doc["apiVersion"], doc["kind"]))
    assert schema is not None, f"no CRD serves {doc['apiVersion']} {doc['kind']}"
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    return validate(body, {**schema, "properties": {k: v for k, v in schema["properties"].items()
                                                     if k not in ("apiVersion", "kind", "metadata")}})


# ---------------------------------------------------------------- kustomize, the part we use


def _kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def _pointer_parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]


def _apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """JSON patch (RFC 6902) replace/add/remove: what the overlays use."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _pointer_parts(op["path"])
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        if op["op"] == "replace":
            assert (key < len(node)) if isinstance(node, list) else (key in node), f"{op['path']} does not exist"
            node[key] = op["value"]
        elif op["op"] == "add":
            if isinstance(node, list):
                node.insert(len(node) if key == "-" else key, op["value"])
            else:
                node[key] = op["value"]
        elif op["op"] == "remove":
            del node[key]
        else:
            raise AssertionError(f"unsupported op {op['op']}")
    return doc


def build(folder: Path) -> list[dict[str, Any]]:
    """The documents ``kubectl kustomize folder`` would give (resources, namespace, patches, images)."""
    config = _kustomization(folder)
    docs: list[dict[str, Any]] = []
    for resource in config.get("resources", []):
        path = (folder / resource).resolve()
        assert path.exists(), f"{folder}/kustomization.yaml: {resource} does not exist"
        if path.is_dir():
            docs += build(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for patch in config.get("patches", []):
        target = patch["target"]
        ops = yaml.safe_load(patch["patch"])
        matched = [
            i for i, d in enumerate(docs)
            if d["kind"] == target["kind"] and d["metadata"]["name"] == target.get("name", d["metadata"]["name"])
        ]
        assert matched, f"{folder}: patch target {target} matches nothing"
        for i in matched:
            docs[i] = _apply_patch(docs[i], ops)
    for doc in docs:
        if config.get("namespace") and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = config["namespace"]
        for image in config.get("images", []):
            for container in _containers(doc):
                if container["image"] == image["name"]:
                    container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def _pod_templates(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "RayService":
        cluster = doc["spec"]["rayClusterConfig"]
    elif doc["kind"] == "RayCluster":
        cluster = doc["spec"]
    else:
        return [doc["spec"]["template"]] if "template" in doc.get("spec", {}) else []
    return [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster.get("workerGroupSpecs", [])]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for t in _pod_templates(doc) for c in t["spec"].get("containers", [])]


def _docs(kind: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return build(KUBERAY)


# ---------------------------------------------------------------- tests


def test_every_manifest_file_has_api_version_kind_and_name() -> None:
    files = [p for p in KUBERAY.rglob("*.yaml") if p.name != "kustomization.yaml"]
    assert files
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            assert doc.get("apiVersion") and doc.get("kind"), path
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_custom_resources_match_the_crd_schema(overlay: str) -> None:
    docs = build(KUBERAY / "overlays" / overlay)
    ray_docs = [d for d in docs if d["apiVersion"].startswith("ray.io/")]
    assert [d["kind"] for d in ray_docs] == ["RayService"]
    for doc in ray_docs:
        assert _validate_custom(doc) == [], f"{overlay}: {doc['kind']} {doc['metadata']['name']}"


def test_the_validator_catches_unknown_fields_wrong_types_and_missing_required(base: list) -> None:
    (service,) = _docs("RayService", base)
    broken = copy.deepcopy(service)
    cluster = broken["spec"]["rayClusterConfig"]
    cluster["enableInTreeAutoscalling"] = True
    cluster["workerGroupSpecs"][0]["maxReplicas"] = "ten"
    del cluster["workerGroupSpecs"][0]["groupName"]
    cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "6379"
    errors = _validate_custom(broken)
    assert "/spec/rayClusterConfig/enableInTreeAutoscalling: unknown field" in errors
    assert "/spec/rayClusterConfig/workerGroupSpecs/0/maxReplicas: expected integer, got str" in errors
    assert "/spec/rayClusterConfig/workerGroupSpecs/0/groupName: required" in errors
    assert any(e.endswith("containers/0/ports/0/containerPort: expected integer, got str") for e in errors)


def test_serve_config_v2_is_configs_serve_yaml(base: list) -> None:
    (service,) = _docs("RayService", base)
    serve_config = yaml.safe_load((ROOT / "configs" / "serve.yaml").read_text())
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == serve_config


def test_autoscaling_and_metrics_port_on_every_ray_pod(base: list) -> None:
    (service,) = _docs("RayService", base)
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["rayVersion"] == "2.60.0"
    groups = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for group in groups:
        assert group["rayStartParams"]["metrics-export-port"] == "8080"
    for container in _containers(service):
        assert {"name": "metrics", "containerPort": 8080} in container["ports"]
    for worker in cluster["workerGroupSpecs"]:
        assert 0 < worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_size_the_worker_pods(overlay: str) -> None:
    (service,) = _docs("RayService", build(KUBERAY / "overlays" / overlay))
    cluster = service["spec"]["rayClusterConfig"]
    cpu, memory = SIZES[overlay]
    for worker in cluster["workerGroupSpecs"]:
        resources = worker["template"]["spec"]["containers"][0]["resources"]
        assert resources["limits"] == {"cpu": cpu, "memory": memory}
        assert resources["requests"] == resources["limits"]  # Ray sizes itself from the limits
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]
    assert head["limits"]["cpu"] == cpu


def test_secrets_are_referenced_never_inlined(base: list) -> None:
    assert _docs("Secret", base) == [], "no Secret with values ships in the kustomization"
    example = yaml.safe_load((KUBERAY / "secrets.example.yaml").read_text())
    for container in (c for d in base for c in _containers(d)):
        env = {e["name"]: e for e in container.get("env", [])}
        for name in ("OPENAI_API_KEY", "RCA_DATABASE_URL"):
            assert "value" not in env[name], f"{container['name']}: {name} inlined"
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == example["metadata"]["name"] and ref["key"] in example["stringData"]
        assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"].get("optional") is True  # offline reasoner
        for source in container.get("envFrom", []):
            config_map = source["configMapRef"]["name"]
            assert any(d["metadata"]["name"] == config_map for d in _docs("ConfigMap", base))
    for config_map in _docs("ConfigMap", base):
        assert not {k for k in config_map["data"] if re.search("KEY|TOKEN|PASSWORD|DATABASE_URL", k)}


def test_containers_are_complete_and_quantities_parse(base: list) -> None:
    for doc in base:
        for container in _containers(doc):
            assert container["name"] and container["image"].startswith("rca-analyzer:"), container["name"]
            ports = [p["containerPort"] for p in container.get("ports", [])]
            assert len(ports) == len(set(ports)) and all(isinstance(p, int) and 0 < p < 65536 for p in ports)
            for bound in container["resources"].values():
                for quantity in bound.values():
                    assert QUANTITY.match(str(quantity)), quantity
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_service_account_and_rbac_fit_together(base: list) -> None:
    accounts = {d["metadata"]["name"] for d in _docs("ServiceAccount", base)}
    roles = {d["metadata"]["name"]: d for d in _docs("Role", base)}
    (service,) = _docs("RayService", base)
    for template in _pod_templates(service):
        assert template["spec"]["serviceAccountName"] in accounts
    for binding in _docs("RoleBinding", base):
        assert binding["roleRef"]["kind"] == "Role" and binding["roleRef"]["name"] in roles
        assert {s["name"] for s in binding["subjects"]} <= accounts
    rules = [r for role in roles.values() for r in role["rules"]]
    assert any("rayclusters" in r["resources"] and "patch" in r["verbs"] for r in rules), "autoscaler scales workers"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_pod_monitor_and_network_policy_select_the_ray_pods_and_their_ports(base: list) -> None:
    (service,) = _docs("RayService", base)
    templates = _pod_templates(service)
    (monitor,) = _docs("PodMonitor", base)
    (policy,) = _docs("NetworkPolicy", base)
    for template in templates:
        labels = template["metadata"]["labels"]
        assert _selects(monitor["spec"]["selector"], labels)
        assert _selects(policy["spec"]["podSelector"], labels)
        port_names = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] in port_names
    allowed_in = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    assert {8000, 8080} <= allowed_in
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
    assert {53, 5432, 9092} <= egress_ports


def test_every_object_gets_the_namespace_and_kustomize_files_exist(base: list) -> None:
    for doc in base:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "rca", doc["metadata"]["name"]
    assert {d["kind"] for d in base} >= {"RayService", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy",
                                         "PodMonitor", "ConfigMap", "Namespace"}


def _quantity(text: str) -> float:
    """A Kubernetes quantity as a number: CPUs for ``500m``/``2``, bytes for ``512Mi``/``4Gi``."""
    match = QUANTITY.match(text)
    assert match, f"not a quantity: {text}"
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[match.group(3)]
    return float(match.group(1)) * scale


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_digester_settings_parse_and_fit_the_worker_pods(overlay: str) -> None:
    """Each worker hosts RCA_DIGESTERS_PER_NODE digesters: their CPU and memory must fit in it, with
    room for Serve's replicas (a digester at its bound was measured at ~4x the bound resident)."""
    from pipelines.settings import Settings

    docs = build(KUBERAY / "overlays" / overlay)
    (config,) = [d for d in _docs("ConfigMap", docs) if d["metadata"]["name"] == "rca-config"]
    settings = Settings(**{k: v for k, v in config["data"].items() if k.startswith("RCA_DIGEST")})
    (service,) = _docs("RayService", docs)
    for worker in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        limits = worker["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert settings.digesters_per_node * settings.digester_num_cpus <= _quantity(limits["cpu"]) / 2
        assert settings.digesters_per_node * 4 * settings.digest_max_bytes <= _quantity(limits["memory"]) / 2
