"""deploy/: every kustomize overlay and the KServe InferenceService render, validate against the
Kubernetes and CRD schemas, and agree with the server (ports, probe paths, exported metrics,
settings, shutdown timing). Offline: no cluster runs here (README "Kubernetes")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import ServiceMetrics
from service.settings import Settings
from tests.deploy.manifests import Obj, env_of, promql_metric_names, render, validate

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("cpu", "gpu", "gpu-keda")
NAMESPACE = "ssd"
NAMESPACED_KINDS = {
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "PersistentVolumeClaim",
    "HorizontalPodAutoscaler",
    "ScaledObject",
    "InferenceService",
}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[Obj]]:
    return request.param, render(KUBERNETES / "overlays" / request.param)


@pytest.fixture(scope="module")
def inference_service() -> Obj:
    [isvc] = render(ROOT / "deploy" / "kserve")
    return isvc


def one(objects: list[Obj], kind: str) -> Obj:
    [obj] = [o for o in objects if o["kind"] == kind]
    return obj


def exported_metrics() -> set[str]:
    """Metric family names on the service's /metrics."""
    text = ServiceMetrics().exposition().decode()
    return {family.name for family in text_string_to_metric_families(text)}


def setting(container: Obj, field: str) -> str:
    """The value a container's environment gives a `Settings` field, else its default."""
    env = env_of(container)
    return env.get(f"SSD_{field.upper()}", str(Settings.model_fields[field].default))


def container_port(container: Obj, port: int | str) -> int:
    """A probe's or Service's target port (a name or a number) as a container port number."""
    by_name = {p["name"]: p["containerPort"] for p in container["ports"]}
    numbers = set(by_name.values())
    number = by_name.get(port) if isinstance(port, str) else port
    assert number in numbers, f"port {port!r} is not a port of container {container['name']}"
    return number


# --- schemas --------------------------------------------------------------------------------


def test_every_overlay_object_is_valid(overlay):
    _, objects = overlay
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "PodDisruptionBudget"}
    for obj in objects:
        validate(obj)


def test_inference_service_is_valid_against_the_kserve_crd(inference_service):
    validate(inference_service)


def test_crd_validation_refuses_an_unknown_field(inference_service):
    broken = yaml.safe_load(yaml.safe_dump(inference_service))
    broken["spec"]["predictor"]["minReplica"] = 1  # typo of minReplicas
    with pytest.raises(Exception, match="minReplica"):
        validate(broken)


