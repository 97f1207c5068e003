#!/usr/bin/env python3
"""The checks behind deploy/check.sh (run it, not this file).

    check_deploy.py docker REPO_ROOT
        Dockerfiles: every COPY/ADD source exists in the build context and is
        not excluded by the Dockerfile's own .dockerignore; Cargo.toml,
        Cargo.lock and every workspace member reach the build; the packages
        built (-p) and the binaries copied exist in the workspace; base
        images carry a pinned tag.

    check_deploy.py manifests OVERLAY RENDERED_YAML K8S_VERSION SCHEMA_DIR
        The output of `kubectl kustomize` for one overlay: every object
        against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
        unknown fields fail) or, for custom resources, against a JSON schema
        of SCHEMA_DIR; an object of a kind with neither fails. Then the
        references between objects, the conventions every workload follows,
        the embedded Edge and Prometheus configs, and leftover placeholders.

Prints what it validated; exits 1 on any failure.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

# ---------------------------------------------------------------------------
# What the manifests may leave for the user, and nothing else.

# Secrets the workloads reference that are deliberately not part of the
# manifests (no default credential is shipped): created by the user, as
# deploy/README.md says. name -> keys.
EXTERNAL_SECRETS = {
    "tero-admin-token": {"token"},
    "tero-database": {"url"},
}

# Placeholders documented in deploy/README.md: (kind, name, field path) ->
# the exact value allowed there.
ALLOWED_PLACEHOLDERS = {
    ("Secret", "tero-edge-key", "stringData.key"): "REPLACE_WITH_EDGE_KEY",
}

# Variables the Edge substitutes in its config.json (`${VAR}`): allowed in
# an Edge config only, and only when the container that mounts it sets them.
EDGE_CONFIG_VARS = {"TERO_EDGE_KEY", "POD_NAME", "POD_NAMESPACE"}

PLACEHOLDER_RE = re.compile(
    r"change[_-]?me|replace[_-]?(me|with)|\btodo\b|fixme|xxx|example\.(com|org|net)|<[a-z][a-z0-9_ -]*>|\$\{",
    re.IGNORECASE,
)

NAMESPACE = "tero"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")

    def check(self, cond: bool, where: str, message: str) -> bool:
        if not cond:
            self.error(where, message)
        return cond


# ---------------------------------------------------------------------------
# Dockerfiles


def dockerignore_patterns(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per line, Docker's matching: `**` any number of
    directories, `*` and `?` within one; a match on a directory excludes
    what is under it."""
    patterns = []
    if not path.exists():
        return patterns
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        if negated:
            line = line[1:].strip()
        line = os.path.normpath(line.lstrip("/"))
        rx = ""
        i = 0
        while i < len(line):
            if line.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif line.startswith("**", i):
                rx += ".*"
                i += 2
            elif line[i] == "*":
                rx += "[^/]*"
                i += 1
            elif line[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(line[i])
                i += 1
        patterns.append((negated, re.compile(rf"^{rx}(?:/.*)?$")))
    return patterns


def ignored(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    result = False
    for negated, rx in patterns:
        if rx.match(rel):
            result = not negated
    return result


def dockerfile_instructions(path: Path) -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, words) with continuation lines joined; comments and
    parser directives skipped."""
    out: list[tuple[str, list[str]]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        words = buf.split(None, 1)
        rest = words[1] if len(words) > 1 else ""
        out.append((words[0].upper(), [rest]))
        buf = ""
    return out


def load_toml(path: Path) -> dict:
    import tomllib  # Python >= 3.11

    return tomllib.loads(path.read_text())


def check_docker(repo: Path) -> int:
    rep = Report()
    workspace = load_toml(repo / "Cargo.toml")
    members = workspace.get("workspace", {}).get("members", [])
    packages: dict[str, set[str]] = {}  # package name -> binary names
    for member in members:
        manifest = repo / member / "Cargo.toml"
        if not rep.check(manifest.exists(), "Cargo.toml", f"workspace member {member} has no Cargo.toml"):
            continue
        doc = load_toml(manifest)
        name = doc["package"]["name"]
        bins = {b["name"] for b in doc.get("bin", [])}
        if (repo / member / "src" / "main.rs").exists():
            bins.add(name)
        packages[name] = bins

    dockerfiles = sorted((repo / "deploy" / "docker").glob("*.Dockerfile"))
    rep.check(bool(dockerfiles), "deploy/docker", "no *.Dockerfile found")
    for df in dockerfiles:
        where = str(df.relative_to(repo))
        patterns = dockerignore_patterns(df.with_name(df.name + ".dockerignore"))
        rep.check(bool(patterns), where, f"{df.name}.dockerignore is missing or empty (target/ would be sent)")
        rep.check(ignored("target", patterns), where, "its .dockerignore does not exclude target/")
        for needed in ["Cargo.toml", "Cargo.lock", *members]:
            rep.check(
                (repo / needed).exists() and not ignored(needed, patterns),
                where,
                f"{needed} is needed to build the workspace but is missing or excluded by the .dockerignore",
            )
        copied: list[str] = []
        built: list[str] = []
        stage_outputs: set[str] = set()
        for instr, (rest,) in dockerfile_instructions(df):
            if instr == "FROM":
                image = rest.split()[0]
                if "@sha256:" not in image:
                    tag = image.rsplit("/", 1)[-1].partition(":")[2]
                    rep.check(bool(tag) and tag != "latest", where, f"base image {image} has no pinned tag")
            elif instr in ("COPY", "ADD"):
                words = shlex.split(rest)
                flags = [w for w in words if w.startswith("--")]
                args = [w for w in words if not w.startswith("--")]
                if rest.lstrip().startswith("["):
                    args = json.loads(rest[rest.index("[") :])
                srcs = args[:-1]
                if any(f.startswith("--from=") for f in flags):
                    copied.extend(srcs)
                    continue
                for src in srcs:
                    rel = os.path.normpath(src)
                    if rel == ".":
                        rep.check(repo.is_dir(), where, "build context missing")
                        continue
                    rep.check((repo / rel).exists(), where, f"{instr} source {src} does not exist in the repository")
                    rep.check(not ignored(rel, patterns), where, f"{instr} source {src} is excluded by the .dockerignore")
            elif instr == "RUN":
                for m in re.finditer(r"cargo build[^&;|]*?-p\s+(\S+)", rest):
                    built.append(m.group(1))
                for m in re.finditer(r"target/release/([^\s;&|]+)", rest):
                    rep.check(
                        any(m.group(1) in bins for bins in packages.values()),
                        where,
                        f"target/release/{m.group(1)} is not a binary of any workspace package",
                    )
                stage_outputs.update(re.findall(r"/out/[^\s;&|]+", rest))
        rep.check(bool(built), where, "no `cargo build ... -p PACKAGE` found")
        for pkg in built:
            rep.check(pkg in packages, where, f"cargo build -p {pkg}: no such workspace package")
        for src in copied:
            if src.startswith("/out/"):
                rep.check(
                    any(src == o or src.startswith(o + "/") for o in stage_outputs),
                    where,
                    f"COPY --from source {src} is not produced by the builder stage",
                )
        print(f"  {where}: {len(built)} package(s) built ({', '.join(built)}), context sources and .dockerignore checked")

    for e in rep.errors:
        print(f"ERROR {e}")
    return 1 if rep.errors else 0


# ---------------------------------------------------------------------------
# Manifests


def kref(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def selector_matches(selector: dict | None, labels: dict) -> bool:
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_template(obj: dict) -> dict | None:
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return obj["spec"]["template"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return None


def walk_strings(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def schema_validate(objs: list[dict], version: str, schema_dir: Path, rep: Report) -> tuple[int, dict[str, int]]:
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    custom: dict[tuple[str, str], dict] = {}
    for f in sorted(schema_dir.glob("*.json")):
        schema = json.loads(f.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        props = schema["properties"]
        custom[(props["apiVersion"]["const"], props["kind"]["const"])] = schema

    builtin = 0
    by_custom: dict[str, int] = {}
    for obj in objs:
        where = kref(obj)
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in custom:
            validator = jsonschema.Draft202012Validator(custom[key])
            errs = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
            for e in errs:
                rep.error(where, f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}")
            by_custom[obj["kind"]] = by_custom.get(obj["kind"], 0) + 1
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            builtin += 1
        except ValidationError as e:
            rep.error(where, f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message} (Kubernetes {version})")
        except SchemaNotFoundError as e:
            rep.error(where, f"{e.message}, and no schema for it in {schema_dir}")
    return builtin, by_custom


def check_conventions(objs: list[dict], rep: Report) -> None:
    for obj in objs:
        where = kref(obj)
        meta = obj.get("metadata", {})
        labels = meta.get("labels") or {}
        rep.check("app.kubernetes.io/name" in labels, where, "no app.kubernetes.io/name label")
        rep.check(labels.get("app.kubernetes.io/part-of") == "tero", where, "no app.kubernetes.io/part-of=tero label")
        if obj["kind"] != "Namespace":
            rep.check(meta.get("namespace") == NAMESPACE, where, f"not in namespace {NAMESPACE}")
        tpl = pod_template(obj)
        if tpl is None:
            continue
        spec = tpl["spec"]
        pod_sc = spec.get("securityContext") or {}
        rep.check(
            (pod_sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
            where,
            "pod securityContext.seccompProfile is not RuntimeDefault",
        )
        for c in spec.get("initContainers", []) + spec["containers"]:
            cw = f"{where} container {c['name']}"
            image = c.get("image", "")
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            rep.check("@sha256:" in image or (tag and tag != "latest"), cw, f"image {image!r} has no pinned tag")
            res = c.get("resources") or {}
            for section in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    rep.check(r in (res.get(section) or {}), cw, f"no resources.{section}.{r}")
            sc = c.get("securityContext")
            if not rep.check(sc is not None, cw, "no securityContext"):
                continue
            rep.check(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation is not false")
            rep.check(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem is not true")
            rep.check(
                (sc.get("capabilities") or {}).get("drop") == ["ALL"], cw, "capabilities.drop is not [ALL]"
            )
            rep.check(
                sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, cw, "runAsNonRoot is not true"
            )
            ports = {p.get("name") for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                p = c.get(probe)
                if not p:
                    continue
                port = (p.get("httpGet") or p.get("tcpSocket") or p.get("grpc") or {}).get("port")
                if isinstance(port, str):
                    rep.check(port in ports, cw, f"{probe} uses port {port!r}, which the container does not declare")


def check_references(objs: list[dict], rep: Report) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    workloads = [o for o in objs if pod_template(o) is not None]

    def secret_has(name: str, key: str) -> bool:
        s = by_kind.get("Secret", {}).get(name)
        if s is not None:
            return key in (s.get("data") or {}) or key in (s.get("stringData") or {})
        return key in EXTERNAL_SECRETS.get(name, set())

    for w in workloads:
        where = kref(w)
        tpl = pod_template(w)
        spec = tpl["spec"]
        if w["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            rep.check(
                selector_matches(w["spec"]["selector"], tpl["metadata"].get("labels") or {}),
                where,
                "spec.selector does not match the pod template's labels",
            )
        sa = spec.get("serviceAccountName")
        if sa:
            rep.check(sa in by_kind.get("ServiceAccount", {}), where, f"ServiceAccount {sa} is not defined")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                rep.check(v["configMap"]["name"] in by_kind.get("ConfigMap", {}), where, f"volume {v['name']}: ConfigMap {v['configMap']['name']} is not defined")
            if "secret" in v:
                n = v["secret"]["secretName"]
                rep.check(n in by_kind.get("Secret", {}) or n in EXTERNAL_SECRETS, where, f"volume {v['name']}: Secret {n} is not defined")
            if "persistentVolumeClaim" in v:
                n = v["persistentVolumeClaim"]["claimName"]
                rep.check(n in by_kind.get("PersistentVolumeClaim", {}), where, f"volume {v['name']}: PersistentVolumeClaim {n} is not defined")
        for c in spec.get("initContainers", []) + spec["containers"]:
            cw = f"{where} container {c['name']}"
            for m in c.get("volumeMounts", []):
                rep.check(m["name"] in volumes, cw, f"volumeMount {m['name']} has no volume")
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    rep.check(secret_has(ref["name"], ref["key"]), cw, f"env {e['name']}: Secret {ref['name']} key {ref['key']} is neither defined nor a documented external Secret")
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and not ref.get("optional"):
                    cm = by_kind.get("ConfigMap", {}).get(ref["name"])
                    rep.check(cm is not None and ref["key"] in (cm.get("data") or {}), cw, f"env {e['name']}: ConfigMap {ref['name']} key {ref['key']} is not defined")

    for svc in by_kind.get("Service", {}).values():
        where = kref(svc)
        pods = [pod_template(w) for w in workloads if selector_matches({"matchLabels": svc["spec"].get("selector")}, pod_template(w)["metadata"].get("labels") or {})]
        if not rep.check(bool(pods), where, "selects no pod template"):
            continue
        for p in svc["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            if isinstance(tp, str):
                declared = {cp.get("name") for tpl in pods for c in tpl["spec"]["containers"] for cp in c.get("ports", [])}
                rep.check(tp in declared, where, f"targetPort {tp!r} is not a container port of the pods it selects")

    for sm in by_kind.get("ServiceMonitor", {}).values():
        where = kref(sm)
        svcs = [s for s in by_kind.get("Service", {}).values() if selector_matches(sm["spec"]["selector"], s["metadata"].get("labels") or {})]
        if not rep.check(bool(svcs), where, "selects no Service"):
            continue
        names = {p.get("name") for s in svcs for p in s["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            if "port" in ep:
                rep.check(ep["port"] in names, where, f"endpoint port {ep['port']!r} is not a port of the Service(s) it selects")

    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for o in by_kind.get(kind, {}).values():
            sel = o["spec"].get("selector") if kind == "PodDisruptionBudget" else o["spec"].get("podSelector")
            rep.check(
                any(selector_matches(sel, pod_template(w)["metadata"].get("labels") or {}) for w in workloads),
                kref(o),
                "selects no pod template",
            )
    for pdb in by_kind.get("PodDisruptionBudget", {}).values():
        for w in workloads:
            if selector_matches(pdb["spec"]["selector"], pod_template(w)["metadata"].get("labels") or {}):
                min_av = pdb["spec"].get("minAvailable")
                if isinstance(min_av, int):
                    rep.check(w["spec"].get("replicas", 1) > min_av, kref(pdb), f"minAvailable {min_av} blocks every eviction of {kref(w)} ({w['spec'].get('replicas', 1)} replicas)")


def check_edge_configs(objs: list[dict], rep: Report) -> list[tuple[str, str, dict]]:
    """Edge config.json files in ConfigMaps: JSON, required keys, a grpc/http
    provider pointing at a Service of the render, and every `${VAR}` set by
    the container that mounts it. Returns (configmap, json, env) to run
    `tero-edge --check-config` on."""
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    found = []
    for cm in (o for o in objs if o["kind"] == "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            if key != "config.json":
                continue
            where = f"{kref(cm)} {key}"
            try:
                cfg = json.loads(text)
            except json.JSONDecodeError as e:
                rep.error(where, f"not JSON: {e}")
                continue
            rep.check(bool(cfg.get("upstream_url") or cfg.get("metrics_url")), where, "no upstream_url")
            for prov in cfg.get("policy_providers", []):
                url = prov.get("url", "")
                m = re.match(r"^https?://([^:/]+)(?::(\d+))?", url)
                if prov.get("type") in ("grpc", "http") and rep.check(bool(m), where, f"provider {prov.get('id')}: bad url {url!r}"):
                    host, port = m.group(1), int(m.group(2) or 80)
                    svc_name = host.split(".")[0]
                    svc = services.get(svc_name)
                    if rep.check(svc is not None, where, f"provider {prov.get('id')}: no Service {svc_name} in the render"):
                        rep.check(any(p["port"] == port for p in svc["spec"]["ports"]), where, f"provider {prov.get('id')}: Service {svc_name} has no port {port}")
            used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))
            unknown = used - EDGE_CONFIG_VARS
            rep.check(not unknown, where, f"undocumented ${{VAR}} substitutions: {sorted(unknown)}")
            mounted = False
            for w in (o for o in objs if pod_template(o) is not None):
                spec = pod_template(w)["spec"]
                vols = {v["name"] for v in spec.get("volumes", []) if (v.get("configMap") or {}).get("name") == cm["metadata"]["name"]}
                for c in spec["containers"]:
                    if not any(m["name"] in vols for m in c.get("volumeMounts", [])):
                        continue
                    mounted = True
                    env = {e["name"] for e in c.get("env", [])}
                    missing = used - env
                    rep.check(not missing, f"{kref(w)} container {c['name']}", f"mounts {cm['metadata']['name']} but does not set {sorted(missing)} (the Edge stops at start-up)")
                    values = {e["name"]: e.get("value", f"check-{e['name'].lower()}") for e in c.get("env", [])}
                    found.append((where, text, values))
            rep.check(mounted, where, "mounted by no container")
    return found


def check_prometheus_configs(objs: list[dict], rep: Report) -> int:
    jobs = 0
    for cm in (o for o in objs if o["kind"] == "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            if not key.endswith((".yml", ".yaml")):
                continue
            where = f"{kref(cm)} {key}"
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as e:
                rep.error(where, f"not YAML: {e}")
                continue
            if not isinstance(doc, dict) or "scrape_configs" not in doc:
                continue
            names = [j.get("job_name") for j in doc["scrape_configs"]]
            rep.check(len(names) == len(set(names)) and all(names), where, f"job names missing or repeated: {names}")
            for j in doc["scrape_configs"]:
                jobs += 1
                jw = f"{where} job {j.get('job_name')}"
                unknown = set(j) - {"job_name", "metrics_path", "scheme", "scrape_interval", "scrape_timeout", "kubernetes_sd_configs", "relabel_configs", "metric_relabel_configs", "honor_labels", "params", "authorization", "tls_config"}
                rep.check(not unknown, jw, f"unexpected keys {sorted(unknown)}")
                rep.check(str(j.get("metrics_path", "/metrics")).startswith("/"), jw, "metrics_path must start with /")
                for sd in j.get("kubernetes_sd_configs", []):
                    rep.check(sd.get("role") in ("pod", "service", "endpoints", "endpointslice", "node", "ingress"), jw, f"bad kubernetes_sd role {sd.get('role')!r}")
                relabels = j.get("relabel_configs") or []
                rep.check(any(r.get("action") == "keep" for r in relabels), jw, "no `keep` relabel rule: it would scrape every pod of the cluster")
                for r in relabels:
                    rep.check(r.get("action", "replace") in ("replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal"), jw, f"bad relabel action {r.get('action')!r}")
                    for rx in [r.get("regex")] if r.get("regex") is not None else []:
                        try:
                            re.compile(str(rx))
                        except re.error as e:
                            rep.error(jw, f"bad regex {rx!r}: {e}")
    return jobs


def check_placeholders(objs: list[dict], rep: Report) -> int:
    allowed_seen = 0
    for obj in objs:
        where = kref(obj)
        for path, value in walk_strings(obj):
            if not PLACEHOLDER_RE.search(value):
                continue
            key = (obj["kind"], obj["metadata"]["name"], path)
            if ALLOWED_PLACEHOLDERS.get(key) == value:
                allowed_seen += 1
                continue
            if obj["kind"] == "ConfigMap" and path == "data.config.json":
                # Edge config: only the documented ${VAR}s (checked above).
                rest = re.sub(r"\$\{(" + "|".join(EDGE_CONFIG_VARS) + r")\}", "", value)
                if not PLACEHOLDER_RE.search(rest):
                    continue
                value = rest
            m = PLACEHOLDER_RE.search(value)
            rep.error(where, f"{path}: leftover placeholder {m.group(0)!r}")
    return allowed_seen


def check_manifests(overlay: str, rendered: Path, version: str, schema_dir: Path) -> int:
    rep = Report()
    objs = [o for o in yaml.safe_load_all(rendered.read_text()) if o]
    kinds: dict[str, int] = {}
    for o in objs:
        kinds[o.get("kind", "?")] = kinds.get(o.get("kind", "?"), 0) + 1
    builtin, by_custom = schema_validate(objs, version, schema_dir, rep)
    check_conventions(objs, rep)
    check_references(objs, rep)
    edge_configs = check_edge_configs(objs, rep)
    jobs = check_prometheus_configs(objs, rep)
    placeholders = check_placeholders(objs, rep)

    edge_bin = os.environ.get("TERO_EDGE_BIN")
    if edge_bin:
        import tempfile

        for where, text, env in edge_configs:
            with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
                f.write(text)
                f.flush()
                r = subprocess.run([edge_bin, f.name, "--check-config"], env={"PATH": os.environ.get("PATH", ""), **env}, capture_output=True, text=True)
                if not rep.check(r.returncode == 0, where, f"tero-edge --check-config: {r.stderr.strip()}"):
                    continue
                warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
                rep.check(not warnings, where, f"tero-edge --check-config warns: {warnings}")

    custom = ", ".join(f"{n} {k}" for k, n in sorted(by_custom.items())) or "none"
    print(f"  {overlay}: {len(objs)} objects ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})")
    print(f"  {overlay}: {builtin} against the Kubernetes {version} schemas (strict), {sum(by_custom.values())} against deploy/kubernetes/schemas ({custom})")
    print(
        f"  {overlay}: references, securityContext/resources/probes, {len(edge_configs)} Edge config(s)"
        + (" (tero-edge --check-config)" if edge_bin else "")
        + f", {jobs} Prometheus scrape job(s), {placeholders} documented placeholder(s)"
    )
    for e in rep.errors:
        print(f"ERROR {overlay}: {e}")
    return 1 if rep.errors else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "docker":
        return check_docker(Path(argv[2]))
    if len(argv) == 6 and argv[1] == "manifests":
        return check_manifests(argv[2], Path(argv[3]), argv[4], Path(argv[5]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
