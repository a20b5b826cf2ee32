"""Checks of Vigil's deployment files, run by scripts/k8s-validate.sh with the repo venv's Python.

- deploy/kubernetes/*.yaml: each object against the Kubernetes JSON schema of one pinned version,
  strictly (an unknown field is an error, and so is a kind without a schema), then what a schema
  cannot say: replicas 3, every container non-root with a numeric user, a read-only root, no
  privilege escalation or capability, a seccomp profile, resource requests and limits, both
  probes on the right paths; the PodDisruptionBudget, the Service and the NetworkPolicy select
  the Deployment's pods; secrets only as files, from keys the example Secret has; the
  kustomization lists every manifest but the examples (and, with a rendering from
  `kubectl kustomize`, renders exactly those objects, schema-valid).
- docker-compose.yml: the structure the multi-replica setup relies on (its compose-spec schema
  check is check-jsonschema's, in the shell script).
- Dockerfile: FROM rust:<rust-toolchain.toml's channel>, a numeric USER equal to the pods'
  runAsUser:runAsGroup, a HEALTHCHECK.

Every check is proven able to fail: `--self-test` breaks each file in memory in the ways the
checks exist for and demands that each break is reported with the expected message.
"""

import argparse
import copy
import functools
import json
import pathlib
import re
import sys

import yaml
from kubernetes_validate import utils as kv

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "kubernetes"
EXAMPLE_SUFFIX = ".example.yaml"

# Settings that are secrets, each read from `<NAME>_FILE` as well (src/config.rs, secret_source
# and VIGIL_WEBHOOK_URLS): a manifest must give them as files only.
SECRET_SETTINGS = {
    "VIGIL_DATABASE_URL",
    "VIGIL_ADMIN_TOKEN",
    "VIGIL_REDACTION_KEY",
    "VIGIL_WEBHOOK_SECRET",
    "VIGIL_WEBHOOK_URLS",
    "VIGIL_VAULT_TOKEN",
    "VIGIL_VAULT_ROLE_ID",
    "VIGIL_VAULT_SECRET_ID",
}
# Variables the deployment files may set before src/ reads them: the cluster change on main
# introduces VIGIL_ADVERTISE_URL.
PENDING_SETTINGS = {"VIGIL_ADVERTISE_URL"}
PLACEHOLDER = "CHANGE-ME"
# Every replica's Postgres lease is 5 s; a clean stop hands partitions over within the drain.
MIN_GRACE_SECONDS = 30


def load_docs(path):
    """The YAML documents of a file, empty ones skipped."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def known_settings():
    """Every VIGIL_* name Vigil reads: the string literals of src/ (names are spelled either
    whole, "VIGIL_LOG", or without the prefix and formatted, "VAULT_AUTH")."""
    names = set(PENDING_SETTINGS)
    for path in (ROOT / "src").rglob("*.rs"):
        for token in re.findall(r'"([A-Z][A-Z0-9_]+)"', path.read_text(encoding="utf-8")):
            names.add(token if token.startswith("VIGIL_") else "VIGIL_" + token)
    return names


def read_by_vigil(name, known):
    """A variable that is not Vigil's (POD_IP), or one Vigil reads, directly or as a file."""
    return not name.startswith("VIGIL_") or name in known or name.endswith("_FILE") and name[: -len("_FILE")] in known


# ---------------------------------------------------------------- Kubernetes


def schema_errors(obj, version, where):
    """The object against the strict schema of `version`: unknown fields and unknown kinds fail."""
    name = f"{where}: {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
    return [f"{name}: {e}" for e in object_schema_errors(json.dumps(obj, sort_keys=True), version)]


@functools.cache
def object_schema_errors(obj_json, version):
    """schema_errors of one object, given as JSON: each validation parses 1.5 MB of schema, and
    the self-test shows the same objects again and again."""
    obj = json.loads(obj_json)
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(top)"
        return (f"schema of Kubernetes {e.version}: {path}: {e.message}",)
    except kv.SchemaNotFoundError as e:
        return (f"no schema: {e.message}",)
    except KeyError as e:
        return (f"no {e}",)
    return ()


