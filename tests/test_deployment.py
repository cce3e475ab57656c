"""deploy/kubernetes and deploy/nginx agree with the service: every variable is a real setting and the
configuration is one the service accepts, ports, probes, selectors and mounted files line up, and
docs/deployment.md names what a hospital must set. Nothing here needs a cluster."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from cds_service.auth.issuers import load_trusted_issuers
from cds_service.cli import main as cli
from cds_service.knowledge.policy import load_policy
from cds_service.resources import default_rules_dir
from cds_service.server import GunicornServer
from cds_service.settings import Settings, SettingsError, documented_settings

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"
NGINX = ROOT / "deploy" / "nginx" / "naltrexone-cds.conf"
DOCS = ROOT / "docs" / "deployment.md"
IMAGE = "registry.example.org/naltrexone-cds:VERSION"
PREFIX = "NALTREXONE_CDS_"
# Without these the service is either refused at start-up or unsafe with real patients behind a proxy.
PRODUCTION_REQUIRED = (
    "NALTREXONE_CDS_DATABASE_URL",
    "NALTREXONE_CDS_AUDIT_SECRET",
    "NALTREXONE_CDS_TRUSTED_ISSUERS_FILE",
    "NALTREXONE_CDS_PUBLIC_BASE_URL",
    "NALTREXONE_CDS_FORWARDED_ALLOW_IPS",
)
FROM_THE_SECRET = ("NALTREXONE_CDS_DATABASE_URL", "NALTREXONE_CDS_AUDIT_SECRET")
A_REAL_LOOKING_SECRET = "0123456789abcdef0123456789abcdef"

Doc = dict[str, Any]


# -- reading the manifests


@cache
def manifests() -> tuple[tuple[str, Doc], ...]:
    found = []
    for path in sorted(KUBE.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document is not None:
                assert isinstance(document, dict), f"{path.name}: a document that is not a mapping"
                found.append((path.name, document))
    return tuple(found)


def the(kind: str, name: str | None = None) -> Doc:
    matches = [
        d for _, d in manifests() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def deployment() -> Doc:
    return the("Deployment")


def pod_spec() -> Doc:
    spec: Doc = deployment()["spec"]["template"]["spec"]
    return spec


def service_container() -> Doc:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    container: Doc = containers[0]
    return container


def cronjob_pod_spec() -> Doc:
    spec: Doc = the("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def every_pod_spec() -> list[tuple[str, Doc]]:
    return [("Deployment", pod_spec()), ("CronJob", cronjob_pod_spec())]


def every_container() -> list[tuple[str, Doc, Doc]]:
    """(where, container, its pod spec) for every container and init container."""
    return [
        (f"{where} {c['name']}", c, spec)
        for where, spec in every_pod_spec()
        for c in [*spec.get("initContainers", []), *spec["containers"]]
    ]


def config_data() -> dict[str, str]:
    data: dict[str, str] = the("ConfigMap", "naltrexone-cds-config")["data"]
    return data


def secret_data() -> dict[str, str]:
    secret = the("Secret")
    assert "data" not in secret, "the example Secret holds readable placeholders (stringData) only"
    data: dict[str, str] = secret["stringData"]
    return data


def environment(container: Doc, secret: dict[str, str] | None = None) -> dict[str, str]:
    """The NALTREXONE_CDS_* variables a container gets, resolved from the ConfigMap and the Secret."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(the("ConfigMap", name)["data"])
    secrets = secret_data() if secret is None else secret
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == the("Secret")["metadata"]["name"], variable
            env[variable["name"]] = secrets[reference["key"]]
    return env


def settings_of(container: Doc) -> Settings:
    secrets = {**secret_data(), "audit-secret": A_REAL_LOOKING_SECRET}
    return Settings.from_env(environment(container, secrets))


def documented() -> dict[str, str]:
    return {variable: default for variable, default, _ in documented_settings()}


def cpus(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def port_named(container: Doc, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"the container declares no port named {name!r} (it has {sorted(ports)})"
    return int(ports[name])


# -- the manifests


def test_every_manifest_is_there_and_well_formed() -> None:
    kinds = sorted(d["kind"] for _, d in manifests())
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "CronJob",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Kustomization",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "PodMonitor",
            "Secret",
            "Service",
        ]
    )
    for path, document in manifests():
        assert document.get("apiVersion"), path
        if document["kind"] != "Kustomization":
            assert document["metadata"]["name"].startswith("naltrexone-cds"), path
            assert document["metadata"]["labels"]["app.kubernetes.io/name"] == "naltrexone-cds", path


def test_kustomization_applies_everything_but_the_example_secret() -> None:
    listed = the("Kustomization")["resources"]
    for name in listed:
        assert (KUBE / name).is_file(), f"kustomization.yaml lists {name}, which does not exist"
    assert "secret.example.yaml" not in listed, "applying the directory would overwrite the real Secret"
    optional = {"secret.example.yaml", "podmonitor.yaml", "kustomization.yaml"}
    assert sorted(listed) == sorted(p.name for p in KUBE.glob("*.yaml") if p.name not in optional)


