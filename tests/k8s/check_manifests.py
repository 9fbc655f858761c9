#!/usr/bin/env python3
"""Offline checks of the rendered Kubernetes manifests (k8s/) against their schemas, spin.toml, sql/,
openapi.yaml, the Pod Security Standards, the intended network reachability and checkov.

Usage (tests/k8s/check.sh runs it):
  check_manifests.py --repo REPO --crds DIR --secrets SECRETS.yaml --checkov BIN
                     [--render-failure NAME=FILE]... RENDER.yaml...

Each RENDER.yaml is one `kubectl kustomize` output (k8s/, or k8s/ with an optional component), checked
on its own together with SECRETS.yaml, the Secrets that `k8s/create-secrets.sh --print` makes of
k8s/secrets.env.example, exactly as README.md tells users to make them of k8s/secrets.env. BIN is
the checkov executable, run with tests/k8s/checkov.yaml on every render.

Every check is one function below, registered with @check(family, detail); a family groups the
checks of one concern. The self-test at the end breaks copies of the first render on purpose and
expects each break to fail a check of the named family, so that the checks are known to be able to
fail. Prints one line per check and ends with `N passed, M failed`; exits 1 when M > 0.
"""

from __future__ import annotations

import argparse
import base64
import copy
import ipaddress
import json
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.parse
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import jsonschema
import kubernetes_validate
import yaml

KUBE_VERSION = "1.32"  # the kubectl here is 1.32; SpinKube supports current Kubernetes releases
SPIN_POOL_PER_POD = 64  # Spin 3.6 Postgres pool: at most 64 connections per pod (factor-outbound-pg)
PG_RESERVED = 3  # PostgreSQL's superuser_reserved_connections default
MIGRATION_CONNECTIONS = 1  # the migration Job (psql: its bootstrap step, then its migrate step)
MIGRATOR = "event_platform_migrator"  # the migration role (sql/bootstrap.sql)
DB_ROLES = {"event-fn": "event_fn", "notify-fn": "notify_fn"}  # each component's role (sql/004_roles.sql)
POSTGRES_UID = 999  # the postgres user (and group) of the official image
HIGH_UID = 10000  # checkov CKV_K8S_40's bound; skipped in checkov.yaml for PostgreSQL only
HEALTH_PATH = "/.well-known/spin/health"
SPIN_HTTP_PORT = 80  # spin-operator's container port (pkg/spinapp DefaultHTTPPort)
APP_NAME_LABEL = "core.spinkube.dev/app-name"  # spin-operator pkg/spinapp/spinapp.go NameLabelKey
NS_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server
PSA = "pod-security.kubernetes.io/"
CRD_KINDS = {"SpinApp": "core.spinkube.dev_spinapps.yaml",
             "SpinAppExecutor": "core.spinkube.dev_spinappexecutors.yaml"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "RuntimeClass",
                  "PersistentVolume", "CustomResourceDefinition", "PriorityClass"}
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")
TEMPLATE = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")

# The ranges notify-fn's webhooks must never reach (issue 11, "SSRF, beyond literal addresses"):
# private, CGNAT, loopback, link-local (cloud metadata), "this network", and the IPv6 counterparts.
# The cluster's own ranges come from the knob k8s/spin/cluster-ranges.yaml.
NEVER_WEBHOOK = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "::1/128", "fc00::/7", "fe80::/10")]
PUBLIC_ADDRESSES = ["93.184.215.14", "2606:4700:4700::1111"]  # stand-ins for webhook receivers
CLOUD_METADATA = "169.254.169.254"

# Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards), the fields
# these manifests can touch.
BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
                "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}


class Failed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise Failed(message)


# ---------------------------------------------------------------------------------------------
# Inputs: the repository (spin.toml, sql/, openapi.yaml, the cluster-range knob), the CRD schemas,
# checkov


class Repo:
    """What the checks need from the repository beside the renders."""

    def __init__(self, root: Path):
        self.root = root
        manifest = tomllib.loads((root / "spin.toml").read_text())
        self.variables: dict = manifest.get("variables", {})
        self.components: dict = manifest.get("component", {})
        self.routes = []  # (route, component)
        for trigger in manifest.get("trigger", {}).get("http", []):
            route = trigger.get("route")
            if isinstance(route, str):
                self.routes.append((route, trigger["component"]))
        self.sql_dir = root / "sql"
        self.checkov_config = root / "tests" / "k8s" / "checkov.yaml"

    def needed(self, component: str) -> set[str]:
        """App variables the component maps or uses in its allowed_outbound_hosts templates."""
        comp = self.components[component]
        names = set()
        for value in comp.get("variables", {}).values():
            names |= set(TEMPLATE.findall(value))
        for host in comp.get("allowed_outbound_hosts", []):
            names |= set(TEMPLATE.findall(host))
        return names

    def migration_files(self) -> dict[str, bytes]:
        files = {p.name: p.read_bytes() for p in sorted(self.sql_dir.glob("[0-9]*.sql"))}
        for script in ("migrate.sh", "bootstrap.sql"):
            files[script] = (self.sql_dir / script).read_bytes()
        return files

    @cached_property
    def body_limit(self) -> int:
        """The API's request body limit, from openapi.yaml's 413 response: "... (65,536 bytes)"."""
        spec = yaml.safe_load((self.root / "openapi.yaml").read_text())
        text = spec["components"]["responses"]["TooLarge"]["description"]
        m = re.search(r"\(([\d,]+) bytes\)", text)
        expect(m, f"openapi.yaml's TooLarge response names no byte count: {text!r}")
        return int(m.group(1).replace(",", ""))

    @cached_property
    def cluster_ranges(self) -> list:
        """The pod and Service ranges of the knob k8s/spin/cluster-ranges.yaml."""
        ops = yaml.safe_load((self.root / "k8s" / "spin" / "cluster-ranges.yaml").read_text()) or []
        return [ipaddress.ip_network(op["value"]) for op in ops]


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def strictify(schema):
    """CRD schemas prune unknown fields; `kubectl apply` (strict field validation) rejects them."""
    if isinstance(schema, dict):
        schema = {k: strictify(v) for k, v in schema.items()}
        if (schema.get("type") == "object" and "properties" in schema
                and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strictify(s) for s in schema]
    return schema


def load_crd_schemas(crds: Path) -> dict:
    schemas = {}
    for kind, filename in CRD_KINDS.items():
        crd = yaml.safe_load((crds / filename).read_text())
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[(api_version, kind)] = strictify(version["schema"]["openAPIV3Schema"])
    return schemas


def run_checkov(binary: Path, config: Path, docs) -> dict:
    """checkov's JSON report on docs, run with the committed config."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "render.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        proc = subprocess.run([str(binary), "--config-file", str(config), "-f", str(path), "-o", "json"],
                              capture_output=True, text=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise Failed(f"checkov exited {proc.returncode} without a report: {proc.stderr.strip()[-300:]}")
    reports = report if isinstance(report, list) else [report]
    expect(all(r.get("check_type") == "kubernetes" for r in reports),
           f"checkov ran {[r.get('check_type') for r in reports]}, want only kubernetes")
    return reports[0]


# ---------------------------------------------------------------------------------------------
# One rendered set and what the checks read from it


def ns_of(doc):
    return doc.get("metadata", {}).get("namespace")


def name_of(doc):
    return doc.get("metadata", {}).get("name")


def ident(doc):
    return f"{doc.get('kind')}/{name_of(doc)}"


def label(doc):
    """ident plus the namespace: names repeat across the app's two namespaces."""
    return f"{ident(doc)} in {ns_of(doc)}" if ns_of(doc) else ident(doc)


@dataclass
class Workload:
    """A pod template: a workload's, or the one spin-operator makes of a SpinApp."""
    doc: dict
    namespace: str
    labels: dict
    podspec: dict

    @property
    def ident(self):
        return ident(self.doc)

    @property
    def is_spinapp(self):
        return self.doc.get("kind") == "SpinApp"

    @property
    def containers(self):
        return list(self.podspec.get("initContainers") or []) + list(self.podspec.get("containers") or [])


def operator_pod(app) -> tuple[dict, dict]:
    """The labels and pod spec spin-operator v0.6.1 gives a SpinApp's pods (constructDeployment and
    ConstructVolumeMountsForApp): podLabels plus its own two labels; one container named after the
    app on port 80 with the app's resources and volume mounts, the service account, the app's
    volumes (and Secret volumes of its own); no securityContext at all."""
    spec = app["spec"]
    labels = dict(spec.get("podLabels") or {})
    labels[APP_NAME_LABEL] = name_of(app)
    labels[f"core.spinkube.dev/app.{name_of(app)}.status"] = "ready"
    container = {"name": name_of(app), "image": spec.get("image"),
                 "ports": [{"name": "http-app", "containerPort": SPIN_HTTP_PORT}],
                 "resources": spec.get("resources") or {}, "volumeMounts": spec.get("volumeMounts") or []}
    podspec = {"containers": [container], "volumes": list(spec.get("volumes") or [])}
    if spec.get("serviceAccountName"):
        podspec["serviceAccountName"] = spec["serviceAccountName"]
    return labels, podspec