def test_builtin_validation_refuses_a_wrong_type(overlay):
    _, objects = overlay
    broken = yaml.safe_load(yaml.safe_dump(one(objects, "Deployment")))
    broken["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "60s"
    with pytest.raises(Exception, match="60s"):
        validate(broken)


# --- cross-references within an overlay -----------------------------------------------------


def test_namespaced_objects_share_the_namespace(overlay):
    _, objects = overlay
    namespaced = [o for o in objects if o["kind"] in NAMESPACED_KINDS]
    assert {o["metadata"].get("namespace") for o in namespaced} == {NAMESPACE}


def test_selectors_match_the_pod_labels_and_ports_exist(overlay):
    _, objects = overlay
    deployment = one(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    selectors = [o["spec"]["selector"] for o in objects if o["kind"] == "Service"]
    selectors.append(one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    for selector in selectors:
        assert selector and selector.items() <= labels.items(), selector
    services = [o for o in objects if o["kind"] == "Service"]
    ports = {p["name"]: p for s in services for p in s["spec"]["ports"]}
    assert container_port(container, ports["http"]["targetPort"]) == int(
        setting(container, "http_port")
    )
    assert container_port(container, ports["grpc"]["targetPort"]) == int(
        setting(container, "grpc_port")
    )
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"


def test_model_repository_is_the_mounted_claim(overlay):
    _, objects = overlay
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert all(m["name"] in volumes for m in mounts.values())
    repository = mounts[env_of(container)["SSD_MODEL_REPOSITORY"]]
    claim = volumes[repository["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim == one(objects, "PersistentVolumeClaim")["metadata"]["name"]
    assert repository["readOnly"] is True


def test_pod_runs_non_root_on_a_read_only_root_with_a_writable_tmp(overlay):
    _, objects = overlay
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert env_of(container)["KERAS_HOME"].startswith("/tmp/")


def test_gpu_overlays_request_one_gpu_and_tolerate_gpu_nodes(overlay):
    name, objects = overlay
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    tolerated = {t["key"] for t in pod.get("tolerations", [])}
    if name.startswith("gpu"):
        assert gpus == 1
        assert "nvidia.com/gpu" in tolerated
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    else:
        assert gpus is None and not tolerated
    assert container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]


def test_rollout_surges_before_removing_a_ready_pod(overlay):
    _, objects = overlay
    strategy = one(objects, "Deployment")["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


# --- cross-references with the server ------------------------------------------------------


def check_shutdown_outlasts_the_drain(container: Obj, grace_period_s: int) -> None:
    """SIGTERM comes after the preStop sleep, and the drain must end before the kubelet kills."""
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain_s = float(setting(container, "shutdown_grace_s"))
    assert grace_period_s > int(command[1]) + drain_s


def test_overlay_shutdown_outlasts_the_drain(overlay):
    _, objects = overlay
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    check_shutdown_outlasts_the_drain(pod["containers"][0], pod["terminationGracePeriodSeconds"])


def test_inference_service_shutdown_outlasts_the_drain(inference_service):
    predictor = inference_service["spec"]["predictor"]
    grace_period_s = predictor["terminationGracePeriodSeconds"]
    check_shutdown_outlasts_the_drain(predictor["containers"][0], grace_period_s)


def test_autoscaler_targets_the_deployment_on_an_exported_metric(overlay):
    name, objects = overlay
    deployment = one(objects, "Deployment")["metadata"]["name"]
    autoscalers = [o for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    [autoscaler] = autoscalers  # never both: KEDA owns an HPA of its own
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == deployment
    if autoscaler["kind"] == "HorizontalPodAutoscaler":
        [metric] = autoscaler["spec"]["metrics"]
        assert metric["type"] == "Pods"
        names = {metric["pods"]["metric"]["name"]}
        assert names <= adapter_metric_names()
    else:
        [trigger] = autoscaler["spec"]["triggers"]
        assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
        names = promql_metric_names(trigger["metadata"]["query"])
        check_query_selects_the_pods(trigger["metadata"]["query"], deployment)
    assert names == {"ssd_in_flight_requests"}
    assert names <= exported_metrics()


def adapter_metric_names() -> set[str]:
    """Custom metrics the prometheus-adapter rules serve, after checking each reads an
    exported series per namespace and pod."""
    values = yaml.safe_load(
        (KUBERNETES / "autoscaling" / "prometheus-adapter-values.yaml").read_text()
    )
    assert values["rules"]["default"] is False
    served = set()
    for rule in values["rules"]["custom"]:
        assert promql_metric_names(rule["seriesQuery"]) <= exported_metrics()
        assert rule["resources"]["overrides"] == {
            "namespace": {"resource": "namespace"},
            "pod": {"resource": "pod"},
        }
        assert "by (<<.GroupBy>>)" in rule["metricsQuery"]
        assert re.fullmatch(rule["name"]["matches"], rule["name"]["as"])
        served.add(rule["name"]["as"])
    return served


def check_query_selects_the_pods(query: str, deployment: str) -> None:
    """The query's namespace and pod matchers select the pods of `deployment` (pod names are
    `<deployment>-<replica set hash>-<suffix>`)."""
    assert f'namespace="{NAMESPACE}"' in query
    [pattern] = re.findall(r'pod=~"([^"]+)"', query)
    assert re.fullmatch(pattern, f"{deployment}-5d8f7c9b4-x7k2p")
    assert not re.fullmatch(pattern, "prometheus-adapter-6c9d8f7b5-abcde")


def test_hpa_and_keda_targets_are_twice_the_max_batch_size(overlay):
    _, objects = overlay
    [container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    batch = int(setting(container, "max_batch_size"))
    if any(o["kind"] == "ScaledObject" for o in objects):
        target = one(objects, "ScaledObject")["spec"]["triggers"][0]["metadata"]["threshold"]
    else:
        [metric] = one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
        target = metric["pods"]["target"]["averageValue"]
    assert int(target) == 2 * batch
    assert 2 * batch <= int(setting(container, "max_queue_size"))


# --- KServe ---------------------------------------------------------------------------------


def test_inference_service_is_a_v2_custom_predictor_on_the_downloaded_repository(
    inference_service,
):
    annotations = inference_service["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    assert annotations["serving.kserve.io/autoscalerClass"] == "keda"
    predictor = inference_service["spec"]["predictor"]
    [container] = predictor["containers"]
    env = env_of(container)
    assert container["name"] == "kserve-container"
    assert env["PROTOCOL"] == "v2"
    assert re.match(r"^[a-z0-9]+://", env["STORAGE_URI"])
    assert env["SSD_MODEL_REPOSITORY"] == "/mnt/models"  # where KServe's storage initializer writes
    http, grpc = container["ports"]  # the first port is the Service's port 80
    assert http["containerPort"] == int(setting(container, "http_port"))
    assert "h2c" in grpc["name"] and grpc["containerPort"] == int(setting(container, "grpc_port"))
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_inference_service_scales_on_an_exported_metric(inference_service):
    predictor = inference_service["spec"]["predictor"]
    [metric] = predictor["autoScaling"]["metrics"]
    external = metric["external"]
    assert external["metric"]["backend"] == "prometheus"
    query = external["metric"]["query"]
    assert promql_metric_names(query) == {"ssd_in_flight_requests"} <= exported_metrics()
    check_query_selects_the_pods(query, f"{inference_service['metadata']['name']}-predictor")
    batch = int(setting(predictor["containers"][0], "max_batch_size"))
    assert int(external["target"]["value"]) == 2 * batch
    assert inference_service["metadata"]["namespace"] == NAMESPACE