def test_every_variable_named_anywhere_in_deploy_and_the_docs_is_a_setting() -> None:
    known = documented()
    for container_name, container, _ in every_container():
        for variable in environment(container):
            assert variable in known, f"{container_name}: {variable} is not a setting of the service"
    texts = [*KUBE.glob("*.yaml"), NGINX, DOCS]
    for path in texts:
        for variable in re.findall(r"NALTREXONE_CDS_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8")):
            assert variable in known, f"{path.relative_to(ROOT)} names {variable}, which is not a setting"


def test_the_configuration_is_one_the_service_accepts_with_a_real_secret_only() -> None:
    for where, container, _ in every_container():
        with pytest.raises(SettingsError, match="audit_secret"):
            Settings.from_env(environment(container))  # the placeholder is refused, not used
        settings = settings_of(container)
        assert settings.database_url.startswith("postgresql://"), f"{where}: several pods need PostgreSQL"
        assert settings.trusted_issuers_file is not None
        assert settings.public_base_url.startswith("https://")
        assert settings.forwarded_allow_ips
        assert not settings.allow_unauthenticated
        assert "*" not in settings.cors_origins


def test_production_required_settings_are_set_and_secrets_come_from_the_secret() -> None:
    for where, container, _ in every_container():
        env = environment(container)
        for variable in PRODUCTION_REQUIRED:
            assert env.get(variable, "").strip(), f"{where}: {variable} is not set"
        by_name = {v["name"]: v for v in container.get("env", [])}
        for variable in FROM_THE_SECRET:
            assert variable not in config_data(), f"{variable} must not sit in a ConfigMap"
            assert "secretKeyRef" in by_name[variable]["valueFrom"], (
                f"{where}: {variable} not from the Secret"
            )


def test_the_container_listens_on_the_configured_port_and_probes_use_it() -> None:
    container = service_container()
    settings = settings_of(container)
    assert settings.host == "0.0.0.0"
    assert port_named(container, "http") == settings.port
    expected = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/health/ready"}
    for probe, path in expected.items():
        check = container[probe]["httpGet"]
        assert check["path"] == path, probe
        assert check["port"] == "http", f"{probe} should name the service port"
    assert container["command"] == ["naltrexone-cds", "serve"]


def test_the_service_routes_to_the_http_port_only() -> None:
    service = the("Service")
    container = service_container()
    declared = {p["name"]: p["containerPort"] for p in container["ports"]}
    targets = [p["targetPort"] for p in service["spec"]["ports"]]
    assert targets == ["http"]
    assert all(t in declared for t in targets)
    assert "metrics" not in targets and declared["metrics"] not in targets
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_metrics_are_served_on_their_own_declared_port_and_scraped_from_pods() -> None:
    container = service_container()
    env = environment(container)
    port = int(env["NALTREXONE_CDS_METRICS_PORT"])
    assert port != settings_of(container).port
    assert env["NALTREXONE_CDS_METRICS_HOST"] == "0.0.0.0"
    assert port_named(container, "metrics") == port
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert [e["port"] for e in the("PodMonitor")["spec"]["podMetricsEndpoints"]] == ["metrics"]
    for rule in the("NetworkPolicy")["spec"]["ingress"]:
        for allowed in rule["ports"]:
            port_named(container, allowed["port"])


