#!/usr/bin/env python3
"""Render every kustomization under deploy/ and validate what comes out, offline.

- Rendering: `kubectl kustomize`, or .ci/mini_kustomize.py where kubectl is missing.
- Kubernetes kinds: kubernetes-validate's bundled schemas, strict (unknown fields are errors),
  for a fixed Kubernetes version per target (native sidecars need 1.29+, the plain-sidecar overlay
  must also pass on 1.28).
- ServiceMonitor / PrometheusRule: JSON schemas derived from cloudcoil's generated
  prometheus-operator models (made strict: unknown fields are errors).
- What the issue requires of the pod: probes, security context, resources, the Secrets mounted
  as files, terminationGracePeriodSeconds above vigil's shutdown.drain; for [kubernetes], the
  Role's exact rules, the token in vigil's container only, the downward API variables.

Usage: validate-manifests.py OUTDIR   (writes each rendering and the ConfigMap's vigil.toml there)
"""
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

import jsonschema
import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator import v1 as promop

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import mini_kustomize  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGETS = {  # kustomization -> Kubernetes versions to validate against
    "deploy/base": ["1.29.0", "1.30.0", "1.33.0"],
    "deploy/overlays/plain-sidecar": ["1.27.0", "1.28.0", "1.30.0"],
}
failures: list[str] = []


def fail(msg: str) -> None:
    failures.append(msg)
    print(f"FAIL {msg}")


def strict(node):
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node


CRD_VALIDATORS = {
    kind: jsonschema.Draft202012Validator(strict(getattr(promop, kind).model_json_schema(by_alias=True)))
    for kind in ("ServiceMonitor", "PrometheusRule")
}


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not m:
        raise ValueError(f"unreadable duration {duration!r}")
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]


