#!/usr/bin/env python3
"""Offline checks of the rendered Kubernetes manifests (k8s/) against their schemas and spin.toml.

Usage (tests/k8s/check.sh runs it):
  check_manifests.py --repo REPO --crds DIR --secret SECRET.yaml [--render-failure NAME=FILE]...
                     RENDER.yaml...

Each RENDER.yaml is one `kubectl kustomize` output (k8s/, or k8s/ with an optional component), checked
on its own together with SECRET.yaml, the Secret that `kubectl create secret --from-env-file` makes of
k8s/secrets.env.example, exactly as README.md tells users to make it of k8s/secrets.env.

Prints one line per check and ends with `N passed, M failed`; exits 1 when M > 0.
"""

from __future__ import annotations

import argparse
import base64
import copy
import re
import sys
import tomllib
import urllib.parse
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

KUBE_VERSION = "1.32"  # the kubectl here is 1.32; SpinKube supports current Kubernetes releases
SPIN_POOL_PER_POD = 64  # Spin 3.6 Postgres pool: at most 64 connections per pod (factor-outbound-pg)
PG_RESERVED = 3  # PostgreSQL's superuser_reserved_connections default
MIGRATION_CONNECTIONS = 1  # the migration Job (psql)
HEALTH_PATH = "/.well-known/spin/health"
APP_NAME_LABEL = "core.spinkube.dev/app-name"  # spin-operator pkg/spinapp/spinapp.go NameLabelKey
SPIN_GROUP = "core.spinkube.dev/v1alpha1"
CRD_KINDS = {"SpinApp": "core.spinkube.dev_spinapps.yaml",
             "SpinAppExecutor": "core.spinkube.dev_spinappexecutors.yaml"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "RuntimeClass",
                  "PersistentVolume", "CustomResourceDefinition", "PriorityClass"}
TEMPLATE = re.compile(r"\{\{\s*([a-z0-9_]+)\s*\}\}")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class Failed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise Failed(message)


# ---------------------------------------------------------------------------------------------
# Inputs


class Spin:
    """What the checks need from spin.toml and sql/."""

    def __init__(self, repo: Path):
        manifest = tomllib.loads((repo / "spin.toml").read_text())
        self.variables: dict = manifest.get("variables", {})
        self.components: dict = manifest.get("component", {})
        self.routes = []  # (route, component)
        for trigger in manifest.get("trigger", {}).get("http", []):
            route = trigger.get("route")
            if isinstance(route, str):
                self.routes.append((route, trigger["component"]))
        self.sql_dir = repo / "sql"

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
        files["migrate.sh"] = (self.sql_dir / "migrate.sh").read_bytes()
        return files


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


# ---------------------------------------------------------------------------------------------
# Helpers over a rendered set


def ns_of(doc):
    return doc.get("metadata", {}).get("namespace")


def name_of(doc):
    return doc.get("metadata", {}).get("name")


def ident(doc):
    return f"{doc.get('kind')}/{name_of(doc)}"


def of_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def pods(docs):
    """Every pod template in the set as (namespace, workload id, labels, containers), SpinApps
    labelled as spin-operator v0.6.1 labels their pods (constructDeployment: podLabels, then the
    app-name and status labels)."""
    out = []
    for d in docs:
        kind, spec = d.get("kind"), d.get("spec", {})
        if kind == "SpinApp":
            labels = dict(spec.get("podLabels") or {})
            labels[APP_NAME_LABEL] = name_of(d)
            labels[f"core.spinkube.dev/app.{name_of(d)}.status"] = "ready"
            out.append((ns_of(d), ident(d), labels, None))
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            tmpl = spec.get("template", {})
            out.append((ns_of(d), ident(d), tmpl.get("metadata", {}).get("labels") or {},
                        tmpl.get("spec", {})))
        elif kind == "CronJob":
            tmpl = spec.get("jobTemplate", {}).get("spec", {}).get("template", {})
            out.append((ns_of(d), ident(d), tmpl.get("metadata", {}).get("labels") or {},
                        tmpl.get("spec", {})))
    return out


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


def containers_of(podspec):
    if not podspec:
        return []
    return list(podspec.get("initContainers") or []) + list(podspec.get("containers") or [])