class Render:
    def __init__(self, docs, secrets, repo: Repo, crd_schemas, checkov: Path | None):
        self.docs = docs
        self.secrets = secrets
        self.repo = repo
        self.crd_schemas = crd_schemas
        self.checkov = checkov

    def of_kind(self, kind):
        return [d for d in self.docs if d.get("kind") == kind]

    @cached_property
    def namespaces(self) -> dict:
        return {name_of(n): n for n in self.of_kind("Namespace")}

    @cached_property
    def workloads(self) -> list[Workload]:
        out = []
        for d in self.docs:
            kind, spec = d.get("kind"), d.get("spec", {})
            if kind == "SpinApp":
                labels, podspec = operator_pod(d)
                out.append(Workload(d, ns_of(d), labels, podspec))
            elif kind in WORKLOAD_KINDS:
                tmpl = spec.get("jobTemplate", {}).get("spec", {}) if kind == "CronJob" else spec
                tmpl = tmpl.get("template", {})
                out.append(Workload(d, ns_of(d), tmpl.get("metadata", {}).get("labels") or {},
                                    tmpl.get("spec", {})))
        return out

    def workload(self, doc) -> Workload:
        return [w for w in self.workloads if w.doc is doc][0]

    def spinapps_for(self, component):
        return [d for d in self.of_kind("SpinApp") if component in (d["spec"].get("components") or [])]

    def spinapp(self, component):
        apps = self.spinapps_for(component)
        expect(len(apps) == 1, f"{len(apps)} SpinApps keep component {component}, want 1")
        return apps[0]

    def postgres(self):
        """The Service in front of the PostgreSQL StatefulSet's pods, and that StatefulSet."""
        sts = [d for d in self.of_kind("StatefulSet")
               if any("postgres" in c.get("image", "") for c in d["spec"]["template"]["spec"]["containers"])]
        expect(len(sts) == 1, f"{len(sts)} PostgreSQL StatefulSets, want 1")
        sts = sts[0]
        labels = sts["spec"]["template"]["metadata"].get("labels") or {}
        svcs = [s for s in self.of_kind("Service") if ns_of(s) == ns_of(sts)
                and s["spec"].get("selector") and selector_matches({"matchLabels": s["spec"]["selector"]}, labels)
                and s["spec"].get("type", "ClusterIP") == "ClusterIP"]
        expect(len(svcs) == 1, f"{len(svcs)} ClusterIP Services select the PostgreSQL pods, want 1")
        return svcs[0], sts

    def migration_job(self):
        jobs = [j for j in self.of_kind("Job")
                if any("/migrations/migrate.sh /migrations" in " ".join(c_.get("command") or [])
                       for c_ in j["spec"]["template"]["spec"]["containers"])]
        expect(len(jobs) == 1, f"{len(jobs)} Jobs run `sh /migrations/migrate.sh /migrations`, want 1")
        return jobs[0]

    def dispatch_cronjob(self):
        cron = [j for j in self.of_kind("CronJob")
                if "/notifications/dispatch" in yaml.safe_dump(j["spec"]["jobTemplate"])]
        expect(len(cron) == 1, f"{len(cron)} CronJobs call /notifications/dispatch, want 1")
        return cron[0]

    def secret_in(self, namespace):
        found = [s for s in self.secrets if ns_of(s) == namespace]
        expect(len(found) == 1, f"{len(found)} Secrets made for namespace {namespace}, want 1")
        return found[0]

    @cached_property
    def policies(self):
        return self.of_kind("NetworkPolicy")


def selector_matches(selector, labels) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against a label map; {} matches all."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def secret_data(secret):
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def env_value(container, name):
    for env in container.get("env") or []:
        if env.get("name") == name:
            return env
    return None


def variable(app, name):
    for var in app["spec"].get("variables") or []:
        if var.get("name") == name:
            return var
    return None


def literal(app, name):
    var = variable(app, name)
    expect(var is not None, f"{ident(app)} does not set {name}")
    expect("value" in var, f"{ident(app)} sets {name} from a reference, want a literal value")
    return var["value"]


def service_url(app):
    return f"http://{name_of(app)}.{ns_of(app)}.svc.cluster.local"


@dataclass
class SecretUse:
    where: str
    namespace: str
    name: str
    key: str | None  # None: every key of the Secret
    optional: bool


def secret_uses(render: Render) -> list[SecretUse]:
    """Every read of a Secret: SpinApp variables, container env and envFrom, Secret volumes."""
    uses = []
    for app in render.of_kind("SpinApp"):
        for var in app["spec"].get("variables") or []:
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                uses.append(SecretUse(f"{ident(app)} variable {var['name']}", ns_of(app), ref.get("name"),
                                      ref.get("key"), ref.get("optional", False)))
    for w in render.workloads:
        for c in w.containers:
            for env in c.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    uses.append(SecretUse(f"{w.ident} {c['name']} env {env['name']}", w.namespace,
                                          ref.get("name"), ref.get("key"), ref.get("optional", False)))
            for src in c.get("envFrom") or []:
                if "secretRef" in src:
                    uses.append(SecretUse(f"{w.ident} {c['name']} envFrom", w.namespace,
                                          src["secretRef"].get("name"), None, src["secretRef"].get("optional", False)))
        for vol in w.podspec.get("volumes") or []:
            sec = vol.get("secret")
            if sec is None:
                continue
            keys = [item["key"] for item in sec.get("items") or []] or [None]
            for key in keys:
                uses.append(SecretUse(f"{w.ident} volume {vol['name']}", w.namespace, sec.get("secretName"),
                                      key, sec.get("optional", False)))
    return uses


def secret_file(w: Workload, container, key):
    """The path at which container reads Secret key `key` through a Secret volume, or None."""
    volumes = {v["name"]: v["secret"] for v in w.podspec.get("volumes") or [] if "secret" in v}
    for mount in container.get("volumeMounts") or []:
        sec = volumes.get(mount["name"])
        for item in (sec or {}).get("items") or []:
            if item["key"] == key:
                return f"{mount['mountPath'].rstrip('/')}/{item['path']}"
    return None


# ---------------------------------------------------------------------------------------------
# The check registry


@dataclass
class Check:
    family: str
    detail: str  # with `{}` for the item's label when `each` is set
    fn: Callable
    each: Callable | None  # render -> [(label, item)]: one check per item


CHECKS: list[Check] = []


def check(family, detail, each=None):
    def register(fn):
        CHECKS.append(Check(family, detail, fn, each))
        return fn
    return register


def run(render: Render, family=None):
    """[(family, detail, error or None)] of every registered check (of one family if given)."""
    results = []
    for c in CHECKS:
        if family is not None and c.family != family:
            continue
        try:
            items = [(c.detail, None)] if c.each is None else [(c.detail.format(label), item)
                                                               for label, item in c.each(render)]
        except Exception as e:  # a crash while listing the items is a failure of the check
            results.append((c.family, c.detail.format("*"), f"{type(e).__name__}: {e}"))
            continue
        for detail, item in items:
            try:
                c.fn(render) if c.each is None else c.fn(render, item)
                results.append((c.family, detail, None))
            except Failed as e:
                results.append((c.family, detail, str(e)))
            except Exception as e:  # a crash in a check is a failure of that check
                results.append((c.family, detail, f"{type(e).__name__}: {e}"))
    return results


# ---------------------------------------------------------------------------------------------
# Schemas


def core_docs(r: Render):
    return [(label(d), d) for d in r.docs if (d.get("apiVersion"), d.get("kind")) not in r.crd_schemas]


def crd_docs(r: Render):
    return [(label(d), d) for d in r.docs if (d.get("apiVersion"), d.get("kind")) in r.crd_schemas]


@check("schema", "{}", each=core_docs)
def core_schema(r: Render, doc):
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.utils.SchemaNotFoundError as e:
        raise Failed(e.message)
    except kubernetes_validate.ValidationError as e:
        raise Failed(f"{'/'.join(map(str, e.path))}: {e.message}")