def selects(selector, labels):
    """Whether a LabelSelector (matchLabels, matchExpressions) selects these labels: an empty
    one selects everything, a missing one nothing."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def effective(container, pod_sc, key):
    """A securityContext field as the kubelet applies it: the container's, else the pod's."""
    sc = container.get("securityContext") or {}
    return sc[key] if key in sc else (pod_sc or {}).get(key)


def check_container(c, pod_sc, kind, errors):
    n = f"{kind} {c.get('name')}"
    sc = c.get("securityContext") or {}
    if effective(c, pod_sc, "runAsNonRoot") is not True:
        errors.append(f"{n}: runAsNonRoot is not true")
    uid = effective(c, pod_sc, "runAsUser")
    if not isinstance(uid, int) or isinstance(uid, bool) or uid == 0:
        errors.append(f"{n}: runAsUser must be a numeric non-root uid, not {uid!r}")
    gid = effective(c, pod_sc, "runAsGroup")
    if not isinstance(gid, int) or isinstance(gid, bool) or gid == 0:
        errors.append(f"{n}: runAsGroup must be a numeric non-root gid, not {gid!r}")
    if sc.get("readOnlyRootFilesystem") is not True:
        errors.append(f"{n}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        errors.append(f"{n}: allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        errors.append(f"{n}: privileged")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
        errors.append(f"{n}: capabilities must drop ALL and add none")
    if (effective(c, pod_sc, "seccompProfile") or {}).get("type") != "RuntimeDefault":
        errors.append(f"{n}: seccompProfile is not RuntimeDefault")
    res = c.get("resources") or {}
    for resource in ("cpu", "memory"):
        if resource not in (res.get("requests") or {}):
            errors.append(f"{n}: resources.requests.{resource} missing")
    if "memory" not in (res.get("limits") or {}):
        errors.append(f"{n}: resources.limits.memory missing")


def probe_target(probe):
    get = (probe or {}).get("httpGet") or {}
    return get.get("path"), get.get("port")


def check_serve_container(c, volumes, secret_keys, errors):
    n = f"container {c.get('name')}"
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got_path, port = probe_target(c.get(probe))
        if got_path != path:
            errors.append(f"{n}: {probe} must GET {path}, not {got_path!r}")
        elif ports.get(port, port) != 8080:
            errors.append(f"{n}: {probe} port {port!r} is not the container's 8080")
    env = {e["name"]: e for e in c.get("env") or []}
    pod_ip = [k for k, e in env.items() if ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") == "status.podIP"]
    advertise = (env.get("VIGIL_ADVERTISE_URL") or {}).get("value", "")
    if not pod_ip or not any(f"$({k})" in advertise for k in pod_ip):
        errors.append(f"{n}: VIGIL_ADVERTISE_URL must be built from the pod IP (downward API status.podIP), not {advertise!r}")
    check_secret_files(c, volumes, secret_keys, n, errors)


def check_secret_files(c, volumes, secret_keys, n, errors):
    """Secrets only through *_FILE, each file under a mount of this container; a file under the
    Secret's mount names a key the example Secret has."""
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts") or []}
    for e in c.get("env") or []:
        name = e["name"]
        if name in SECRET_SETTINGS:
            errors.append(f"{n}: {name} is a secret: give it as {name}_FILE, a file from the Secret")
        if not name.endswith("_FILE"):
            continue
        path = e.get("value", "")
        parent = path.rsplit("/", 1)[0]
        if parent not in mounts:
            errors.append(f"{n}: {name}={path!r} is not in a mounted volume ({', '.join(sorted(mounts))})")
            continue
        volume = volumes.get(mounts[parent]) or {}
        if "secret" in volume and path.rsplit("/", 1)[1] not in secret_keys:
            errors.append(f"{n}: {name}={path!r}: the example Secret has no key {path.rsplit('/', 1)[1]!r}")