def env_refs(docs):
    """Every secretKeyRef in the set: (where, name, key, optional)."""
    refs = []
    for d in of_kind(docs, "SpinApp"):
        for var in d["spec"].get("variables") or []:
            ref = (var.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                refs.append((f"{ident(d)} variable {var['name']}", ref.get("name"), ref.get("key"),
                             ref.get("optional", False)))
    for ns, wid, _labels, podspec in pods(docs):
        for c in containers_of(podspec):
            for env in c.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.append((f"{wid} {c['name']} env {env['name']}", ref.get("name"),
                                 ref.get("key"), ref.get("optional", False)))
    return refs


def spinapp_for(docs, component):
    return [d for d in of_kind(docs, "SpinApp") if component in (d["spec"].get("components") or [])]


def one_spinapp_for(docs, component):
    apps = spinapp_for(docs, component)
    expect(len(apps) == 1, f"{len(apps)} SpinApps keep component {component}, want 1")
    return apps[0]


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


def postgres_service(docs):
    """The Service in front of the PostgreSQL StatefulSet's pods, and that StatefulSet."""
    sts = [d for d in of_kind(docs, "StatefulSet")
           if any("postgres" in c.get("image", "") for c in d["spec"]["template"]["spec"]["containers"])]
    expect(len(sts) == 1, f"{len(sts)} PostgreSQL StatefulSets, want 1")
    sts = sts[0]
    labels = sts["spec"]["template"]["metadata"].get("labels") or {}
    svcs = [s for s in of_kind(docs, "Service") if ns_of(s) == ns_of(sts)
            and s["spec"].get("selector") and selector_matches({"matchLabels": s["spec"]["selector"]}, labels)
            and s["spec"].get("type", "ClusterIP") == "ClusterIP"]
    expect(len(svcs) == 1, f"{len(svcs)} ClusterIP Services select the PostgreSQL pods, want 1")
    return svcs[0], sts


def secret_data(secret):
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def env_value(container, name):
    for env in container.get("env") or []:
        if env.get("name") == name:
            return env
    return None


# ---------------------------------------------------------------------------------------------
# The checks: each yields (family, detail, callable)


def checks(docs, secret, spin: Spin, crd_schemas, generated=False):
    namespace = None
    namespaces = of_kind(docs, "Namespace")

    def c(family, detail, fn):
        return (family, detail, fn)

    out = []

    # -- schemas ------------------------------------------------------------------------------
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in crd_schemas:
            def crd_check(doc=doc, schema=crd_schemas[key]):
                errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc),
                                key=lambda e: list(e.path))
                expect(not errors, "; ".join(
                    f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:3]))
                expect(DNS_LABEL.match(name_of(doc) or ""), "name is not a DNS label")
            out.append(c("crd", ident(doc), crd_check))
        else:
            def core_check(doc=doc):
                try:
                    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
                except kubernetes_validate.utils.SchemaNotFoundError as e:
                    raise Failed(e.message)
                except kubernetes_validate.ValidationError as e:
                    raise Failed(f"{'/'.join(map(str, e.path))}: {e.message}")
            out.append(c("schema", ident(doc), core_check))

    def one_namespace():
        expect(len(namespaces) == 1, f"{len(namespaces)} Namespace objects, want 1")
        ns = name_of(namespaces[0])
        wrong = [ident(d) for d in docs if d.get("kind") not in CLUSTER_SCOPED and ns_of(d) != ns]
        expect(not wrong, f"not in namespace {ns}: {', '.join(wrong)}")
        expect(ns_of(secret) == ns, f"the Secret is made for namespace {ns_of(secret)}, not {ns}")
    out.append(c("namespace", "every object in the app's namespace", one_namespace))
    if namespaces:
        namespace = name_of(namespaces[0])

    # -- secrets ------------------------------------------------------------------------------
    if generated:
        def generated_secret():
            found = of_kind(docs, "Secret")
            expect(len(found) == 1, f"{len(found)} Secrets, want the one generated of k8s/secrets.env")
            got = found[0]
            expect((name_of(got), ns_of(got)) == (name_of(secret), ns_of(secret)),
                   f"generates {ident(got)} in {ns_of(got)}, want {ident(secret)} in {ns_of(secret)}")
            expect(secret_data(got) == secret_data(secret), "its data differs from `kubectl create secret`'s")
        out.append(c("secrets", "the secretGenerator makes the same Secret as `kubectl create secret`",
                     generated_secret))
    else:
        def no_committed_secret():
            found = [ident(d) for d in of_kind(docs, "Secret")]
            expect(not found, f"the render holds Secrets ({', '.join(found)}): secret values would be committed")
        out.append(c("secrets", "no Secret in the render (users create it from k8s/secrets.env)",
                     no_committed_secret))

    def example_placeholders():
        data = secret_data(secret)
        real = [k for k, v in data.items() if v and "CHANGE_ME" not in v]  # empty: an unset option
        expect(not real, f"k8s/secrets.env.example holds values that are not placeholders: {real}")
    out.append(c("secrets", "k8s/secrets.env.example holds placeholders only", example_placeholders))

    def refs_resolve():
        data = secret_data(secret)
        refs = env_refs(docs)
        expect(refs, "no secretKeyRef at all")
        for where, name, key, optional in refs:
            expect(name == name_of(secret), f"{where} names Secret {name}, not {name_of(secret)}")
            expect(key in data, f"{where} wants key {key}, missing from k8s/secrets.env.example")
            expect(not optional, f"{where} is optional: a missing secret would go unnoticed")
    out.append(c("secrets", "every secretKeyRef names a key of the Secret", refs_resolve))

    for var, spec in spin.variables.items():
        if not spec.get("secret"):
            continue
        def secret_from_ref(var=var):
            users = [a for a in of_kind(docs, "SpinApp") if variable(a, var) is not None]
            for app in users:
                v = variable(app, var)
                expect("value" not in v, f"{ident(app)} sets secret variable {var} as a literal value")
                expect((v.get("valueFrom") or {}).get("secretKeyRef"),
                       f"{ident(app)} sets secret variable {var} other than from a secretKeyRef")
        out.append(c("secrets", f"secret variable {var} only from a secretKeyRef", secret_from_ref))

    # -- spin.toml: components, variables, image, executor, health, autoscaling -----------------
    def components_split():
        apps = of_kind(docs, "SpinApp")
        expect(apps, "no SpinApp")
        for app in apps:
            comps = app["spec"].get("components")
            expect(comps and len(comps) == 1, f"{ident(app)} keeps {comps}, want exactly one component")
            expect(comps[0] in spin.components, f"{ident(app)} keeps {comps[0]}, not a spin.toml component")
        for comp in spin.components:
            one_spinapp_for(docs, comp)
    out.append(c("components", "one SpinApp per spin.toml component, each keeping only it", components_split))

    for comp in spin.components:
        def variables_set(comp=comp):
            app = one_spinapp_for(docs, comp)
            names = [v.get("name") for v in app["spec"].get("variables") or []]
            expect(len(names) == len(set(names)), f"{ident(app)} sets a variable twice: {names}")
            unknown = set(names) - set(spin.variables)
            expect(not unknown, f"{ident(app)} sets variables spin.toml does not declare: {sorted(unknown)}")
            missing = spin.needed(comp) - set(names)
            expect(not missing, f"{ident(app)} does not set {sorted(missing)} (component {comp} uses them)")
            for v in app["spec"].get("variables") or []:
                expect(("value" in v) != ("valueFrom" in v), f"{ident(app)} {v.get('name')}: want value or valueFrom")
        out.append(c("variables", f"{comp}: every variable it maps or uses is set", variables_set))

    def db_host_port():
        svc, _sts = postgres_service(docs)
        host = f"{name_of(svc)}.{ns_of(svc)}.svc.cluster.local"
        ports = [p["port"] for p in svc["spec"]["ports"]]
        for comp in spin.components:
            app = one_spinapp_for(docs, comp)
            if "db_host" in spin.needed(comp):
                expect(literal(app, "db_host") == host, f"{ident(app)} db_host is {literal(app, 'db_host')}, want {host}")
            if "db_port" in spin.needed(comp):
                port = variable(app, "db_port")
                value = port["value"] if port else spin.variables["db_port"].get("default")
                expect(value is not None and int(value) in ports, f"{ident(app)} db_port {value} is not a port of {ident(svc)}")
    out.append(c("db_host", "db_host and db_port name the PostgreSQL Service", db_host_port))

    def db_url_consistent():
        svc, sts = postgres_service(docs)
        data = secret_data(secret)
        url = urllib.parse.urlsplit(data["db_url"])
        expect(url.scheme in ("postgres", "postgresql"), f"db_url scheme {url.scheme}")
        host = f"{name_of(svc)}.{ns_of(svc)}.svc.cluster.local"
        expect(url.hostname == host, f"db_url host {url.hostname}, want {host}")
        expect((url.port or 5432) in [p["port"] for p in svc["spec"]["ports"]], f"db_url port {url.port}")
        query = urllib.parse.parse_qs(url.query)
        expect(query.get("sslmode") == ["disable"], "db_url wants sslmode=disable in the cluster")
        pg = sts["spec"]["template"]["spec"]["containers"][0]
        user, db = env_value(pg, "POSTGRES_USER"), env_value(pg, "POSTGRES_DB")
        expect(user and url.username == user.get("value"), f"db_url user {url.username} != POSTGRES_USER")
        expect(db and url.path.lstrip("/") == db.get("value"), f"db_url database {url.path} != POSTGRES_DB")
        pw = (env_value(pg, "POSTGRES_PASSWORD") or {}).get("valueFrom", {}).get("secretKeyRef", {})
        expect(pw.get("key") in data, "POSTGRES_PASSWORD is not from a key of the Secret")
        expect(urllib.parse.unquote(url.password or "") == data[pw["key"]],
               f"db_url's password differs from {pw['key']}")
    out.append(c("db_url", "the example db_url matches the PostgreSQL Service, user, database and password",
                 db_url_consistent))

    def notify_url():
        notify = one_spinapp_for(docs, "notify-fn")
        want = service_url(notify)
        for comp in spin.components:
            if "notify_url" not in spin.needed(comp):
                continue
            app = one_spinapp_for(docs, comp)
            got = literal(app, "notify_url")
            url = urllib.parse.urlsplit(got)
            expect(url.scheme == "http" and url.port in (None, 80) and url.path in ("", "/")
                   and not url.query, f"{ident(app)} notify_url {got}: want a base URL on port 80")
            expect(f"http://{url.hostname}" == want, f"{ident(app)} notify_url is {got}, want {want}")
    out.append(c("notify_url", "notify_url is notify-fn's SpinApp Service", notify_url))

    def image():
        images = {a["spec"].get("image") for a in of_kind(docs, "SpinApp")}
        expect(len(images) == 1, f"the SpinApps run different images: {sorted(images)}")
        img = images.pop()
        expect("/" in img and ":" in img.rsplit("/", 1)[1], f"image {img}: want <registry>/<name>:<tag>")
    out.append(c("image", "both SpinApps run the same pushed artifact", image))

    def executor():
        execs = {(ns_of(e), name_of(e)): e for e in of_kind(docs, "SpinAppExecutor")}
        for app in of_kind(docs, "SpinApp"):
            name = app["spec"].get("executor")
            expect(name, f"{ident(app)} names no executor")
            e = execs.get((ns_of(app), name))
            expect(e is not None, f"{ident(app)} executor {name} is not in namespace {ns_of(app)}")
            expect(e["spec"].get("createDeployment") is True, f"executor {name} does not create Deployments")
            expect((e["spec"].get("deploymentConfig") or {}).get("runtimeClassName"),
                   f"executor {name} names no runtimeClassName")
    out.append(c("executor", "every SpinApp names an executor of its namespace", executor))

    def health():
        for app in of_kind(docs, "SpinApp"):
            checks_ = app["spec"].get("checks") or {}
            for probe in ("readiness", "liveness"):
                path = ((checks_.get(probe) or {}).get("httpGet") or {}).get("path")
                expect(path == HEALTH_PATH, f"{ident(app)} {probe} path {path}, want {HEALTH_PATH}")
    out.append(c("health", "readiness and liveness on Spin's health route", health))

    # -- autoscaling and the connection budget -------------------------------------------------
    def hpa_targets():
        hpas = of_kind(docs, "HorizontalPodAutoscaler")
        apps = {(ns_of(a), name_of(a)): a for a in of_kind(docs, "SpinApp")}
        targeted = {}
        for h in hpas:
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
    out.append(c("hpa", "one HPA per autoscaling SpinApp, on its Deployment", hpa_targets))

    def pool():
        _svc, sts = postgres_service(docs)
        args = " ".join(sts["spec"]["template"]["spec"]["containers"][0].get("args") or [])
        m = re.search(r"max_connections=(\d+)", args)
        max_conn = int(m.group(1)) if m else 100
        hpas = {(ns_of(h), h["spec"]["scaleTargetRef"]["name"]): h for h in of_kind(docs, "HorizontalPodAutoscaler")}
        pods_ = 0
        for app in of_kind(docs, "SpinApp"):
            h = hpas.get((ns_of(app), name_of(app)))
            pods_ += h["spec"]["maxReplicas"] if h else app["spec"].get("replicas", 1)
        need = pods_ * SPIN_POOL_PER_POD + PG_RESERVED + MIGRATION_CONNECTIONS
        expect(need <= max_conn, f"{pods_} pods x {SPIN_POOL_PER_POD} + {PG_RESERVED} + "
               f"{MIGRATION_CONNECTIONS} = {need} > max_connections {max_conn}")
    out.append(c("pool", "max replicas x 64 pooled connections fit max_connections", pool))

    # -- PostgreSQL, migrations, dispatch -----------------------------------------------------
    def postgres():
        svc, sts = postgres_service(docs)
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
    out.append(c("postgres", "StatefulSet on a PVC, pg_isready, requests, Service", postgres))

    def migrations():
        jobs = [j for j in of_kind(docs, "Job")
                if any(c_.get("command") == ["sh", "/migrations/migrate.sh", "/migrations"]
                       for c_ in j["spec"]["template"]["spec"]["containers"])]
        expect(len(jobs) == 1, f"{len(jobs)} Jobs run `sh /migrations/migrate.sh /migrations`, want 1")
        job = jobs[0]
        podspec = job["spec"]["template"]["spec"]
        cont = [c_ for c_ in podspec["containers"] if c_.get("command", [None])[-1] == "/migrations"][0]
        ref = (env_value(cont, "DATABASE_URL") or {}).get("valueFrom", {}).get("secretKeyRef")
        expect(ref, "DATABASE_URL is not from the Secret")
        mount = [m for m in cont.get("volumeMounts") or [] if m["mountPath"] == "/migrations"]
        expect(mount, "nothing mounted at /migrations")
        vol = [v for v in podspec.get("volumes") or [] if v["name"] == mount[0]["name"]]
        expect(vol and vol[0].get("configMap"), "/migrations is not a ConfigMap volume")
        cm_name = vol[0]["configMap"]["name"]
        cms = [m for m in of_kind(docs, "ConfigMap") if name_of(m) == cm_name and ns_of(m) == ns_of(job)]
        expect(cms, f"ConfigMap {cm_name} is not in the render")
        data = {k: v.encode() for k, v in (cms[0].get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cms[0].get("binaryData") or {}).items()})
        want = spin.migration_files()
        for fname, content in want.items():
            expect(fname in data, f"sql/{fname} is missing from ConfigMap {cm_name} (list it in sql/kustomization.yaml)")
            expect(data[fname] == content, f"ConfigMap {cm_name} {fname} differs from sql/{fname}")
        stale = [k for k in data if k.endswith(".sql") and k not in want]
        expect(not stale, f"ConfigMap {cm_name} has files no longer in sql/: {stale}")
    out.append(c("migrations", "the migration Job runs sql/migrate.sh over every sql/[0-9]*.sql, byte-identical",
                 migrations))

    def dispatch():
        notify = one_spinapp_for(docs, "notify-fn")
        cron = [j for j in of_kind(docs, "CronJob")
                if "/notifications/dispatch" in yaml.safe_dump(j["spec"]["jobTemplate"])]
        expect(len(cron) == 1, f"{len(cron)} CronJobs call /notifications/dispatch, want 1")
        cron = cron[0]
        expect(cron["spec"]["schedule"] == "* * * * *", f"schedule {cron['spec']['schedule']}, want every minute")
        cont = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        script = " ".join(cont.get("command") or []) + " " + " ".join(cont.get("args") or [])
        expect("Authorization: Bearer ${NOTIFY_TOKEN}" in script, "no `Authorization: Bearer ${NOTIFY_TOKEN}` header")
        expect("${NOTIFY_URL}/notifications/dispatch" in script, "does not POST ${NOTIFY_URL}/notifications/dispatch")
        expect("POST" in script, "not a POST")
        url = (env_value(cont, "NOTIFY_URL") or {}).get("value")
        expect(url == service_url(notify), f"NOTIFY_URL {url}, want {service_url(notify)}")
        token = (env_value(cont, "NOTIFY_TOKEN") or {}).get("valueFrom", {}).get("secretKeyRef")
        want = (variable(notify, "notify_token") or {}).get("valueFrom", {}).get("secretKeyRef")
        expect(token and token == want, f"NOTIFY_TOKEN {token} is not notify-fn's notify_token {want}")
    out.append(c("dispatch", "a CronJob POSTs notify-fn's dispatch route every minute with notify_token", dispatch))

    # -- Services, Ingress, NetworkPolicies ---------------------------------------------------
    all_pods = pods(docs)

    def in_ns(ns):
        return [p for p in all_pods if p[0] == ns]

    def services_select():
        for svc in of_kind(docs, "Service"):
            sel = svc["spec"].get("selector")
            expect(sel, f"{ident(svc)} has no selector")
            hit = [p for p in in_ns(ns_of(svc)) if selector_matches({"matchLabels": sel}, p[2])]
            expect(hit, f"{ident(svc)} selects no pod")
    out.append(c("services", "every Service selects pods that exist", services_select))

    def ingress_routes():
        ings = of_kind(docs, "Ingress")
        expect(ings, "no Ingress")
        services = {(ns_of(s), name_of(s)): [p["port"] for p in s["spec"]["ports"]] for s in of_kind(docs, "Service")}
        for app in of_kind(docs, "SpinApp"):
            services[(ns_of(app), name_of(app))] = [80]  # the Service the operator creates
        paths = []
        for ing in ings:
            for rule in ing["spec"].get("rules") or []:
                for p in (rule.get("http") or {}).get("paths") or []:
                    svc = p["backend"]["service"]
                    ports = services.get((ns_of(ing), svc["name"]))
                    expect(ports is not None, f"{ident(ing)} {p['path']} -> Service {svc['name']}: none such")
                    expect(svc["port"].get("number") in ports, f"{ident(ing)} {p['path']} -> port {svc['port']}")
                    paths.append((p["path"], p["pathType"], svc["name"]))
        for route, comp in spin.routes:
            app = one_spinapp_for(docs, comp)
            prefix = route[:-4] if route.endswith("/...") else route
            hit = [x for x in paths if x[0] == prefix and x[2] == name_of(app)]
            expect(hit, f"route {route} of {comp} is not routed to Service {name_of(app)}")
        notify = name_of(one_spinapp_for(docs, "notify-fn"))
        leaks = [x for x in paths if x[0] == "/notifications/dispatch" and x[2] == notify]
        expect(not leaks, "the internal dispatch route is published")
        expect(any(x[0] == "/notifications/dispatch" and x[1] == "Exact" for x in paths),
               "no Exact rule keeps /notifications/dispatch away from notify-fn")
    out.append(c("ingress", "the Ingress routes spin.toml's routes to their SpinApps' Services", ingress_routes))

    policies = of_kind(docs, "NetworkPolicy")
    for pol in policies:
        def policy_selects(pol=pol):
            ns = ns_of(pol)
            expect([p for p in in_ns(ns) if selector_matches(pol["spec"]["podSelector"], p[2])],
                   f"{ident(pol)} selects no pod")
            for rule in pol["spec"].get("ingress") or []:
                for peer in rule.get("from") or []:
                    if "namespaceSelector" in peer or "ipBlock" in peer:
                        continue
                    expect([p for p in in_ns(ns) if selector_matches(peer["podSelector"], p[2])],
                           f"{ident(pol)} admits {peer['podSelector']}: no such pod")
        out.append(c("networkpolicy", f"{ident(pol)} selects pods that exist", policy_selects))

    def admitted(target_labels, ns, port):
        """In-namespace workloads the policies let reach a pod on port; None if open to all."""
        selecting = [p for p in policies if ns_of(p) == ns and selector_matches(p["spec"]["podSelector"], target_labels)]
        if not selecting:
            return None
        allowed = set()
        for pol in selecting:
            for rule in pol["spec"].get("ingress") or []:
                ports = [p_.get("port") for p_ in rule.get("ports") or []]
                if ports and port not in ports:
                    continue
                if not rule.get("from"):
                    return None
                for peer in rule["from"]:
                    if "podSelector" in peer and "namespaceSelector" not in peer:
                        allowed |= {p[1] for p in in_ns(ns) if selector_matches(peer["podSelector"], p[2])}
        return allowed

    def postgres_policy():
        _svc, sts = postgres_service(docs)
        labels = sts["spec"]["template"]["metadata"]["labels"]
        got = admitted(labels, ns_of(sts), 5432)
        expect(got is not None, "PostgreSQL is open to every pod")
        want = {ident(a) for a in of_kind(docs, "SpinApp")}
        want |= {p[1] for p in in_ns(ns_of(sts)) if any(env_value(c_, "DATABASE_URL") for c_ in containers_of(p[3]))
                 and p[1].startswith("Job/")}
        expect(got == want, f"PostgreSQL admits {sorted(got)}, want {sorted(want)}")
    out.append(c("networkpolicy", "PostgreSQL admits only the SpinApps and the migration Job", postgres_policy))

    def notify_policy():
        notify = one_spinapp_for(docs, "notify-fn")
        labels = [p[2] for p in all_pods if p[1] == ident(notify)][0]
        got = admitted(labels, ns_of(notify), 80)
        if got is None:
            # open to all only through an explicit component (nodeport); the base must not be
            expect(any(ident(p) == "NetworkPolicy/nodeport" for p in policies), "notify-fn is open to every pod")
            return
        cron = [ident(j) for j in of_kind(docs, "CronJob")]
        callers = {ident(a) for a in of_kind(docs, "SpinApp") if "notify_url" in
                   {v.get("name") for v in a["spec"].get("variables") or []}}
        want = callers | set(cron)
        expect(got == want, f"notify-fn admits {sorted(got)}, want {sorted(want)}")
        ingress_peer = [peer for p in policies if selector_matches(p["spec"]["podSelector"], labels)
                        for r in p["spec"].get("ingress") or [] for peer in r.get("from") or []
                        if "namespaceSelector" in peer]
        expect(ingress_peer, "notify-fn does not admit the ingress controller")
    out.append(c("networkpolicy", "notify-fn admits only event-fn, the CronJob and the ingress controller",
                 notify_policy))

    return out


