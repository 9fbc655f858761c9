#!/usr/bin/env bash
# Creates or updates the Secrets `event-management-secrets` from k8s/secrets.env: one in each of the
# app's two namespaces (README.md, "Pod Security"), each with only the keys that namespace's pods
# read. Creates the namespaces when they do not exist yet (`kubectl apply -k k8s/` labels them).
#
#   k8s/create-secrets.sh [ENV_FILE]           # applies them; ENV_FILE defaults to k8s/secrets.env
#   k8s/create-secrets.sh --print [ENV_FILE]   # prints them as YAML instead; needs no cluster
#
# tests/k8s/check.sh makes the Secrets of k8s/secrets.env.example with --print and fails when a pod
# reads a key its namespace's Secret lacks, or a Secret holds a key no pod of its namespace reads.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
print=false
if [ "${1-}" = --print ]; then
    print=true
    shift
fi
env_file=${1:-$here/secrets.env}
[ -r "$env_file" ] || { echo "cannot read $env_file (README.md, \"Create the Secrets\")" >&2; exit 1; }

name=event-management-secrets
# The `namespace:` knob of k8s/DIR/kustomization.yaml.
namespace_of() { sed -n 's/^namespace: *//p' "$here/$1/kustomization.yaml"; }
restricted=$(namespace_of restricted)
spin=$(namespace_of spin)

# secret NAMESPACE KEY... [-- OPTIONAL_KEY...]: the Secret for NAMESPACE holding KEY... of the env
# file (each must have a value) and OPTIONAL_KEY... (empty, or absent from the file, means unset:
# the components treat an empty token variable as not configured), as YAML.
secret() {
    local namespace=$1 key optional=false
    shift
    local lines=()
    for key; do
        if [ "$key" = -- ]; then
            optional=true
            continue
        fi
        local line
        line=$(grep -E "^$key=" "$env_file" | tail -n 1 || true)
        if ! $optional && [ "${line#*=}" = "" ]; then
            echo "$env_file: no value for $key" >&2
            return 1
        fi
        lines+=("${line:-$key=}")
    done
    printf '%s\n' "${lines[@]}" |
        kubectl create secret generic "$name" --namespace "$namespace" --from-env-file=/dev/stdin \
            --dry-run=client -o yaml
}

secrets() {
    # PostgreSQL (its superuser's password), the migration Job (that password in its bootstrap
    # step; the migration role's and the functions' roles' passwords), the dispatch CronJob
    # (notify_token).
    secret "$restricted" postgres_password migrator_db_password event_fn_db_password \
        notify_fn_db_password notify_token
    echo ---
    # The SpinApps, each function's database URL as its own role (README.md, "Database roles");
    # the rotation tokens and the read-only token are optional (README.md, "Security model").
    secret "$spin" event_fn_db_url notify_fn_db_url api_token notify_token \
        -- api_token_next notify_token_next api_read_token
}

if $print; then
    secrets
else
    yaml=$(secrets)
    for namespace in "$restricted" "$spin"; do
        kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"
    done
    printf '%s\n' "$yaml" | kubectl apply -f -
fi