def check_pod(target: str, docs: list[dict], outdir: pathlib.Path) -> None:
    deploy = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "api-gateway")
    pod = deploy["spec"]["template"]["spec"]
    native = [c for c in pod.get("initContainers", []) if c["name"] == "vigil"]
    plain = [c for c in pod["containers"] if c["name"] == "vigil"]
    if target == "deploy/base":
        if not (native and native[0].get("restartPolicy") == "Always" and not plain):
            fail(f"{target}: vigil must be a native sidecar (initContainers, restartPolicy: Always)")
    elif not (plain and not native and "restartPolicy" not in plain[0]):
        fail(f"{target}: vigil must be a plain container")
    vigil = (native or plain)[0]
    probes = {p: vigil.get(p, {}).get("httpGet", {}).get("path") for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    if probes != {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}:
        fail(f"{target}: vigil's probes are {probes}")
    sc = vigil.get("securityContext", {})
    if not (sc.get("readOnlyRootFilesystem") and sc.get("runAsNonRoot") and sc.get("allowPrivilegeEscalation") is False
            and sc.get("capabilities", {}).get("drop") == ["ALL"]):
        fail(f"{target}: vigil's securityContext is not locked down: {sc}")
    res = vigil.get("resources", {})
    if not (res.get("requests", {}).keys() >= {"cpu", "memory"} and res.get("limits", {}).keys() >= {"cpu", "memory"}):
        fail(f"{target}: vigil needs cpu and memory requests and limits")
    if not any(p.get("name") == "vigil" and p.get("containerPort") == 9476 for p in vigil.get("ports", [])):
        fail(f"{target}: vigil does not expose port 9476 named vigil")

    mounts = {m["name"]: m["mountPath"] for m in vigil.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    cms = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    config_volume = volumes[next(n for n, p in mounts.items() if p == "/etc/vigil")]
    cm = cms[config_volume["configMap"]["name"]]
    text = cm["data"]["vigil.toml"]
    (outdir / f"{target.replace('/', '_')}.vigil.toml").write_text(text)
    config = tomllib.loads(text)
    for key in ("postgres.url_file", "jwt.secret_file", "diag.token_file"):
        section, name = key.split(".")
        path = config.get(section, {}).get(name)
        if path is None:
            fail(f"{target}: vigil.toml has no {key}")
            continue
        vol = next((n for n, p in mounts.items() if path.startswith(p.rstrip("/") + "/")), None)
        if vol is None or "secret" not in volumes.get(vol, {}):
            fail(f"{target}: {key} = {path} is not on a mounted Secret volume")
    check_kubernetes(target, docs, pod, vigil, config)
    drain = seconds(config.get("shutdown", {}).get("drain", "5s"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if not grace > drain:
        fail(f"{target}: terminationGracePeriodSeconds {grace} must exceed shutdown.drain {drain}s")
    else:
        print(f"ok   {target}: terminationGracePeriodSeconds {grace}s > shutdown.drain {drain:g}s")


# What rbac.yaml's Role grants, exactly (SPEC, "Kubernetes": least privilege): (apiGroup, resource) -> verbs.
ROLE_RULES = {
    ("", "pods"): {"get", "list", "watch"},
    ("discovery.k8s.io", "endpointslices"): {"get", "list", "watch"},
    ("metrics.k8s.io", "pods"): {"get"},
    ("events.k8s.io", "events"): {"create", "patch"},
}


def check_kubernetes(target: str, docs: list[dict], pod: dict, vigil: dict, config: dict) -> None:
    """[kubernetes]: vigil's service account is bound to exactly ROLE_RULES, its token and CA are
    mounted in vigil's container and no other (the gateway must not get vigil's API rights), the
    downward API gives the pod's name and namespace, and container / service name real objects."""
    kube = config.get("kubernetes")
    if kube is None:
        fail(f"{target}: vigil.toml has no [kubernetes]")
        return
    if pod.get("automountServiceAccountToken") is not False:
        fail(f"{target}: the pod must set automountServiceAccountToken: false (the gateway would get a token)")
    sa_name = pod.get("serviceAccountName")
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    if sa_name not in accounts:
        fail(f"{target}: serviceAccountName {sa_name!r} is not a ServiceAccount of the rendering")
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    bound = [
        roles.get(b["roleRef"]["name"]) for b in docs
        if b["kind"] == "RoleBinding" and b["roleRef"]["kind"] == "Role"
        and any(s["kind"] == "ServiceAccount" and s["name"] == sa_name
                and s.get("namespace") == accounts.get(sa_name, {}).get("metadata", {}).get("namespace")
                for s in b.get("subjects", []))
    ]
    if len(bound) != 1 or bound[0] is None:
        fail(f"{target}: {sa_name} must be bound (in its own namespace) to exactly one Role of the rendering")
    else:
        granted: dict = {}
        for rule in bound[0]["rules"]:
            for group in rule.get("apiGroups", []):
                for res in rule.get("resources", []):
                    granted.setdefault((group, res), set()).update(rule.get("verbs", []))
        if granted != ROLE_RULES or any(rule.get("resourceNames") for rule in bound[0]["rules"]):
            fail(f"{target}: Role {bound[0]['metadata']['name']} grants {granted}, not exactly {ROLE_RULES}")
        else:
            print(f"ok   {target}: {sa_name} holds exactly the Role's {len(ROLE_RULES)} rules")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"].rstrip("/"): m for m in vigil.get("volumeMounts", [])}
    default_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    api_volumes = set()
    for key, default, source in (("token_file", "token", "serviceAccountToken"), ("ca_file", "ca.crt", "configMap")):
        path = kube.get(key, f"{default_dir}/{default}")
        directory, _, name = path.rpartition("/")
        mount = mounts.get(directory)
        projected = volumes.get(mount["name"], {}).get("projected", {}) if mount else {}
        items = [s[source] for s in projected.get("sources", []) if source in s]
        found = any(i.get("path") == name for i in items) or any(
            it.get("path") == name for i in items for it in i.get("items", []))
        if not (mount and mount.get("readOnly") and found):
            fail(f"{target}: kubernetes.{key} = {path} is not a {source} of a projected volume mounted read-only in vigil")
            continue
        api_volumes.add(mount["name"])
        if source == "serviceAccountToken" and not items[0].get("expirationSeconds", 3600) >= 600:
            fail(f"{target}: the token's expirationSeconds must be at least 600")
    for c in pod.get("initContainers", []) + pod["containers"]:
        if c is not vigil and any(m["name"] in api_volumes for m in c.get("volumeMounts", [])):
            fail(f"{target}: container {c['name']} mounts vigil's API token volume")
        if c is not vigil and any(m["mountPath"].startswith(default_dir) for m in c.get("volumeMounts", [])):
            fail(f"{target}: container {c['name']} has a service account token mount")
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in vigil.get("env", [])}
    for name, field in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"), ("POD_IP", "status.podIP")):
        if env.get(name) != field:
            fail(f"{target}: vigil's {name} must come from the downward API ({field})")
    gateway = kube.get("container")
    if gateway not in [c["name"] for c in pod["containers"]]:
        fail(f"{target}: kubernetes.container = {gateway!r} is not a container of the pod")
    service = kube.get("service")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    if service is not None:
        if service not in services:
            fail(f"{target}: kubernetes.service = {service!r} is not a Service of the rendering")
        elif services[service]["spec"].get("publishNotReadyAddresses"):
            fail(f"{target}: kubernetes.service = {service!r} publishes not-ready pods: its endpoints are always ready")
    print(f"ok   {target}: [kubernetes] token and CA in vigil's container only, container {gateway}, service {service}")


def _normal(text: str) -> str:
    docs = sorted((d for d in yaml.safe_load_all(text) if d), key=lambda d: (d["kind"], d["metadata"]["name"]))
    return re.sub(r"(vigil-config)-[a-z0-9]+", r"\1-HASH", yaml.safe_dump_all(docs, sort_keys=True))


def render(target: str) -> str:
    """kubectl kustomize when kubectl is there (and then the stand-in must agree with it, up to
    the ConfigMap's hash suffix); else .ci/mini_kustomize.py, which handles what deploy/ uses."""
    mini = yaml.safe_dump_all(mini_kustomize.render(ROOT / target), sort_keys=False)
    if not shutil.which("kubectl"):
        print(f"note {target}: no kubectl here, rendered with .ci/mini_kustomize.py")
        return mini
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / target)], check=True, capture_output=True, text=True).stdout
    if _normal(rendered) != _normal(mini):
        fail(f"{target}: .ci/mini_kustomize.py renders it differently from kubectl kustomize")
    return rendered