def run(docs, secret, spin, crd_schemas, generated=False):
    results = []
    for family, detail, fn in checks(docs, secret, spin, crd_schemas, generated):
        try:
            fn()
            results.append((family, detail, None))
        except Failed as e:
            results.append((family, detail, str(e)))
        except Exception as e:  # a crash in a check is a failure of that check
            results.append((family, detail, f"{type(e).__name__}: {e}"))
    return results


# ---------------------------------------------------------------------------------------------
# Negative self-test: deliberately broken copies must each be flagged by the right check family


def find(docs, kind, name=None):
    return [d for d in docs if d.get("kind") == kind and (name is None or name_of(d) == name)][0]


def set_var(app, name, new):
    app["spec"]["variables"] = [new if v["name"] == name else v for v in app["spec"]["variables"]]


def mutations(spin):
    def secret_literal(docs):
        set_var(spinapp_for(docs, "event-fn")[0], "db_url", {"name": "db_url", "value": "postgres://u:p@h/db"})

    def drop_variable(docs):
        app = spinapp_for(docs, "notify-fn")[0]
        app["spec"]["variables"] = [v for v in app["spec"]["variables"] if v["name"] != "notify_token"]

    def chaining_url(docs):
        set_var(spinapp_for(docs, "event-fn")[0], "notify_url",
                {"name": "notify_url", "value": "http://notify-fn.spin.internal"})

    def wrong_db_host(docs):
        set_var(spinapp_for(docs, "notify-fn")[0], "db_host", {"name": "db_host", "value": "127.0.0.1"})

    def sql_drift(docs):
        for cm in of_kind(docs, "ConfigMap"):
            if "migrate.sh" in (cm.get("data") or {}):
                cm["data"]["migrate.sh"] += "\n# drift\n"

    def hpa_target(docs):
        of_kind(docs, "HorizontalPodAutoscaler")[0]["spec"]["scaleTargetRef"]["name"] = "event-fn-typo"

    def policy_selector(docs):
        pol = find(docs, "NetworkPolicy", "notify-fn")
        pol["spec"]["podSelector"] = {"matchLabels": {"app": "notify-fn"}}

    def postgres_open(docs):
        pol = find(docs, "NetworkPolicy", "postgres")
        pol["spec"]["ingress"][0]["from"].append({"podSelector": {}})

    def unknown_core_field(docs):
        find(docs, "StatefulSet")["spec"]["replica"] = 2

    def unknown_crd_field(docs):
        spinapp_for(docs, "event-fn")[0]["spec"]["replica"] = 2

    def executor_missing(docs):
        find(docs, "SpinAppExecutor")["metadata"]["name"] = "other"

    def too_many_replicas(docs):
        of_kind(docs, "HorizontalPodAutoscaler")[0]["spec"]["maxReplicas"] = 10

    def two_images(docs):
        spinapp_for(docs, "notify-fn")[0]["spec"]["image"] = "registry.example.com/other:1"

    def two_components(docs):
        spinapp_for(docs, "event-fn")[0]["spec"]["components"] = list(spin.components)

    def probe_path(docs):
        spinapp_for(docs, "notify-fn")[0]["spec"]["checks"]["liveness"]["httpGet"]["path"] = "/healthz"

    def committed_secret(docs):
        docs.append({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": "leak", "namespace": ns_of(docs[-1])},
                     "stringData": {"api_token": "hunter2"}})

    def dispatch_published(docs):
        ing = of_kind(docs, "Ingress")[0]
        for p in ing["spec"]["rules"][0]["http"]["paths"]:
            if p["path"] == "/notifications/dispatch":
                p["backend"]["service"]["name"] = "notify-fn"

    return [
        ("a secret variable set as a literal value", "secrets", secret_literal),
        ("a component variable left unset", "variables", drop_variable),
        ("notify_url left at service chaining", "notify_url", chaining_url),
        ("db_host left at its default", "db_host", wrong_db_host),
        ("migrate.sh drifted from sql/", "migrations", sql_drift),
        ("an HPA on a Deployment that does not exist", "hpa", hpa_target),
        ("a NetworkPolicy on labels no pod has", "networkpolicy", policy_selector),
        ("PostgreSQL opened to every pod", "networkpolicy", postgres_open),
        ("an unknown field in a StatefulSet", "schema", unknown_core_field),
        ("an unknown field in a SpinApp", "crd", unknown_crd_field),
        ("an executor missing from the namespace", "executor", executor_missing),
        ("maxReplicas beyond max_connections", "pool", too_many_replicas),
        ("the SpinApps on different images", "image", two_images),
        ("a SpinApp keeping two components", "components", two_components),
        ("a liveness check off Spin's health route", "health", probe_path),
        ("a Secret in the render", "secrets", committed_secret),
        ("the dispatch route published by the Ingress", "ingress", dispatch_published),
    ]


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--crds", type=Path, required=True)
    ap.add_argument("--secret", type=Path, required=True)
    ap.add_argument("--render-failure", action="append", default=[], metavar="NAME=FILE")
    ap.add_argument("--generated-secret", action="append", default=[], metavar="NAME",
                    help="renders (by file stem) that generate the Secret of the example")
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

    spin = Spin(args.repo)
    crd_schemas = load_crd_schemas(args.crds)
    secrets = [d for d in load_docs(args.secret) if d.get("kind") == "Secret"]
    if len(secrets) != 1:
        report("secret: k8s/secrets.env.example makes one Secret", f"{len(secrets)} Secrets")
        print(f"{passed} passed, {failed} failed")
        return 1
    secret = secrets[0]

    first = None  # the self-test breaks copies of the first render (check.sh passes k8s/ first)
    for render in args.renders:
        label = render.stem
        docs = load_docs(render)
        first = first or docs
        report(f"{label}: renders", None if docs else "empty render")
        for family, detail, error in run(docs, secret, spin, crd_schemas, label in args.generated_secret):
            report(f"{label}: {family}: {detail}", error)

    if first is None:
        report("self-test", "no render to test")
    else:
        baseline = {f for f, _d, err in run(first, secret, spin, crd_schemas) if err}
        for what, family, mutate in mutations(spin):
            if family in baseline:
                report(f"self-test: {what} is flagged", f"`{family}` checks fail before the copy is broken")
                continue
            broken = copy.deepcopy(first)
            try:
                mutate(broken)
            except Exception as e:
                report(f"self-test: {what} is flagged", f"could not break the copy: {type(e).__name__}: {e}")
                continue
            flagged = [d for f, d, err in run(broken, secret, spin, crd_schemas) if err and f == family]
            report(f"self-test: {what} is flagged",
                   None if flagged else f"no `{family}` check failed on the broken copy")

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