def check_kubernetes(files, kustomization, rendered, version):
    """files: {file name: [objects]} of deploy/kubernetes; rendered: `kubectl kustomize`'s
    objects, or None when kubectl is not at hand."""
    schema = []
    for fname, docs in files.items():
        for obj in docs:
            schema += schema_errors(obj, version, fname)
    if rendered is not None:
        for obj in rendered:
            schema += schema_errors(obj, version, "kubectl kustomize")
    errors = list(schema)

    manifests = sorted(f for f in files if not f.endswith(EXAMPLE_SUFFIX))
    listed = kustomization.get("resources") or []
    if sorted(listed) != manifests:
        errors.append(f"kustomization.yaml: resources {sorted(listed)} must be every manifest but *{EXAMPLE_SUFFIX}: {manifests}")
    if rendered is not None:
        want = sorted((o["kind"], o["metadata"]["name"]) for f in listed if f in files for o in files[f])
        got = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
        if got != want:
            errors.append(f"kubectl kustomize renders {got}, the listed files hold {want}")
    if schema:
        # the checks below read the objects as the schemas say they are
        return errors

    known = known_settings()
    objs = [(f, o) for f, docs in files.items() for o in docs]
    by_kind = {}
    for f, o in objs:
        by_kind.setdefault(o.get("kind"), []).append(o)
    namespace = kustomization.get("namespace")
    for f, o in objs:
        ns = (o.get("metadata") or {}).get("namespace")
        if o.get("kind") != "Namespace" and ns != namespace:
            errors.append(f"{f}: namespace {ns!r} is not the kustomization's {namespace!r}")

    secrets = by_kind.get("Secret", [])
    secret_keys = set()
    for s in secrets:
        if s.get("data"):
            errors.append(f"Secret {s['metadata']['name']}: use stringData with placeholders, not data")
        for k, v in (s.get("stringData") or {}).items():
            secret_keys.add(k)
            if PLACEHOLDER not in str(v):
                errors.append(f"Secret {s['metadata']['name']}: {k} must be an obvious placeholder containing {PLACEHOLDER}")
    for f in files:
        if any(o.get("kind") == "Secret" for o in files[f]) and not f.endswith(EXAMPLE_SUFFIX):
            errors.append(f"{f}: a Secret belongs in a *{EXAMPLE_SUFFIX} file, never in the kustomization")

    for cm in by_kind.get("ConfigMap", []):
        for k in cm.get("data") or {}:
            if k in SECRET_SETTINGS:
                errors.append(f"ConfigMap {cm['metadata']['name']}: {k} is a secret: it belongs in the Secret, as a file")
            if not read_by_vigil(k, known):
                errors.append(f"ConfigMap {cm['metadata']['name']}: {k} is not a variable Vigil reads (src/)")

    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        return errors + [f"exactly one Deployment expected, found {len(deployments)}"]
    d = deployments[0]
    spec = d.get("spec") or {}
    pod = (spec.get("template") or {}).get("spec") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if spec.get("replicas") != 3:
        errors.append(f"Deployment: replicas must be 3, not {spec.get('replicas')!r}")
    if (pod.get("terminationGracePeriodSeconds") or 30) < MIN_GRACE_SECONDS:
        errors.append(f"Deployment: terminationGracePeriodSeconds must be at least {MIN_GRACE_SECONDS} (partition handover)")
    if pod.get("automountServiceAccountToken") is not False:
        errors.append("Deployment: automountServiceAccountToken must be false (Vigil does not call the Kubernetes API)")
    sa_name = pod.get("serviceAccountName")
    for sa in by_kind.get("ServiceAccount", []):
        if sa["metadata"]["name"] == sa_name and sa.get("automountServiceAccountToken") is not False:
            errors.append(f"ServiceAccount {sa_name}: automountServiceAccountToken must be false")
    if sa_name not in [sa["metadata"]["name"] for sa in by_kind.get("ServiceAccount", [])]:
        errors.append(f"Deployment: serviceAccountName {sa_name!r} is not a ServiceAccount here")
    spread = [t for t in pod.get("topologySpreadConstraints") or [] if selects(t.get("labelSelector"), labels)]
    anti = (((pod.get("affinity") or {}).get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []) + [
        t.get("podAffinityTerm", {})
        for t in ((pod.get("affinity") or {}).get("podAntiAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []
    ]
    anti = [t for t in anti if selects(t.get("labelSelector"), labels)]
    if not any(t.get("topologyKey") == "kubernetes.io/hostname" for t in spread + anti):
        errors.append("Deployment: no topologySpreadConstraints or podAntiAffinity across nodes (kubernetes.io/hostname) selects its pods")

    pod_sc = pod.get("securityContext") or {}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    secret_names = {s["metadata"]["name"] for s in secrets}
    for v in volumes.values():
        if "secret" in v and v["secret"].get("secretName") not in secret_names:
            errors.append(f"Deployment: volume {v['name']} mounts Secret {v['secret'].get('secretName')!r}, which no example defines")
    configmaps = {c["metadata"]["name"] for c in by_kind.get("ConfigMap", [])}
    inits = pod.get("initContainers") or []
    containers = pod.get("containers") or []
    for c in inits:
        check_container(c, pod_sc, "initContainer", errors)
        check_secret_files(c, volumes, secret_keys, f"initContainer {c.get('name')}", errors)
    for c in containers:
        check_container(c, pod_sc, "container", errors)
        check_serve_container(c, volumes, secret_keys, errors)
    for c in inits + containers:
        for e in c.get("env") or []:
            if not read_by_vigil(e["name"], known):
                errors.append(f"container {c.get('name')}: {e['name']} is not a variable Vigil reads (src/)")
        for ref in c.get("envFrom") or []:
            name = (ref.get("configMapRef") or {}).get("name")
            if name is not None and name not in configmaps:
                errors.append(f"container {c.get('name')}: envFrom ConfigMap {name!r} is not defined here")
    if [c.get("args") for c in containers] != [["serve"]]:
        errors.append("Deployment: one container, running `vigil serve` (args [serve])")
    if not any(c.get("args") == ["migrate"] for c in inits):
        errors.append("Deployment: no initContainer runs `vigil migrate`")
    if len({c.get("image") for c in inits + containers}) != 1:
        errors.append("Deployment: the migrate and serve containers must run the same image")

    pdbs = [p for p in by_kind.get("PodDisruptionBudget", []) if selects((p.get("spec") or {}).get("selector"), labels)]
    if not pdbs:
        errors.append("no PodDisruptionBudget selects the Deployment's pods")
    for p in pdbs:
        ps = p["spec"]
        if not (ps.get("maxUnavailable") == 1 or ps.get("minAvailable") == 2):
            errors.append(f"PodDisruptionBudget {p['metadata']['name']}: maxUnavailable 1 or minAvailable 2")
    services = by_kind.get("Service", [])
    if not any(
        s["spec"].get("type", "ClusterIP") == "ClusterIP"
        and s["spec"].get("selector")
        and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
        and any(p.get("port") == 8080 for p in s["spec"].get("ports") or [])
        for s in services
    ):
        errors.append("no ClusterIP Service on port 8080 selects the Deployment's pods")
    for np in by_kind.get("NetworkPolicy", []):
        if not selects(np["spec"].get("podSelector"), labels):
            errors.append(f"NetworkPolicy {np['metadata']['name']}: podSelector does not select the Deployment's pods")
    return errors


# ---------------------------------------------------------------- docker-compose.yml


def compose_env(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return env


def check_compose(compose):
    errors = []
    services = compose.get("services") or {}
    for name in ("postgres", "openbao", "vigil-migrate"):
        if name not in services:
            errors.append(f"docker-compose.yml: no service {name}")
    migrate = services.get("vigil-migrate") or {}
    if migrate.get("command") != ["migrate"]:
        errors.append("docker-compose.yml: vigil-migrate must run `migrate`")
    replicas = sorted(n for n in services if re.fullmatch(r"vigil-\d+", n))
    if replicas != ["vigil-1", "vigil-2"]:
        errors.append(f"docker-compose.yml: replicas vigil-1 and vigil-2 expected, found {replicas}")
    urls, published, databases = {}, {}, set()
    for n in replicas:
        s = services[n]
        env = compose_env(s)
        if s.get("command") != ["serve"]:
            errors.append(f"docker-compose.yml: {n} must run `serve`")
        url = env.get("VIGIL_ADVERTISE_URL")
        if url != f"http://{n}:8080":
            errors.append(f"docker-compose.yml: {n}: VIGIL_ADVERTISE_URL must be http://{n}:8080, not {url!r}")
        urls.setdefault(url, []).append(n)
        databases.add(env.get("VIGIL_DATABASE_URL"))
        for p in s.get("ports") or []:
            host = p.rsplit(":", 1)[0] if isinstance(p, str) else None
            if not (isinstance(p, str) and p.startswith("127.0.0.1:") and p.endswith(":8080")):
                errors.append(f"docker-compose.yml: {n}: publish 127.0.0.1:<port>:8080, not {p!r}")
            published.setdefault(host, []).append(n)
        if (s.get("depends_on") or {}).get("vigil-migrate", {}).get("condition") != "service_completed_successfully":
            errors.append(f"docker-compose.yml: {n} must wait for vigil-migrate to complete successfully")
        grace = re.fullmatch(r"(\d+)(s|m)", str(s.get("stop_grace_period", "10s")))
        if not grace or int(grace.group(1)) * (60 if grace.group(2) == "m" else 1) < MIN_GRACE_SECONDS:
            errors.append(f"docker-compose.yml: {n}: stop_grace_period at least {MIN_GRACE_SECONDS}s (partition handover)")
    for where, names in list(urls.items()) + list(published.items()):
        if len(names) > 1:
            errors.append(f"docker-compose.yml: {names} share {where!r}")
    if len(databases) != 1:
        errors.append("docker-compose.yml: the replicas must share one VIGIL_DATABASE_URL")
    return errors


# ---------------------------------------------------------------- Dockerfile


def check_dockerfile(text, toolchain, deployment_user):
    """toolchain: rust-toolchain.toml's text; deployment_user: (runAsUser, runAsGroup) of the pods."""
    errors = []
    channel = re.search(r'^channel\s*=\s*"([^"]+)"', toolchain, re.M)
    froms = re.findall(r"^FROM\s+rust:([0-9][^\s-]*)", text, re.M)
    if not channel or froms != [channel.group(1)]:
        errors.append(f"Dockerfile: FROM rust:{froms} must be rust-toolchain.toml's channel {channel and channel.group(1)!r}")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    if not users or not re.fullmatch(r"\d+:\d+", users[-1]):
        errors.append(f"Dockerfile: the last USER must be numeric uid:gid, not {users[-1:]}")
    elif tuple(int(x) for x in users[-1].split(":")) != deployment_user:
        errors.append(f"Dockerfile: USER {users[-1]} is not the pods' runAsUser:runAsGroup {deployment_user}")
    if not re.search(r"^HEALTHCHECK\s", text, re.M):
        errors.append("Dockerfile: no HEALTHCHECK")
    return errors


# ---------------------------------------------------------------- run and self-test


def load_all(rendered_path):
    files = {p.name: load_docs(p) for p in sorted(K8S_DIR.glob("*.yaml")) if p.name != "kustomization.yaml"}
    kustomization = load_docs(K8S_DIR / "kustomization.yaml")[0]
    rendered = load_docs(rendered_path) if rendered_path else None
    compose = load_docs(ROOT / "docker-compose.yml")[0]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    toolchain = (ROOT / "rust-toolchain.toml").read_text(encoding="utf-8")
    return files, kustomization, rendered, compose, dockerfile, toolchain


def pod_user(files):
    for docs in files.values():
        for o in docs:
            if o.get("kind") == "Deployment":
                sc = o["spec"]["template"]["spec"].get("securityContext") or {}
                return (sc.get("runAsUser"), sc.get("runAsGroup"))
    return (None, None)


def run_all(state, version):
    files, kustomization, rendered, compose, dockerfile, toolchain = state
    return (
        check_kubernetes(files, kustomization, rendered, version)
        + check_compose(compose)
        + check_dockerfile(dockerfile, toolchain, pod_user(files))
    )


def find(files, kind):
    return next(o for docs in files.values() for o in docs if o.get("kind") == kind)


def pod_of(files):
    return find(files, "Deployment")["spec"]["template"]["spec"]


def serve(files):
    return pod_of(files)["containers"][0]


def env_of(c, name):
    return next(e for e in c["env"] if e["name"] == name)


# Each break of the files that a check exists for, and the message it must produce. A break is
# a function of a deep copy of the loaded state (files, kustomization, rendered, compose,
# dockerfile, toolchain) that changes it in place, or, for the two texts, returns the new state.
BREAKS = [
    ("an unknown field in a container", "Additional properties are not allowed", lambda s: serve(s[0]).update(imagePullSecret="x")),
    ("a misspelt kind", "no schema", lambda s: s[0]["service.yaml"][0].update(kind="Servise")),
    ("a field of the wrong type", "is not of type 'integer'", lambda s: pod_of(s[0]).update(terminationGracePeriodSeconds="45")),
    ("two replicas", "replicas must be 3", lambda s: find(s[0], "Deployment")["spec"].update(replicas=2)),
    ("runAsNonRoot dropped", "runAsNonRoot is not true",
     lambda s: [serve(s[0])["securityContext"].pop("runAsNonRoot"), pod_of(s[0])["securityContext"].pop("runAsNonRoot")]),
    ("root", "runAsUser must be a numeric non-root uid", lambda s: serve(s[0])["securityContext"].update(runAsUser=0)),
    ("a writable root", "readOnlyRootFilesystem is not true",
     lambda s: pod_of(s[0])["initContainers"][0]["securityContext"].update(readOnlyRootFilesystem=False)),
    ("privilege escalation", "allowPrivilegeEscalation is not false",
     lambda s: serve(s[0])["securityContext"].pop("allowPrivilegeEscalation")),
    ("a capability kept", "capabilities must drop ALL", lambda s: serve(s[0])["securityContext"]["capabilities"].update(add=["NET_RAW"])),
    ("no seccomp profile", "seccompProfile is not RuntimeDefault",
     lambda s: [serve(s[0])["securityContext"].pop("seccompProfile"), pod_of(s[0])["securityContext"].pop("seccompProfile")]),
    ("no resource requests", "resources.requests.cpu missing", lambda s: pod_of(s[0])["initContainers"][0]["resources"].pop("requests")),
    ("no memory limit", "resources.limits.memory missing", lambda s: serve(s[0])["resources"]["limits"].pop("memory")),
    ("no readiness probe", "readinessProbe must GET /readyz", lambda s: serve(s[0]).pop("readinessProbe")),
    ("liveness on /readyz", "livenessProbe must GET /healthz",
     lambda s: serve(s[0])["livenessProbe"]["httpGet"].update(path="/readyz")),
    ("a probe on another port", "is not the container's 8080", lambda s: serve(s[0])["readinessProbe"]["httpGet"].update(port=9090)),
    ("a short grace period", "terminationGracePeriodSeconds must be at least", lambda s: pod_of(s[0]).update(terminationGracePeriodSeconds=10)),
    ("the API token mounted", "automountServiceAccountToken must be false", lambda s: pod_of(s[0]).update(automountServiceAccountToken=True)),
    ("no spread across nodes", "no topologySpreadConstraints or podAntiAffinity", lambda s: pod_of(s[0]).pop("topologySpreadConstraints")),
    ("no migrate initContainer", "no initContainer runs `vigil migrate`", lambda s: pod_of(s[0])["initContainers"][0].update(args=["serve"])),
    ("a fixed advertise URL", "VIGIL_ADVERTISE_URL must be built from the pod IP",
     lambda s: env_of(serve(s[0]), "VIGIL_ADVERTISE_URL").update(value="http://vigil:8080")),
    ("a secret by value", "is a secret: give it as VIGIL_ADMIN_TOKEN_FILE",
     lambda s: serve(s[0])["env"].append({"name": "VIGIL_ADMIN_TOKEN", "value": "x" * 40})),
    ("a secret in the ConfigMap", "VIGIL_REDACTION_KEY is a secret", lambda s: find(s[0], "ConfigMap")["data"].update(VIGIL_REDACTION_KEY="x" * 20)),
    ("a misspelt variable", "VIGIL_VAULT_AUTHMOUNT is not a variable Vigil reads",
     lambda s: find(s[0], "ConfigMap")["data"].update(VIGIL_VAULT_AUTHMOUNT="kubernetes")),
    ("a misspelt file variable", "VIGIL_ADMN_TOKEN_FILE is not a variable Vigil reads",
     lambda s: env_of(serve(s[0]), "VIGIL_ADMIN_TOKEN_FILE").update(name="VIGIL_ADMN_TOKEN_FILE")),
    ("a secret file outside the mounts", "is not in a mounted volume",
     lambda s: env_of(serve(s[0]), "VIGIL_ADMIN_TOKEN_FILE").update(value="/run/secrets/admin-token")),
    ("a secret file the Secret lacks", "the example Secret has no key 'admin_token'",
     lambda s: env_of(serve(s[0]), "VIGIL_ADMIN_TOKEN_FILE").update(value="/etc/vigil/secrets/admin_token")),
    ("a real-looking secret value", "must be an obvious placeholder", lambda s: find(s[0], "Secret")["stringData"].update({"admin-token": "0f3a" * 10})),
    ("the Secret in the kustomization", "a Secret belongs in a *.example.yaml file",
     lambda s: s[0].__setitem__("secret.yaml", s[0].pop("secret.example.yaml"))),
    ("a manifest not listed", "resources", lambda s: s[1]["resources"].remove("networkpolicy.yaml")),
    ("a PDB that selects nothing", "no PodDisruptionBudget selects",
     lambda s: find(s[0], "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/component": "web"})),
    ("a PDB that allows two down", "maxUnavailable 1 or minAvailable 2", lambda s: find(s[0], "PodDisruptionBudget")["spec"].update(maxUnavailable=2)),
    ("a Service without a selector", "no ClusterIP Service on port 8080", lambda s: find(s[0], "Service")["spec"].pop("selector")),
    ("a Service that selects nothing", "no ClusterIP Service on port 8080",
     lambda s: find(s[0], "Service")["spec"]["selector"].update({"app.kubernetes.io/name": "vigill"})),
    ("a NetworkPolicy that selects nothing", "podSelector does not select",
     lambda s: find(s[0], "NetworkPolicy")["spec"]["podSelector"]["matchLabels"].update({"app.kubernetes.io/name": "x"})),
    ("an object in another namespace", "is not the kustomization's", lambda s: find(s[0], "Service")["metadata"].update(namespace="default")),
    ("a ConfigMap that is not there", "envFrom ConfigMap 'vigil-conf'",
     lambda s: serve(s[0])["envFrom"][0]["configMapRef"].update(name="vigil-conf")),
    ("compose: two replicas advertising one URL", "VIGIL_ADVERTISE_URL must be http://vigil-2:8080",
     lambda s: s[3]["services"]["vigil-2"]["environment"].update(VIGIL_ADVERTISE_URL="http://vigil-1:8080")),
    ("compose: one published port twice", "share '127.0.0.1:8080'", lambda s: s[3]["services"]["vigil-2"].update(ports=["127.0.0.1:8080:8080"])),
    ("compose: a replica that does not wait for migrate", "must wait for vigil-migrate",
     lambda s: s[3]["services"]["vigil-1"]["depends_on"].pop("vigil-migrate")),
    ("compose: replicas on two databases", "share one VIGIL_DATABASE_URL",
     lambda s: s[3]["services"]["vigil-1"]["environment"].update(VIGIL_DATABASE_URL="postgres://other/vigil")),
    ("compose: a short stop grace period", "stop_grace_period at least", lambda s: s[3]["services"]["vigil-2"].update(stop_grace_period="5s")),
    ("compose: a third replica", "replicas vigil-1 and vigil-2 expected", lambda s: s[3]["services"].update({"vigil-3": {}})),
    ("Dockerfile: another Rust", "must be rust-toolchain.toml's channel", lambda s: s[:4] + (s[4].replace("FROM rust:", "FROM rust:0.", 1), s[5])),
    ("Dockerfile: a named user", "the last USER must be numeric", lambda s: s[:4] + (re.sub(r"^USER .*$", "USER vigil", s[4], flags=re.M), s[5])),
    ("Dockerfile: a user the pods do not run as", "is not the pods' runAsUser",
     lambda s: s[:4] + (re.sub(r"^USER .*$", "USER 1000:1000", s[4], flags=re.M), s[5])),
    ("Dockerfile: no HEALTHCHECK", "no HEALTHCHECK", lambda s: s[:4] + (s[4].replace("HEALTHCHECK", "# HEALTH CHECK"), s[5])),
    ("toolchain moved alone", "must be rust-toolchain.toml's channel", lambda s: s[:5] + (s[5].replace('channel = "', 'channel = "9', 1),)),
]


def self_test(state, version):
    failures = []
    for what, expected, brk in BREAKS:
        broken = copy.deepcopy(state)
        replaced = brk(broken)
        if isinstance(replaced, tuple):
            broken = replaced
        errors = run_all(broken, version)
        if not any(expected in e for e in errors):
            failures.append(f"{what}: not caught (wanted {expected!r}; got {errors or 'no error'})")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--rendered", help="`kubectl kustomize deploy/kubernetes` output, if kubectl is at hand")
    parser.add_argument("--self-test", action="store_true", help="also break every file in memory and demand each break is caught")
    args = parser.parse_args()
    state = load_all(args.rendered)
    errors = run_all(state, args.kubernetes_version)
    for e in errors:
        print(f"FAIL {e}")
    if errors:
        return 1
    objects = sum(len(d) for d in state[0].values())
    print(f"ok: {objects} objects in {len(state[0])} files valid against Kubernetes {args.kubernetes_version} (strict)"
          + (f", {len(state[2])} rendered by kubectl kustomize" if state[2] is not None else ", the kustomize rendering not checked (no --rendered)")
          + "; docker-compose.yml and Dockerfile structure ok")
    if args.self_test:
        failures = self_test(state, args.kubernetes_version)
        for f in failures:
            print(f"FAIL self-test: {f}")
        if failures:
            return 1
        print(f"ok: self-test: each of {len(BREAKS)} breaks of the files is caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