def main() -> int:
    outdir = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path("/tmp/vigil-manifests")
    outdir.mkdir(parents=True, exist_ok=True)
    for target, versions in TARGETS.items():
        rendered = render(target)
        (outdir / f"{target.replace('/', '_')}.yaml").write_text(rendered)
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        kinds = sorted(d["kind"] for d in docs)
        print(f"== {target}: {len(docs)} documents: {', '.join(kinds)}")
        for needed in ("ConfigMap", "Deployment", "Service", "ServiceMonitor", "PrometheusRule"):
            if needed not in kinds:
                fail(f"{target}: no {needed}")
        for doc in docs:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] in CRD_VALIDATORS:
                errors = list(CRD_VALIDATORS[doc["kind"]].iter_errors(doc))
                for e in errors:
                    fail(f"{target}: {name}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
                if not errors:
                    print(f"ok   {target}: {name} against the prometheus-operator schema")
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                    print(f"ok   {target}: {name} against Kubernetes {version}")
                except kubernetes_validate.ValidationError as e:
                    fail(f"{target}: {name} against Kubernetes {version}: {'.'.join(map(str, e.path))}: {e.message}")
                except kubernetes_validate.SchemaNotFoundError as e:
                    fail(f"{target}: {name}: no schema: {e}")
        check_pod(target, docs, outdir)
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all manifests valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