@check("crd", "{}", each=crd_docs)
def crd_schema(r: Render, doc):
    schema = r.crd_schemas[(doc.get("apiVersion"), doc.get("kind"))]
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    expect(not errors, "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:3]))
    expect(DNS_LABEL.match(name_of(doc) or ""), "name is not a DNS label")


@check("namespace", "every object in one of the app's namespaces, and each Secret made for one")
def in_app_namespaces(r: Render):
    expect(r.namespaces, "no Namespace object")
    wrong = [ident(d) for d in r.docs if d.get("kind") not in CLUSTER_SCOPED and ns_of(d) not in r.namespaces]
    expect(not wrong, f"not in one of the namespaces {sorted(r.namespaces)}: {', '.join(wrong)}")
    stray = [ns_of(s) for s in r.secrets if ns_of(s) not in r.namespaces]
    expect(not stray, f"Secrets made for namespaces the render does not have: {stray}")


# ---------------------------------------------------------------------------------------------
# Pod Security: `restricted` enforced on everything but the SpinApps, whose pods spin-operator
# makes without a securityContext; their namespace enforces `baseline` (README.md, "Pod Security")


def psa_levels(r: Render, namespace):
    labels = r.namespaces[namespace]["metadata"].get("labels") or {}
    return {mode: labels.get(PSA + mode) for mode in ("enforce", "audit", "warn")}


def baseline_violations(podspec) -> list[str]:
    out = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if podspec.get(key):
            out.append(key)
    pod_sc = podspec.get("securityContext") or {}
    if (pod_sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append("pod seccompProfile Unconfined")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"sysctl {sysctl.get('name')}")
    out += [f"volume {v['name']}: hostPath" for v in podspec.get("volumes") or [] if "hostPath" in v]
    containers = list(podspec.get("initContainers") or []) + list(podspec.get("containers") or [])
    for c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        extra = set((sc.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if extra:
            out.append(f"{c['name']}: adds capabilities {sorted(extra)}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"{c['name']}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{c['name']}: procMount {sc['procMount']}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"{c['name']}: seccompProfile Unconfined")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            out.append(f"{c['name']}: appArmorProfile Unconfined")
    return out


def restricted_violations(podspec) -> list[str]:
    out = baseline_violations(podspec)
    pod_sc = podspec.get("securityContext") or {}
    out += [f"volume {v['name']}: not a restricted volume type" for v in podspec.get("volumes") or []
            if not set(v) - {"name"} <= RESTRICTED_VOLUMES]
    if pod_sc.get("runAsUser") == 0:
        out.append("pod runAsUser 0")
    containers = list(podspec.get("initContainers") or []) + list(podspec.get("containers") or [])
    for c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation is not false")
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            out.append(f"{c['name']}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            out.append(f"{c['name']}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile {seccomp}, want RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{c['name']}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: adds capabilities beyond NET_BIND_SERVICE")
    return out


def own_pods(r: Render):
    """The pod templates of the render's own workloads (all but the SpinApps')."""
    return [(w.ident, w) for w in r.workloads if not w.is_spinapp]


def spinapp_pods(r: Render):
    return [(w.ident, w) for w in r.workloads if w.is_spinapp]


@check("pod-security", "every Namespace sets enforce, audit and warn levels")
def psa_labels(r: Render):
    for ns in r.namespaces:
        levels = psa_levels(r, ns)
        bad = {m: v for m, v in levels.items() if v not in ("privileged", "baseline", "restricted")}
        expect(not bad, f"namespace {ns}: {bad}")


@check("pod-security", "the namespace of every pod but the SpinApps' enforces restricted")
def restricted_enforced(r: Render):
    for w in r.workloads:
        if not w.is_spinapp:
            level = psa_levels(r, w.namespace)["enforce"]
            expect(level == "restricted", f"{w.ident} is in {w.namespace}, which enforces {level}")


@check("pod-security", "the SpinApps' namespace enforces baseline and audits and warns at restricted")
def spinapp_namespace_levels(r: Render):
    # restricted would refuse the operator's pods; anything weaker than baseline gives up for nothing
    want = {"enforce": "baseline", "audit": "restricted", "warn": "restricted"}
    for ns in {w.namespace for w in r.workloads if w.is_spinapp}:
        expect(psa_levels(r, ns) == want, f"namespace {ns}: {psa_levels(r, ns)}, want {want}")


@check("pod-security", "{}: meets the restricted Pod Security Standard", each=own_pods)
def pod_restricted(r: Render, w: Workload):
    bad = restricted_violations(w.podspec)
    expect(not bad, "; ".join(bad))


@check("pod-security", "{}: the pod spin-operator makes meets baseline", each=spinapp_pods)
def spinapp_pod_baseline(r: Render, w: Workload):
    bad = baseline_violations(w.podspec)
    expect(not bad, "; ".join(bad))


# ---------------------------------------------------------------------------------------------
# Hardening beyond the Pod Security Standards


@check("hardening", "{}: read-only root, requests and limits, no service-account token, high uid", each=own_pods)
def pod_hardening(r: Render, w: Workload):
    expect(w.podspec.get("automountServiceAccountToken") is False, "automountServiceAccountToken is not false")
    pod_sc = w.podspec.get("securityContext") or {}
    _svc, sts = r.postgres()
    for c in w.containers:
        sc = c.get("securityContext") or {}
        expect(sc.get("readOnlyRootFilesystem") is True, f"{c['name']}: readOnlyRootFilesystem is not true")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(res.get(part) or {})
            expect(not missing, f"{c['name']}: no {part} for {sorted(missing)}")
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if w.doc is sts:
            expect(uid == POSTGRES_UID, f"{c['name']}: runs as {uid}, want the image's postgres user {POSTGRES_UID}")
        else:  # checkov.yaml skips CKV_K8S_40 for PostgreSQL's sake only
            expect(uid is not None and uid >= HIGH_UID, f"{c['name']}: runs as uid {uid}, want >= {HIGH_UID}")
    if w.doc.get("kind") == "StatefulSet" and w.doc["spec"].get("volumeClaimTemplates"):
        expect(pod_sc.get("fsGroup") is not None, "a persistent volume but no fsGroup")


@check("hardening", "{}: no service-account token, resource requests and a memory limit", each=spinapp_pods)
def spinapp_hardening(r: Render, w: Workload):
    sa_name = w.podspec.get("serviceAccountName")
    expect(sa_name, "names no serviceAccountName: the namespace's default account mounts a token")
    sas = [s for s in r.of_kind("ServiceAccount") if name_of(s) == sa_name and ns_of(s) == w.namespace]
    expect(sas, f"ServiceAccount {sa_name} is not in the render")
    expect(sas[0].get("automountServiceAccountToken") is False,
           f"ServiceAccount {sa_name} does not set automountServiceAccountToken: false")
    res = w.containers[0].get("resources") or {}
    missing = {"cpu", "memory"} - set(res.get("requests") or {})
    expect(not missing, f"no requests for {sorted(missing)}")
    expect((res.get("limits") or {}).get("memory"), "no memory limit")


# ---------------------------------------------------------------------------------------------
# Secrets


@check("secrets", "no Secret in the render (users create them from k8s/secrets.env)")
def no_committed_secret(r: Render):
    found = [ident(d) for d in r.of_kind("Secret")]
    expect(not found, f"the render holds Secrets ({', '.join(found)}): secret values would be committed")


@check("secrets", "k8s/secrets.env.example holds placeholders only")
def example_placeholders(r: Render):
    for secret in r.secrets:
        # An empty value is an optional setting left unset (the rotation and read-only tokens).
        real = [k for k, v in secret_data(secret).items() if v and "CHANGE_ME" not in v]
        expect(not real, f"k8s/secrets.env.example holds values that are not placeholders: {real}")


@check("secrets", "every Secret read names a key of its namespace's Secret, never optionally")
def reads_resolve(r: Render):
    uses = secret_uses(r)
    expect(uses, "no Secret read at all")
    for use in uses:
        secret = r.secret_in(use.namespace)
        expect(use.name == name_of(secret), f"{use.where} names Secret {use.name}, not {name_of(secret)}")
        expect(use.key is None or use.key in secret_data(secret),
               f"{use.where} wants key {use.key}, which k8s/create-secrets.sh does not put in {use.namespace}")
        expect(not use.optional, f"{use.where} is optional: a missing secret would go unnoticed")


@check("secrets", "each namespace's Secret holds only keys its pods read")
def no_surplus_keys(r: Render):
    uses = secret_uses(r)
    for secret in r.secrets:
        read = {u.key for u in uses if u.namespace == ns_of(secret) and u.name == name_of(secret)}
        if None in read:
            continue
        surplus = set(secret_data(secret)) - read
        expect(not surplus, f"the Secret in {ns_of(secret)} holds {sorted(surplus)}, which no pod there reads")


def secret_variables(r: Render):
    return [(v, v) for v, spec in r.repo.variables.items() if spec.get("secret")]


@check("secrets", "secret variable {} only from a secretKeyRef, and empty where no component uses it",
       each=secret_variables)
def secret_from_ref(r: Render, var):
    for app in r.of_kind("SpinApp"):
        v = variable(app, var)
        if v is None:
            continue
        kept = app["spec"].get("components") or []
        if not any(var in r.repo.needed(comp) for comp in kept if comp in r.repo.components):
            # Set only because Spin wants every required variable (another function's database
            # URL): its secret stays out of this pod.
            expect(v.get("value") == "", f"{ident(app)} sets secret variable {var}, which it does not use, "
                                         "to more than an empty value")
            continue
        expect("value" not in v, f"{ident(app)} sets secret variable {var} as a literal value")
        expect((v.get("valueFrom") or {}).get("secretKeyRef"),
               f"{ident(app)} sets secret variable {var} other than from a secretKeyRef")


# ---------------------------------------------------------------------------------------------
# spin.toml: components, variables, image, executor, health


@check("components", "one SpinApp per spin.toml component, each keeping only it")
def components_split(r: Render):
    apps = r.of_kind("SpinApp")
    expect(apps, "no SpinApp")
    for app in apps:
        comps = app["spec"].get("components")
        expect(comps and len(comps) == 1, f"{ident(app)} keeps {comps}, want exactly one component")
        expect(comps[0] in r.repo.components, f"{ident(app)} keeps {comps[0]}, not a spin.toml component")
    for comp in r.repo.components:
        r.spinapp(comp)


@check("variables", "{}: every variable it maps or uses is set",
       each=lambda r: [(c, c) for c in r.repo.components])
def variables_set(r: Render, comp):
    app = r.spinapp(comp)
    names = [v.get("name") for v in app["spec"].get("variables") or []]
    expect(len(names) == len(set(names)), f"{ident(app)} sets a variable twice: {names}")
    unknown = set(names) - set(r.repo.variables)
    expect(not unknown, f"{ident(app)} sets variables spin.toml does not declare: {sorted(unknown)}")
    missing = r.repo.needed(comp) - set(names)
    expect(not missing, f"{ident(app)} does not set {sorted(missing)} (component {comp} uses them)")
    for v in app["spec"].get("variables") or []:
        expect(("value" in v) != ("valueFrom" in v), f"{ident(app)} {v.get('name')}: want value or valueFrom")


@check("variables", "{}: every required spin.toml variable has a value",
       each=lambda r: [(c, c) for c in r.repo.components])
def required_set(r: Render, comp):
    # Spin 3.6 resolves every app variable at start (crates/trigger/src/cli/variable.rs,
    # ensure_required_variables_resolvable), whichever components the SpinApp keeps: one unset
    # stops the pod.
    app = r.spinapp(comp)
    names = {v.get("name") for v in app["spec"].get("variables") or []}
    required = {name for name, spec in r.repo.variables.items() if spec.get("required")}
    expect(required <= names, f"{ident(app)} does not set required {sorted(required - names)}: Spin would not start")


@check("db_host", "db_host and db_port name the PostgreSQL Service")
def db_host_port(r: Render):
    svc, _sts = r.postgres()
    host = f"{name_of(svc)}.{ns_of(svc)}.svc.cluster.local"
    ports = [p["port"] for p in svc["spec"]["ports"]]
    for comp in r.repo.components:
        app = r.spinapp(comp)
        if "db_host" in r.repo.needed(comp):
            expect(literal(app, "db_host") == host, f"{ident(app)} db_host is {literal(app, 'db_host')}, want {host}")
        if "db_port" in r.repo.needed(comp):
            port = variable(app, "db_port")
            value = port["value"] if port else r.repo.variables["db_port"].get("default")
            expect(value is not None and int(value) in ports, f"{ident(app)} db_port {value} is not a port of {ident(svc)}")


def superuser(r: Render) -> tuple[str, str, str]:
    """PostgreSQL's superuser (POSTGRES_USER), its database (POSTGRES_DB) and the key of the Secret
    holding its password (the file POSTGRES_PASSWORD_FILE names)."""
    _svc, sts = r.postgres()
    w = r.workload(sts)
    pg = sts["spec"]["template"]["spec"]["containers"][0]
    pw_file = (env_value(pg, "POSTGRES_PASSWORD_FILE") or {}).get("value")
    expect(pw_file, "PostgreSQL does not read its password from a file (POSTGRES_PASSWORD_FILE)")
    pw_keys = [u.key for u in secret_uses(r) if u.namespace == ns_of(sts) and u.key
               and secret_file(w, pg, u.key) == pw_file]
    expect(pw_keys, f"POSTGRES_PASSWORD_FILE {pw_file} is not a file of the Secret")
    user, db = env_value(pg, "POSTGRES_USER"), env_value(pg, "POSTGRES_DB")
    expect(user and db, "PostgreSQL sets no POSTGRES_USER or POSTGRES_DB")
    return user.get("value"), db.get("value"), pw_keys[0]


def expect_pg_url(r: Render, where: str, url_text: str, user: str, hosts: set[str]):
    """`url_text` names PostgreSQL's Service (one of `hosts`) and port, its database, `user` and
    sslmode=disable."""
    svc, _sts = r.postgres()
    _su, db, _key = superuser(r)
    url = urllib.parse.urlsplit(url_text)
    expect(url.scheme in ("postgres", "postgresql"), f"{where}: scheme {url.scheme}")
    expect(url.hostname in hosts, f"{where}: host {url.hostname}, want {' or '.join(sorted(hosts))}")
    expect((url.port or 5432) in [p["port"] for p in svc["spec"]["ports"]], f"{where}: port {url.port}")
    expect(urllib.parse.parse_qs(url.query).get("sslmode") == ["disable"],
           f"{where}: want sslmode=disable in the cluster")
    expect(url.username == user, f"{where}: user {url.username}, want {user}")
    expect(url.path.lstrip("/") == db, f"{where}: database {url.path} != POSTGRES_DB {db}")
    return url


@check("db_url", "each function's database URL: the PostgreSQL Service and database, as its own role, "
                 "with the password the migration Job gives that role")
def db_urls(r: Render):
    svc, sts = r.postgres()
    restricted = secret_data(r.secret_in(ns_of(sts)))
    for comp, role in DB_ROLES.items():
        mapped = TEMPLATE.findall(r.repo.components[comp].get("variables", {}).get("db_url", ""))
        expect(mapped == [f"{role}_db_url"], f"spin.toml maps {comp}'s db_url to {mapped}, want {role}_db_url")
        app = r.spinapp(comp)
        ref = ((variable(app, mapped[0]) or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        data = secret_data(r.secret_in(ns_of(app)))
        expect(ref.get("key") in data, f"{ident(app)} reads {mapped[0]} from no key of its Secret")
        where = f"{ref['key']} in {ns_of(app)}"
        url = expect_pg_url(r, where, data[ref["key"]], role, {f"{name_of(svc)}.{ns_of(svc)}.svc.cluster.local"})
        password_key = f"{role}_db_password"
        expect(urllib.parse.unquote(url.password or "") == restricted.get(password_key),
               f"{where}: password differs from {password_key} in {ns_of(sts)}, which the migration Job sets")


@check("notify_url", "notify_url is notify-fn's SpinApp Service")
def notify_url(r: Render):
    want = service_url(r.spinapp("notify-fn"))
    for comp in r.repo.components:
        if "notify_url" not in r.repo.needed(comp):
            continue
        app = r.spinapp(comp)
        got = literal(app, "notify_url")
        url = urllib.parse.urlsplit(got)
        expect(url.scheme == "http" and url.port in (None, 80) and url.path in ("", "/")
               and not url.query, f"{ident(app)} notify_url {got}: want a base URL on port 80")
        expect(f"http://{url.hostname}" == want, f"{ident(app)} notify_url is {got}, want {want}")


@check("image", "both SpinApps run the same pushed artifact, by tag and digest")
def one_artifact(r: Render):
    images = {a["spec"].get("image") for a in r.of_kind("SpinApp")}
    expect(len(images) == 1, f"the SpinApps run different images: {sorted(images)}")
    img = images.pop()
    expect(re.match(r"^[^/@]+\.[^/@]+/[^@]+:[^/@:]+@sha256:[0-9a-f]{64}$", img),
           f"image {img}: want <registry>/<name>:<tag>@sha256:<digest>")


@check("image", "every image pinned by digest (the `images:` knob)")
def images_pinned(r: Render):
    for w in r.workloads:
        for c in w.containers:
            expect(DIGEST.search(c.get("image") or ""), f"{w.ident} {c['name']}: {c.get('image')} is not pinned by digest")


@check("executor", "every SpinApp names an executor of its namespace")
def executor(r: Render):
    execs = {(ns_of(e), name_of(e)): e for e in r.of_kind("SpinAppExecutor")}
    for app in r.of_kind("SpinApp"):
        name = app["spec"].get("executor")
        expect(name, f"{ident(app)} names no executor")
        e = execs.get((ns_of(app), name))
        expect(e is not None, f"{ident(app)} executor {name} is not in namespace {ns_of(app)}")
        expect(e["spec"].get("createDeployment") is True, f"executor {name} does not create Deployments")
        expect((e["spec"].get("deploymentConfig") or {}).get("runtimeClassName"),
               f"executor {name} names no runtimeClassName")


@check("health", "readiness and liveness on Spin's health route")
def health(r: Render):
    for app in r.of_kind("SpinApp"):
        checks_ = app["spec"].get("checks") or {}
        for probe in ("readiness", "liveness"):
            path = ((checks_.get(probe) or {}).get("httpGet") or {}).get("path")
            expect(path == HEALTH_PATH, f"{ident(app)} {probe} path {path}, want {HEALTH_PATH}")


# ---------------------------------------------------------------------------------------------
# Autoscaling and the connection budget


@check("hpa", "one HPA per autoscaling SpinApp, on its Deployment")
def hpa_targets(r: Render):
    apps = {(ns_of(a), name_of(a)): a for a in r.of_kind("SpinApp")}
    targeted = {}
    for h in r.of_kind("HorizontalPodAutoscaler"):
        ref = h["spec"]["scaleTargetRef"]
        expect(ref.get("kind") == "Deployment" and ref.get("apiVersion") == "apps/v1",
               f"{ident(h)} targets {ref.get('apiVersion')} {ref.get('kind')}, want an apps/v1 Deployment")
        app = apps.get((ns_of(h), ref.get("name")))
        expect(app is not None, f"{ident(h)} targets Deployment {ref.get('name')}: no SpinApp of that name")
        targeted.setdefault(name_of(app), []).append(name_of(h))
        expect(h["spec"].get("minReplicas", 1) <= h["spec"]["maxReplicas"], f"{ident(h)} min > max")
    for (_ns, name), app in apps.items():
        spec = app["spec"]
        if spec.get("enableAutoscaling"):
            expect("replicas" not in spec, f"{ident(app)} autoscales and sets replicas")
            expect(len(targeted.get(name, [])) == 1, f"{ident(app)} autoscales with HPAs {targeted.get(name)}")
            expect(((spec.get("resources") or {}).get("requests") or {}).get("cpu"),
                   f"{ident(app)} has no CPU request for its HPA")
        else:
            expect(name not in targeted, f"{ident(app)} has an HPA but enableAutoscaling is off")


@check("pool", "max replicas x 64 pooled connections fit max_connections")
def pool(r: Render):
    _svc, sts = r.postgres()
    args = " ".join(sts["spec"]["template"]["spec"]["containers"][0].get("args") or [])
    m = re.search(r"max_connections=(\d+)", args)
    max_conn = int(m.group(1)) if m else 100
    hpas = {(ns_of(h), h["spec"]["scaleTargetRef"]["name"]): h for h in r.of_kind("HorizontalPodAutoscaler")}
    pods_ = 0
    for app in r.of_kind("SpinApp"):
        h = hpas.get((ns_of(app), name_of(app)))
        pods_ += h["spec"]["maxReplicas"] if h else app["spec"].get("replicas", 1)
    need = pods_ * SPIN_POOL_PER_POD + PG_RESERVED + MIGRATION_CONNECTIONS
    expect(need <= max_conn, f"{pods_} pods x {SPIN_POOL_PER_POD} + {PG_RESERVED} + "
           f"{MIGRATION_CONNECTIONS} = {need} > max_connections {max_conn}")


# ---------------------------------------------------------------------------------------------
# PostgreSQL, migrations, dispatch


@check("postgres", "StatefulSet on a PVC, pg_isready, requests, Service")
def postgres(r: Render):
    svc, sts = r.postgres()
    expect(sts["spec"].get("volumeClaimTemplates"), "no volumeClaimTemplates")
    pg = sts["spec"]["template"]["spec"]["containers"][0]
    probe = " ".join((pg.get("readinessProbe") or {}).get("exec", {}).get("command") or [])
    expect("pg_isready" in probe, "readiness is not pg_isready")
    expect((pg.get("resources") or {}).get("requests"), "no resource requests")
    mounts = {m["name"] for m in pg.get("volumeMounts") or []}
    claims = {name_of(t) for t in sts["spec"]["volumeClaimTemplates"]}
    expect(mounts & claims, "the data volume claim is not mounted")
    target = svc["spec"]["ports"][0].get("targetPort")
    names = {p.get("name") for p in pg.get("ports") or []} | {p.get("containerPort") for p in pg.get("ports") or []}
    expect(target in names, f"{ident(svc)} targetPort {target} is no container port")


@check("postgres", "the image's postgres user, PGDATA below the volume, writable socket and /tmp dirs")
def postgres_as_its_user(r: Render):
    _svc, sts = r.postgres()
    spec = sts["spec"]["template"]["spec"]
    pod_sc = spec.get("securityContext") or {}
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        expect(pod_sc.get(key) == POSTGRES_UID, f"pod {key} {pod_sc.get(key)}, want {POSTGRES_UID}")
    pg = spec["containers"][0]
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in pg.get("volumeMounts") or []}
    claims = {name_of(t) for t in sts["spec"]["volumeClaimTemplates"]}
    data = [path for path, name in mounts.items() if name in claims]
    pgdata = (env_value(pg, "PGDATA") or {}).get("value", "")
    # initdb refuses a non-empty directory, and a volume's root may hold lost+found
    expect(data and pgdata.startswith(data[0] + "/"), f"PGDATA {pgdata!r} is not a subdirectory of the volume {data}")
    empty_dirs = {v["name"] for v in spec.get("volumes") or [] if "emptyDir" in v}
    for path in ("/var/run/postgresql", "/tmp"):
        expect(mounts.get(path) in empty_dirs, f"{path} is not a writable volume (the root filesystem is read-only)")
    expect(env_value(pg, "POSTGRES_PASSWORD") is None, "POSTGRES_PASSWORD in the environment: use POSTGRES_PASSWORD_FILE")


@check("migrations", "the migration Job runs sql/migrate.sh over every sql/[0-9]*.sql, byte-identical")
def migrations(r: Render):
    job = r.migration_job()
    w = r.workload(job)
    podspec = job["spec"]["template"]["spec"]
    cont = [c_ for c_ in podspec["containers"] if "/migrations/migrate.sh" in " ".join(c_.get("command") or [])][0]
    mount = [m for m in cont.get("volumeMounts") or [] if m["mountPath"] == "/migrations"]
    expect(mount, "nothing mounted at /migrations")
    vol = [v for v in podspec.get("volumes") or [] if v["name"] == mount[0]["name"]]
    expect(vol and vol[0].get("configMap"), "/migrations is not a ConfigMap volume")
    cm_name = vol[0]["configMap"]["name"]
    cms = [m for m in r.of_kind("ConfigMap") if name_of(m) == cm_name and ns_of(m) == ns_of(job)]
    expect(cms, f"ConfigMap {cm_name} is not in the render")
    data = {k: v.encode() for k, v in (cms[0].get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (cms[0].get("binaryData") or {}).items()})
    want = r.repo.migration_files()
    for fname, content in want.items():
        expect(fname in data, f"sql/{fname} is missing from ConfigMap {cm_name} (list it in sql/kustomization.yaml)")
        expect(data[fname] == content, f"ConfigMap {cm_name} {fname} differs from sql/{fname}")
    stale = [k for k in data if k.endswith(".sql") and k not in want]
    expect(not stale, f"ConfigMap {cm_name} has files no longer in sql/: {stale}")


def reads_password(w: Workload, container, variable: str, key: str) -> bool:
    """Whether the container's script sets `variable` from the file of Secret key `key`."""
    path = secret_file(w, container, key)
    return bool(path) and f"{variable}=$(cat {path})" in " ".join(container.get("command") or [])


@check("migrations", "the migration Job bootstraps as the superuser, then migrates as the migration role, "
                     "setting the functions' roles' passwords; only the bootstrap holds the superuser's")
def migration_roles(r: Render):
    job = r.migration_job()
    w = r.workload(job)
    podspec = job["spec"]["template"]["spec"]
    svc, _sts = r.postgres()
    hosts = {name_of(svc)} if ns_of(svc) == ns_of(job) else set()
    hosts.add(f"{name_of(svc)}.{ns_of(svc)}.svc.cluster.local")
    su, _db, su_key = superuser(r)
    boot = [c_ for c_ in podspec.get("initContainers") or []
            if "/migrations/bootstrap.sql" in " ".join(c_.get("command") or [])]
    expect(len(boot) == 1, f"{len(boot)} init containers run /migrations/bootstrap.sql, want 1")
    boot = boot[0]
    expect_pg_url(r, f"{boot['name']} DATABASE_URL", (env_value(boot, "DATABASE_URL") or {}).get("value", ""),
                  su, hosts)
    expect(reads_password(w, boot, "PGPASSWORD", su_key), f"{boot['name']}: PGPASSWORD is not read from {su_key}")
    migrator_key = "migrator_db_password"
    expect(reads_password(w, boot, "MIGRATOR_DB_PASSWORD", migrator_key),
           f"{boot['name']}: MIGRATOR_DB_PASSWORD is not read from {migrator_key}")

    cont = [c_ for c_ in podspec["containers"] if "/migrations/migrate.sh" in " ".join(c_.get("command") or [])][0]
    expect_pg_url(r, f"{cont['name']} DATABASE_URL", (env_value(cont, "DATABASE_URL") or {}).get("value", ""),
                  MIGRATOR, hosts)
    expect(reads_password(w, cont, "PGPASSWORD", migrator_key), f"{cont['name']}: PGPASSWORD is not read from {migrator_key}")
    for role in DB_ROLES.values():
        variable_, key = f"{role.upper()}_DB_PASSWORD", f"{role}_db_password"
        expect(reads_password(w, cont, variable_, key), f"{cont['name']}: {variable_} is not read from {key}")
    expect(secret_file(w, cont, su_key) is None, f"{cont['name']} can read the superuser's password ({su_key})")


@check("dispatch", "a CronJob POSTs notify-fn's dispatch route every minute, notify_token on stdin")
def dispatch(r: Render):
    notify = r.spinapp("notify-fn")
    cron = r.dispatch_cronjob()
    w = r.workload(cron)
    expect(cron["spec"]["schedule"] == "* * * * *", f"schedule {cron['spec']['schedule']}, want every minute")
    cont = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    script = " ".join(cont.get("command") or []) + " " + " ".join(cont.get("args") or [])
    expect("${NOTIFY_URL}/notifications/dispatch" in script, "does not POST ${NOTIFY_URL}/notifications/dispatch")
    expect("POST" in script, "not a POST")
    url = (env_value(cont, "NOTIFY_URL") or {}).get("value")
    expect(url == service_url(notify), f"NOTIFY_URL {url}, want {service_url(notify)}")
    want = (variable(notify, "notify_token") or {}).get("valueFrom", {}).get("secretKeyRef") or {}
    token_file = secret_file(w, cont, want.get("key"))
    expect(token_file, f"notify-fn's notify_token (key {want.get('key')}) is not a file of the CronJob")
    expect(f"$(cat {token_file})" in script, f"the script does not read the token from {token_file}")
    # the header goes to curl on standard input: the token is in no argument list
    expect("'Authorization: Bearer %s\\n'" in script and "-H @-" in script,
           "the Authorization header is not built with printf and handed to curl as `-H @-`")
    env_secrets = [e["name"] for e in cont.get("env") or [] if (e.get("valueFrom") or {}).get("secretKeyRef")]
    expect(not env_secrets, f"secrets in the environment: {env_secrets}")


# ---------------------------------------------------------------------------------------------
# Services and the Ingress


@check("services", "every Service selects pods that exist")
def services_select(r: Render):
    for svc in r.of_kind("Service"):
        sel = svc["spec"].get("selector")
        expect(sel, f"{ident(svc)} has no selector")
        hit = [w for w in r.workloads if w.namespace == ns_of(svc) and selector_matches({"matchLabels": sel}, w.labels)]
        expect(hit, f"{ident(svc)} selects no pod")


def ingress_paths(r: Render):
    """(path, pathType, service name) of every Ingress rule, each checked against the Services."""
    services = {(ns_of(s), name_of(s)): [p["port"] for p in s["spec"]["ports"]] for s in r.of_kind("Service")}
    for app in r.of_kind("SpinApp"):
        services[(ns_of(app), name_of(app))] = [SPIN_HTTP_PORT]  # the Service the operator creates
    paths = []
    for ing in r.of_kind("Ingress"):
        for rule in ing["spec"].get("rules") or []:
            for p in (rule.get("http") or {}).get("paths") or []:
                svc = p["backend"]["service"]
                ports = services.get((ns_of(ing), svc["name"]))
                expect(ports is not None, f"{ident(ing)} {p['path']} -> Service {svc['name']}: none such")
                expect(svc["port"].get("number") in ports, f"{ident(ing)} {p['path']} -> port {svc['port']}")
                paths.append((p["path"], p["pathType"], svc["name"]))
    return paths


@check("ingress", "the Ingress routes spin.toml's routes to their SpinApps' Services")
def ingress_routes(r: Render):
    expect(r.of_kind("Ingress"), "no Ingress")
    paths = ingress_paths(r)
    for route, comp in r.repo.routes:
        app = r.spinapp(comp)
        prefix = route[:-4] if route.endswith("/...") else route
        hit = [x for x in paths if x[0] == prefix and x[2] == name_of(app)]
        expect(hit, f"route {route} of {comp} is not routed to Service {name_of(app)}")
    notify = name_of(r.spinapp("notify-fn"))
    leaks = [x for x in paths if x[0] == "/notifications/dispatch" and x[2] == notify]
    expect(not leaks, "the internal dispatch route is published")
    expect(any(x[0] == "/notifications/dispatch" and x[1] == "Exact" for x in paths),
           "no Exact rule keeps /notifications/dispatch away from notify-fn")


@check("ingress", "the Ingress terminates TLS for every host, with a cert-manager issuer")
def ingress_tls(r: Render):
    for ing in r.of_kind("Ingress"):
        hosts = {rule.get("host") for rule in ing["spec"].get("rules") or []}
        expect(None not in hosts, f"{ident(ing)} has a rule without a host: TLS needs one")
        tls = ing["spec"].get("tls") or []
        expect(tls, f"{ident(ing)} has no tls section")
        expect(all(t.get("secretName") for t in tls), f"{ident(ing)} has a tls entry without secretName")
        covered = {h for t in tls for h in t.get("hosts") or []}
        expect(hosts <= covered, f"{ident(ing)}: hosts {sorted(hosts - covered)} have no TLS")
        notes = ing["metadata"].get("annotations") or {}
        expect(notes.get("cert-manager.io/cluster-issuer") or notes.get("cert-manager.io/issuer"),
               f"{ident(ing)} names no cert-manager issuer")


@check("ingress", "the Ingress limits request bodies to the API's limit (openapi.yaml, 413)")
def ingress_body_limit(r: Render):
    units = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
    for ing in r.of_kind("Ingress"):
        size = (ing["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/proxy-body-size")
        expect(size, f"{ident(ing)} sets no nginx.ingress.kubernetes.io/proxy-body-size")
        m = re.fullmatch(r"(\d+)([kmg]?)", size.lower())
        expect(m, f"{ident(ing)} proxy-body-size {size!r} is not nginx's size syntax")
        limit = int(m.group(1)) * units[m.group(2)]
        expect(limit == r.repo.body_limit, f"{ident(ing)} proxy-body-size {size} = {limit} bytes, "
               f"want the API's {r.repo.body_limit}")


# ---------------------------------------------------------------------------------------------
# NetworkPolicies: a model of who may connect to whom, compared with what is intended


@dataclass
class Endpoint:
    name: str
    namespace: str | None  # None: an address outside the cluster
    labels: dict
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ports: list  # [(port, protocol, name)]


def endpoints(r: Render) -> list[Endpoint]:
    """The render's pods, a stray pod in each of its namespaces (what the default deny is for), the
    cluster DNS, the ingress controller, a pod elsewhere, and addresses outside: public ones and
    one in every range webhooks must never reach (the cluster's own ranges included)."""
    pod_range = next((n for n in r.repo.cluster_ranges if n.version == 4), ipaddress.ip_network("10.244.0.0/16"))
    ips = pod_range.hosts()
    out = []
    for w in r.workloads:
        ports = [(p["containerPort"], p.get("protocol", "TCP"), p.get("name"))
                 for c in w.containers for p in c.get("ports") or []]
        out.append(Endpoint(w.ident, w.namespace, w.labels, next(ips), ports))
    for ns in r.namespaces:
        out.append(Endpoint(f"a stray pod in {ns}", ns, {}, next(ips), [(80, "TCP", None)]))
    out.append(Endpoint("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, next(ips),
                        [(53, "UDP", "dns"), (53, "TCP", "dns-tcp")]))
    out.append(Endpoint("the ingress controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"},
                        next(ips), [(80, "TCP", "http"), (443, "TCP", "https")]))
    out.append(Endpoint("a pod in namespace default", "default", {}, next(ips), [(80, "TCP", None)]))
    web = [(80, "TCP", None), (443, "TCP", None)]
    for addr in PUBLIC_ADDRESSES + [CLOUD_METADATA]:
        out.append(Endpoint(addr, None, {}, ipaddress.ip_address(addr), web))
    for net in NEVER_WEBHOOK + r.repo.cluster_ranges:
        addr = net.network_address + 1 if net.num_addresses > 1 else net.network_address
        out.append(Endpoint(f"{addr} ({net})", None, {}, addr, web))
    return out


def namespace_labels(r: Render, ns):
    labels = dict((r.namespaces.get(ns) or {}).get("metadata", {}).get("labels") or {})
    labels[NS_NAME_LABEL] = ns
    return labels


def peer_matches(r: Render, peer, policy_ns, ep: Endpoint) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        cidr = ipaddress.ip_network(block["cidr"])
        return (ep.ip.version == cidr.version and ep.ip in cidr
                and not any(ep.ip in ipaddress.ip_network(x) for x in block.get("except") or []))
    if ep.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], namespace_labels(r, ep.namespace)):
            return False
    elif ep.namespace != policy_ns:
        return False
    return selector_matches(peer.get("podSelector") or {}, ep.labels)


def port_matches(rule, target: Endpoint, port, protocol) -> bool:
    if not rule.get("ports"):
        return True
    for p in rule["ports"]:
        if p.get("protocol", "TCP") != protocol:
            continue
        want = p.get("port")
        if want is None:
            return True
        if isinstance(want, str):  # a named port of the target
            if any(name == want and num == port and proto == protocol for num, proto, name in target.ports):
                return True
            continue
        if want <= port <= p.get("endPort", want):
            return True
    return False


def policy_types(policy):
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def allowed(r: Render, direction, subject: Endpoint, peer: Endpoint, port, protocol) -> bool:
    """Whether the policies of subject's namespace let subject receive from (Ingress) or send to
    (Egress) peer on the port of the target: no policy selecting subject means open."""
    if subject.namespace not in r.namespaces:
        return True  # outside the app: not ours to restrict
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    target = subject if direction == "Ingress" else peer
    selecting = [p for p in r.policies if ns_of(p) == subject.namespace and direction in policy_types(p)
                 and selector_matches(p["spec"]["podSelector"], subject.labels)]
    if not selecting:
        return True
    for pol in selecting:
        for rule in pol["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(r, x, ns_of(pol), peer) for x in peers)) \
                    and port_matches(rule, target, port, protocol):
                return True
    return False


def webhook_ports(r: Render) -> set[int]:
    """The ports notify-fn's webhook_hosts allows (scheme://host[:port]; default per scheme)."""
    value = literal(r.spinapp("notify-fn"), "webhook_hosts")
    ports = set()
    for entry in value.split(","):
        url = urllib.parse.urlsplit(entry.strip())
        port = url.netloc.rpartition(":")[2] if ":" in url.netloc else {"https": "443", "http": "80"}.get(url.scheme)
        expect(port and port.isdigit(), f"webhook_hosts entry {entry!r}: want scheme://host[:port] with one port")
        ports.add(int(port))
    return ports


def intended(r: Render, eps: list[Endpoint], direction) -> set[tuple]:
    """(from, to, port, protocol) of every connection the app needs, as the policies of the given
    direction should allow them."""
    by_name = {e.name: e for e in eps}
    event = ident(r.spinapp("event-fn"))
    notify = ident(r.spinapp("notify-fn"))
    pg = ident(r.postgres()[1])
    want = {
        (event, pg, 5432, "TCP"), (notify, pg, 5432, "TCP"), (ident(r.migration_job()), pg, 5432, "TCP"),
        (event, notify, SPIN_HTTP_PORT, "TCP"), (ident(r.dispatch_cronjob()), notify, SPIN_HTTP_PORT, "TCP"),
        ("the ingress controller", event, SPIN_HTTP_PORT, "TCP"),
        ("the ingress controller", notify, SPIN_HTTP_PORT, "TCP"),
    }
    want |= {(notify, addr, port, "TCP") for addr in PUBLIC_ADDRESSES for port in webhook_ports(r)}
    want |= {(e.name, "kube-dns", 53, proto) for e in eps if e.namespace in r.namespaces for proto in ("UDP", "TCP")}
    if direction == "Ingress" and any(ident(p) == "NetworkPolicy/nodeport" for p in r.policies):
        # components/nodeport: node ports carry traffic from anywhere to the two functions
        want |= {(e.name, fn, SPIN_HTTP_PORT, "TCP") for e in eps for fn in (event, notify)}
    unmodelled = {name for c in want for name in c[:2]} - set(by_name)
    expect(not unmodelled, f"intended peers that are not modelled: {sorted(unmodelled)}")
    return want


def reachability(r: Render, direction) -> None:
    eps = endpoints(r)
    want = intended(r, eps, direction)
    ours = [e for e in eps if e.namespace in r.namespaces]
    unexpected, missing = [], []
    for subject in ours:
        for peer in eps:
            src, dst = (peer, subject) if direction == "Ingress" else (subject, peer)
            if src is dst:
                continue
            for port, proto, _name in dst.ports:
                got = allowed(r, direction, subject, peer, port, proto)
                if got and (src.name, dst.name, port, proto) not in want:
                    unexpected.append(f"{src.name} -> {dst.name}:{port}/{proto}")
                if not got and (src.name, dst.name, port, proto) in want:
                    missing.append(f"{src.name} -> {dst.name}:{port}/{proto}")
    expect(not unexpected and not missing,
           f"allowed but not intended: {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}; "
           f"intended but refused: {missing[:4]}{' ...' if len(missing) > 4 else ''}")


@check("networkpolicy", "{} selects pods that exist, and its peers do",
       each=lambda r: [(label(p), p) for p in r.policies])
def policy_selects(r: Render, pol):
    ns = ns_of(pol)
    own = [w for w in r.workloads if w.namespace == ns]
    expect([w for w in own if selector_matches(pol["spec"]["podSelector"], w.labels)], f"{ident(pol)} selects no pod")
    for key, peers_key in (("ingress", "from"), ("egress", "to")):
        for rule in pol["spec"].get(key) or []:
            for peer in rule.get(peers_key) or []:
                if "ipBlock" in peer:
                    continue
                if "namespaceSelector" in peer:
                    names = [n for n in list(r.namespaces) + ["kube-system", "ingress-nginx"]
                             if selector_matches(peer["namespaceSelector"], namespace_labels(r, n))]
                    expect(names, f"{ident(pol)} {key} {peer['namespaceSelector']}: no such namespace")
                    pods = [w for w in r.workloads if w.namespace in names]
                else:
                    pods = own
                if pods and "podSelector" in peer:
                    expect([w for w in pods if selector_matches(peer["podSelector"], w.labels)],
                           f"{ident(pol)} {key} {peer['podSelector']}: no such pod")


@check("networkpolicy", "each namespace denies all ingress and egress by default")
def default_deny(r: Render):
    for ns in r.namespaces:
        deny = [p for p in r.policies if ns_of(p) == ns and p["spec"]["podSelector"] == {}
                and set(policy_types(p)) == {"Ingress", "Egress"}
                and not p["spec"].get("ingress") and not p["spec"].get("egress")]
        expect(deny, f"namespace {ns} has no default-deny NetworkPolicy")


@check("networkpolicy", "ingress: every pod admits exactly the intended peers")
def ingress_reachability(r: Render):
    reachability(r, "Ingress")


@check("networkpolicy", "egress: every pod reaches exactly the intended peers (DNS, PostgreSQL, "
       "notify-fn, public webhook addresses)")
def egress_reachability(r: Render):
    reachability(r, "Egress")


@check("networkpolicy", "notify-fn's webhook egress excepts private, link-local, CGNAT, loopback and "
       "the cluster's ranges (k8s/spin/cluster-ranges.yaml)")
def webhook_excepts(r: Render):
    notify = r.workload(r.spinapp("notify-fn"))
    blocks = [peer["ipBlock"] for p in r.policies if ns_of(p) == notify.namespace
              and "Egress" in policy_types(p) and selector_matches(p["spec"]["podSelector"], notify.labels)
              for rule in p["spec"].get("egress") or [] for peer in rule.get("to") or [] if "ipBlock" in peer]
    expect(blocks, "notify-fn has no ipBlock egress")
    expect(r.repo.cluster_ranges, "k8s/spin/cluster-ranges.yaml lists no range")
    listed = {ipaddress.ip_network(x) for block in blocks for x in block.get("except") or []}
    unused = [str(n) for n in r.repo.cluster_ranges if n not in listed]
    expect(not unused, f"ranges of k8s/spin/cluster-ranges.yaml missing from the except lists: {unused}")
    for block in blocks:
        cidr = ipaddress.ip_network(block["cidr"])
        excepted = [ipaddress.ip_network(x) for x in block.get("except") or []]
        for net in NEVER_WEBHOOK + r.repo.cluster_ranges:
            if net.version == cidr.version and net.subnet_of(cidr):
                expect(any(net.subnet_of(x) for x in excepted), f"{block['cidr']} does not except {net}")


# ---------------------------------------------------------------------------------------------
# checkov


@check("checkov", "checkov finds nothing with tests/k8s/checkov.yaml")
def checkov_clean(r: Render):
    expect(r.checkov, "no checkov executable given")
    report = run_checkov(r.checkov, r.repo.checkov_config, r.docs)
    summary = report.get("summary") or {}
    expect(summary.get("resource_count", 0) > 0, f"checkov read no resource: {summary}")
    expect(not summary.get("parsing_errors"), f"checkov could not parse the render: {summary}")
    failed = report.get("results", {}).get("failed_checks") or []
    expect(not failed, "; ".join(f"{f['check_id']} ({f['check_name']}) on {f['resource']}" for f in failed[:5])
           + (f" and {len(failed) - 5} more" if len(failed) > 5 else ""))


def checkov_skip_reasons(config: Path):
    """Every skip in checkov.yaml has a reason after `#` on its line."""
    skips = yaml.safe_load(config.read_text()).get("skip-check") or []
    lines = config.read_text().splitlines()
    for skip in skips:
        line = [ln for ln in lines if re.match(rf"^\s*-\s*{re.escape(skip)}\s*(#|$)", ln)]
        reason = line[0].partition("#")[2].strip() if line else ""
        expect(len(reason) >= 10, f"skip {skip} has no reason")


# ---------------------------------------------------------------------------------------------
# Negative self-test: deliberately broken copies must each be flagged by the right check family


def find(docs, kind, name=None):
    return [d for d in docs if d.get("kind") == kind and (name is None or name_of(d) == name)][0]


def spinapp_in(docs, component):
    return [d for d in docs if d.get("kind") == "SpinApp" and component in (d["spec"].get("components") or [])][0]


def set_var(app, name, new):
    app["spec"]["variables"] = [new if v["name"] == name else v for v in app["spec"]["variables"]]


def drop_var(app, name):
    app["spec"]["variables"] = [v for v in app["spec"]["variables"] if v["name"] != name]


def secret_var(name, key):
    """A SpinApp variable `name` from key `key` of the app's Secret."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": "event-management-secrets", "key": key}}}


def pg_pod(docs):
    return find(docs, "StatefulSet", "postgres")["spec"]["template"]["spec"]


def cron_pod(docs):
    return find(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]


MUTATIONS = []


def mutation(what, family):
    def register(fn):
        MUTATIONS.append((what, family, fn))
        return fn
    return register


@mutation("a secret variable set as a literal value", "secrets")
def _(docs, repo):
    set_var(spinapp_in(docs, "event-fn"), "event_fn_db_url", {"name": "event_fn_db_url", "value": "postgres://u:p@h/db"})


@mutation("notify-fn's database URL in event-fn's pod", "secrets")
def _(docs, repo):
    set_var(spinapp_in(docs, "event-fn"), "notify_fn_db_url", secret_var("notify_fn_db_url", "notify_fn_db_url"))


@mutation("a required variable left unset where no component uses it", "variables")
def _(docs, repo):
    drop_var(spinapp_in(docs, "event-fn"), "notify_fn_db_url")


@mutation("event-fn connecting as notify-fn's role", "db_url")
def _(docs, repo):
    set_var(spinapp_in(docs, "event-fn"), "event_fn_db_url", secret_var("event_fn_db_url", "notify_fn_db_url"))


@mutation("migrations run as the superuser", "migrations")
def _(docs, repo):
    for env in find(docs, "Job")["spec"]["template"]["spec"]["containers"][0]["env"]:
        if env["name"] == "DATABASE_URL":
            env["value"] = env["value"].replace(MIGRATOR, "events")


@mutation("the superuser's password in the migrate step", "migrations")
def _(docs, repo):
    pod = find(docs, "Job")["spec"]["template"]["spec"]
    for vol in pod["volumes"]:
        if vol["name"] == "migrate-secrets":
            vol["secret"]["items"].append({"key": "postgres_password", "path": "postgres_password"})


@mutation("a component variable left unset", "variables")
def _(docs, repo):
    drop_var(spinapp_in(docs, "notify-fn"), "notify_token")


@mutation("notify_url left at service chaining", "notify_url")
def _(docs, repo):
    set_var(spinapp_in(docs, "event-fn"), "notify_url", {"name": "notify_url", "value": "http://notify-fn.spin.internal"})


@mutation("db_host left at its default", "db_host")
def _(docs, repo):
    set_var(spinapp_in(docs, "notify-fn"), "db_host", {"name": "db_host", "value": "127.0.0.1"})


@mutation("migrate.sh drifted from sql/", "migrations")
def _(docs, repo):
    for cm in docs:
        if cm.get("kind") == "ConfigMap" and "migrate.sh" in (cm.get("data") or {}):
            cm["data"]["migrate.sh"] += "\n# drift\n"


@mutation("an HPA on a Deployment that does not exist", "hpa")
def _(docs, repo):
    find(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] = "event-fn-typo"


@mutation("a NetworkPolicy on labels no pod has", "networkpolicy")
def _(docs, repo):
    find(docs, "NetworkPolicy", "notify-fn")["spec"]["podSelector"] = {"matchLabels": {"app": "notify-fn"}}


@mutation("PostgreSQL opened to every pod", "networkpolicy")
def _(docs, repo):
    find(docs, "NetworkPolicy", "postgres")["spec"]["ingress"][0]["from"].append({"podSelector": {}})


@mutation("the default deny removed from the SpinApps' namespace", "networkpolicy")
def _(docs, repo):
    ns = ns_of(spinapp_in(docs, "notify-fn"))
    docs[:] = [d for d in docs if not (ident(d) == "NetworkPolicy/default-deny" and ns_of(d) == ns)]


@mutation("cloud metadata (link-local) reachable by webhooks", "networkpolicy")
def _(docs, repo):
    block = find(docs, "NetworkPolicy", "notify-fn-webhooks")["spec"]["egress"][0]["to"][0]["ipBlock"]
    block["except"].remove("169.254.0.0/16")


@mutation("a cluster range of the knob left out of the webhook egress", "networkpolicy")
def _(docs, repo):
    block = find(docs, "NetworkPolicy", "notify-fn-webhooks")["spec"]["egress"][0]["to"][0]["ipBlock"]
    block["except"].remove(str(repo.cluster_ranges[0]))


@mutation("notify-fn's egress opened to everything", "networkpolicy")
def _(docs, repo):
    find(docs, "NetworkPolicy", "notify-fn")["spec"]["egress"].append({})


@mutation("an unknown field in a StatefulSet", "schema")
def _(docs, repo):
    find(docs, "StatefulSet")["spec"]["replica"] = 2


@mutation("an unknown field in a SpinApp", "crd")
def _(docs, repo):
    spinapp_in(docs, "event-fn")["spec"]["replica"] = 2


@mutation("an executor missing from the namespace", "executor")
def _(docs, repo):
    find(docs, "SpinAppExecutor")["metadata"]["name"] = "other"


@mutation("maxReplicas beyond max_connections", "pool")
def _(docs, repo):
    find(docs, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] = 10


@mutation("the SpinApps on different images", "image")
def _(docs, repo):
    spinapp_in(docs, "notify-fn")["spec"]["image"] = "registry.example.com/other:1@sha256:" + "1" * 64


@mutation("PostgreSQL by tag only", "image")
def _(docs, repo):
    pg_pod(docs)["containers"][0]["image"] = "postgres:15"


@mutation("a SpinApp keeping two components", "components")
def _(docs, repo):
    spinapp_in(docs, "event-fn")["spec"]["components"] = list(repo.components)


@mutation("a liveness check off Spin's health route", "health")
def _(docs, repo):
    spinapp_in(docs, "notify-fn")["spec"]["checks"]["liveness"]["httpGet"]["path"] = "/healthz"


@mutation("a Secret in the render", "secrets")
def _(docs, repo):
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak", "namespace": ns_of(docs[-1])},
                 "stringData": {"api_token": "hunter2"}})


@mutation("a key of a namespace's Secret that no pod there reads", "secrets")
def _(docs, repo):
    pod = cron_pod(docs)
    pod["volumes"] = [v for v in pod["volumes"] if "secret" not in v]
    mounts = pod["containers"][0]["volumeMounts"]
    pod["containers"][0]["volumeMounts"] = [m for m in mounts if m["name"] in {v["name"] for v in pod["volumes"]}]


@mutation("the dispatch route published by the Ingress", "ingress")
def _(docs, repo):
    for p in find(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"]:
        if p["path"] == "/notifications/dispatch":
            p["backend"]["service"]["name"] = "notify-fn"


@mutation("the Ingress without TLS", "ingress")
def _(docs, repo):
    del find(docs, "Ingress")["spec"]["tls"]


@mutation("the Ingress accepting bodies of 1 MiB", "ingress")
def _(docs, repo):
    find(docs, "Ingress")["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] = "1m"


@mutation("PostgreSQL without runAsNonRoot", "pod-security")
def _(docs, repo):
    del pg_pod(docs)["securityContext"]["runAsNonRoot"]


@mutation("the restricted namespace enforcing only baseline", "pod-security")
def _(docs, repo):
    ns = find(docs, "Namespace", ns_of(find(docs, "StatefulSet", "postgres")))
    ns["metadata"]["labels"][PSA + "enforce"] = "baseline"


@mutation("a SpinApp with a hostPath volume", "pod-security")
def _(docs, repo):
    spinapp_in(docs, "event-fn")["spec"]["volumes"] = [{"name": "host", "hostPath": {"path": "/"}}]


@mutation("a writable root filesystem in the CronJob", "hardening")
def _(docs, repo):
    cron_pod(docs)["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False


@mutation("a service-account token in the migration Job", "hardening")
def _(docs, repo):
    find(docs, "Job")["spec"]["template"]["spec"]["automountServiceAccountToken"] = True


@mutation("the SpinApps' service account mounting a token", "hardening")
def _(docs, repo):
    find(docs, "ServiceAccount")["automountServiceAccountToken"] = True


@mutation("PGDATA at the volume's root", "postgres")
def _(docs, repo):
    for env in pg_pod(docs)["containers"][0]["env"]:
        if env["name"] == "PGDATA":
            env["value"] = "/var/lib/postgresql/data"


@mutation("the dispatch token in an argument list", "dispatch")
def _(docs, repo):
    cmd = cron_pod(docs)["containers"][0]["command"]
    cmd[-1] = cmd[-1].replace("-H @-", '-H "Authorization: Bearer $token"')


@mutation("a privileged PostgreSQL container (checkov)", "checkov")
def _(docs, repo):
    sc = pg_pod(docs)["containers"][0]["securityContext"]
    sc.update({"privileged": True, "allowPrivilegeEscalation": True})


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--crds", type=Path, required=True)
    ap.add_argument("--secrets", type=Path, required=True)
    ap.add_argument("--checkov", type=Path, required=True)
    ap.add_argument("--render-failure", action="append", default=[], metavar="NAME=FILE")
    ap.add_argument("renders", nargs="*", type=Path)
    args = ap.parse_args()

    passed = failed = 0

    def report(name, error):
        nonlocal passed, failed
        if error is None:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}: {error}")

    for item in args.render_failure:
        name, _, path = item.partition("=")
        lines = Path(path).read_text().strip().splitlines()
        report(f"{name}: renders", lines[-1] if lines else "kubectl kustomize failed")

    repo = Repo(args.repo)
    crd_schemas = load_crd_schemas(args.crds)
    secrets = [d for d in load_docs(args.secrets) if d.get("kind") == "Secret"]
    report("secrets: k8s/create-secrets.sh makes Secrets of k8s/secrets.env.example",
           None if secrets else "no Secret")
    try:
        checkov_skip_reasons(repo.checkov_config)
        report("checkov: every skip in tests/k8s/checkov.yaml gives its reason", None)
    except Failed as e:
        report("checkov: every skip in tests/k8s/checkov.yaml gives its reason", str(e))

    first = None  # the self-test breaks copies of the first render (check.sh passes k8s/ first)
    for path in args.renders:
        label = path.stem
        render = Render(load_docs(path), secrets, repo, crd_schemas, args.checkov)
        report(f"{label}: renders", None if render.docs else "empty render")
        results = run(render)
        for family, detail, error in results:
            report(f"{label}: {family}: {detail}", error)
        if first is None:
            first = (render.docs, {f for f, _d, err in results if err})

    if first is None:
        report("self-test", "no render to test")
    else:
        docs, failing = first
        for what, family, mutate in MUTATIONS:
            if family in failing:
                report(f"self-test: {what} is flagged", f"`{family}` checks fail before the copy is broken")
                continue
            broken = copy.deepcopy(docs)
            try:
                mutate(broken, repo)
            except Exception as e:
                report(f"self-test: {what} is flagged", f"could not break the copy: {type(e).__name__}: {e}")
                continue
            render = Render(broken, secrets, repo, crd_schemas, args.checkov)
            flagged = [d for _f, d, err in run(render, family) if err]
            report(f"self-test: {what} is flagged", None if flagged else f"no `{family}` check failed on the broken copy")

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