def test_the_autoscaler_the_budget_and_the_policy_select_the_deployment() -> None:
    spec = deployment()["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in spec, "the HorizontalPodAutoscaler owns the replica count"
    target = the("HorizontalPodAutoscaler")["spec"]
    assert target["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment()["metadata"]["name"],
    }
    assert target["minReplicas"] >= 2
    assert the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert the("NetworkPolicy")["spec"]["podSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert the("PodMonitor")["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_cronjob_prunes_with_the_same_settings_and_is_never_selected_as_the_service() -> None:
    cronjob = the("CronJob")["spec"]
    assert "prune" in cli.commands
    (container,) = cronjob_pod_spec()["containers"]
    assert container["command"][:2] == ["naltrexone-cds", "prune"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    assert container["envFrom"] == service_container()["envFrom"]
    assert container["env"] == service_container()["env"]
    labels = cronjob["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    for selector in (
        the("Service")["spec"]["selector"],
        the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        deployment()["spec"]["selector"]["matchLabels"],
    ):
        assert not selector.items() <= labels.items(), "prune pods would be taken for service pods"


def test_mounted_files_are_the_files_the_settings_name_and_the_service_loads_them(tmp_path: Path) -> None:
    for where, container, spec in every_container():
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = container.get("volumeMounts", [])
        for mount in mounts:
            assert mount["name"] in volumes, f"{where} mounts {mount['name']}, which is not a volume"
        settings = settings_of(container)
        for setting, path in (
            ("trusted_issuers_file", settings.trusted_issuers_file),
            ("policy_file", settings.policy_file),
        ):
            assert path is not None, f"{where}: {setting} is not set"
            mount = next((m for m in mounts if path.parent == Path(m["mountPath"])), None)
            assert mount is not None, f"{where}: nothing is mounted where {setting} points ({path})"
            config_map = volumes[mount["name"]]["configMap"]["name"]
            content = the("ConfigMap", config_map)["data"].get(path.name)
            assert content is not None, f"ConfigMap {config_map} has no {path.name} for {setting}"
            (tmp_path / path.name).write_text(content, encoding="utf-8")
        assert settings.rules_dir is None, "rules travel with the package (docs/deployment.md says why)"
    load_trusted_issuers(tmp_path / "trusted-issuers.yaml")
    load_policy(default_rules_dir(), tmp_path / "local-policy.yaml")


def test_containers_run_unprivileged_on_a_read_only_root_with_a_writable_tmp() -> None:
    for where, container, spec in every_container():
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["automountServiceAccountToken"] is False, where
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        volumes = {v["name"]: v for v in spec["volumes"]}
        tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], f"{where}: /tmp must be writable"
        assert container["image"] == IMAGE, f"{where}: the image must stay an obvious placeholder"


def test_pods_stop_after_gunicorn_has_finished_gracefully() -> None:
    gunicorn = GunicornServer(Settings()).cfg
    container = service_container()
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace > 10
    assert grace > int(pre_stop[1]) + gunicorn.graceful_timeout


def test_workers_match_the_cpu_limit_because_gunicorn_would_count_the_node() -> None:
    container = service_container()
    settings = settings_of(container)
    assert settings.workers == 2 * cpus(container["resources"]["limits"]["cpu"])
    assert settings.worker_class == "sync"
    assert cpus(container["resources"]["requests"]["cpu"]) <= cpus(container["resources"]["limits"]["cpu"])


def test_the_example_secret_holds_placeholders_only() -> None:
    for key, value in secret_data().items():
        assert "CHANGE-ME" in value, f"secret.example.yaml {key} looks like a real value"
    assert len(secret_data()["audit-secret"].encode()) < 16, "a usable placeholder would be used"


def test_no_container_image_definition_is_shipped() -> None:
    """docs/deployment.md says why: CI here cannot build and run one."""
    for folder in (ROOT, ROOT / "deploy"):
        for name in ("Dockerfile", "Containerfile"):
            assert not (folder / name).exists(), f"{folder / name} exists but nothing builds it"
    assert "## Container image" in DOCS.read_text(encoding="utf-8")


# -- nginx, statically (tests/test_deployment_nginx.py runs it)


def nginx_directive(name: str) -> list[str]:
    text = NGINX.read_text(encoding="utf-8")
    return [m.group(1).strip() for m in re.finditer(rf"^[ \t]*{name}[ \t]+([^;{{}}\n]*);", text, re.M)]


def test_nginx_matches_the_service_defaults() -> None:
    (size,) = nginx_directive("client_max_body_size")
    units = {"k": 1024, "m": 1024 * 1024, "g": 1024**3}
    limit = int(size[:-1]) * units[size[-1].lower()] if size[-1].isalpha() else int(size)
    assert limit == int(documented()["NALTREXONE_CDS_MAX_BODY_BYTES"])
    assert str(limit) in NGINX.read_text(encoding="utf-8")  # the 413 OperationOutcome names it
    host, port = documented()["NALTREXONE_CDS_HOST"], documented()["NALTREXONE_CDS_PORT"]
    assert nginx_directive("server") == [f"{host}:{port}"]
    gunicorn = GunicornServer(Settings()).cfg
    (read_timeout,) = nginx_directive("proxy_read_timeout")
    assert int(read_timeout.rstrip("s")) >= gunicorn.timeout
    headers = nginx_directive("proxy_set_header")
    assert "X-Forwarded-Proto $scheme" in headers
    assert "X-Forwarded-For $remote_addr" in headers
    assert any(h.startswith("Strict-Transport-Security") for h in nginx_directive("add_header"))
    assert nginx_directive("proxy_request_buffering") == ["on"]


# -- the documentation


def test_the_docs_say_what_a_hospital_must_set_in_order() -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = re.search(r"^## What a hospital must set, in order\n(.+?)(?=^## )", text, re.S | re.M)
    assert section, "docs/deployment.md has no 'What a hospital must set, in order' section"
    steps = re.findall(r"^(\d+)\. (.+?)(?=^\d+\. |\Z)", section.group(1), re.S | re.M)
    assert [int(n) for n, _ in steps] == list(range(1, len(steps) + 1)), "the checklist is not numbered 1..n"
    for variable in PRODUCTION_REQUIRED:
        assert any(variable in step for _, step in steps), f"the checklist does not name {variable}"


def test_the_docs_link_to_files_that_exist() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (DOCS.parent / target).resolve().exists(), f"docs/deployment.md links to missing {target}"
    for needed in ("audit-retention.md", "performance.md", "../deploy/nginx/naltrexone-cds.conf"):
        assert f"]({needed}" in text, f"docs/deployment.md does not link {needed}"
    assert "](docs/deployment.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
