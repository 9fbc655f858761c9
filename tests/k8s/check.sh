#!/usr/bin/env bash
# Offline checks of k8s/. Renders `kubectl kustomize k8s/` and k8s/ with each optional component of
# k8s/components/ enabled; makes the Secrets of k8s/secrets.env.example with k8s/create-secrets.sh
# exactly as users make theirs of k8s/secrets.env; and checks them all with check_manifests.py
# (Kubernetes and SpinKube schemas, spin.toml, sql/, openapi.yaml, Pod Security, NetworkPolicy
# reachability, checkov with tests/k8s/checkov.yaml, and a negative self-test).
#
#   bash tests/k8s/check.sh          # last line: `N passed, M failed`; exit 1 on any failure
#
# Needs kubectl (for its kustomize) and python3; installs the pinned Python packages of
# tests/k8s/requirements.txt (checkov among them) into target/k8s-venv on first use, or when they
# change. The SpinKube CRDs are read from ../shared/k8s-crds beside the repository (or $K8S_CRDS).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
top=$(git -C "$repo" rev-parse --show-toplevel 2>/dev/null || echo "$repo")
crds=${K8S_CRDS:-$(cd "$top/.." && pwd)/shared/k8s-crds}

fail() { echo "$1" >&2; echo "0 passed, 1 failed"; exit 1; }
command -v kubectl >/dev/null || fail "kubectl is needed (kubectl kustomize)"
[ -d "$crds" ] || fail "SpinKube CRDs not found at $crds: set K8S_CRDS to a directory holding \
core.spinkube.dev_spinapps.yaml and core.spinkube.dev_spinappexecutors.yaml (spin-operator v0.6.1)"

# The pinned checker dependencies, in a venv under the git-ignored target/.
venv=$repo/target/k8s-venv
stamp=$venv/.requirements
if ! cmp -s "$here/requirements.txt" "$stamp" 2>/dev/null; then
    rm -rf "$venv"
    echo "installing tests/k8s/requirements.txt into $venv (checkov: a minute or two)" >&2
    if ! { python3 -m venv "$venv" &&
           "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"; } >&2; then
        rm -rf "$venv"
        fail "could not install tests/k8s/requirements.txt into $venv"
    fi
    cp "$here/requirements.txt" "$stamp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/out"
failures=()

render() { # render NAME DIR
    if ! kubectl kustomize "$2" >"$work/out/$1.yaml" 2>"$work/$1.err"; then
        rm -f "$work/out/$1.yaml"
        failures+=(--render-failure "$1=$work/$1.err")
    fi
}

# 1. What `kubectl apply -k k8s/` applies.
render k8s "$repo/k8s"

# 2. k8s/ with each optional component enabled in k8s/spin/ (the SpinApps' namespace), in a copy of
#    k8s/ and sql/ (k8s/restricted/ includes ../../sql).
for component in "$repo"/k8s/components/*/; do
    [ -f "$component/kustomization.yaml" ] || continue
    name=$(basename "$component")
    copy=$work/tree-$name
    mkdir -p "$copy"
    cp -r "$repo/k8s" "$repo/sql" "$copy/"
    if ! "$venv/bin/python" - "$copy/k8s/spin/kustomization.yaml" "../components/$name" 2>"$work/k8s+$name.err" <<'PY'
import sys, yaml
path, component = sys.argv[1], sys.argv[2]
doc = yaml.safe_load(open(path))
doc["components"] = (doc.get("components") or []) + [component]
open(path, "w").write(yaml.safe_dump(doc, sort_keys=False))
PY
    then
        failures+=(--render-failure "k8s+$name=$work/k8s+$name.err")
        continue
    fi
    render "k8s+$name" "$copy/k8s"
done

# 3. The Secrets, made as README.md says, of the committed example.
bash "$repo/k8s/create-secrets.sh" --print "$repo/k8s/secrets.env.example" >"$work/secrets.yaml" \
    || fail "k8s/create-secrets.sh --print k8s/secrets.env.example failed"

# k8s/ first: the self-test breaks copies of the first render.
renders=()
for f in "$work/out/k8s.yaml" "$work"/out/*.yaml; do
    if [ -f "$f" ] && [[ " ${renders[*]-} " != *" $f "* ]]; then renders+=("$f"); fi
done

"$venv/bin/python" "$here/check_manifests.py" --repo "$repo" --crds "$crds" --secrets "$work/secrets.yaml" \
    --checkov "$venv/bin/checkov" "${failures[@]}" "${renders[@]}"
