#!/usr/bin/env bash
# Checks the deployment files without a cluster or a container engine (none is available here or
# in CI): every plain Kubernetes resource against the Kubernetes schemas (kubernetes-validate
# --strict, from PyPI), and the systemd units with `systemd-analyze verify` under a temporary root
# holding the built binary where the units expect it. The Dockerfiles are not built here.
# Usage: deploy/check.sh PATH-TO-ZEROHOP-BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: deploy/check.sh PATH-TO-ZEROHOP-BINARY}

venv=target/deploy-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import kubernetes_validate' 2>/dev/null ||
  "$venv/bin/pip" install -q --disable-pip-version-check 'kubernetes-validate==1.37.0'
# Every resource but the kustomization itself (a kustomize file, no Kubernetes schema).
mapfile -t manifests < <(ls deploy/kubernetes/*.yaml | grep -v kustomization.yaml)
"$venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
# Every file the kustomization lists exists, and every manifest is listed.
for m in "${manifests[@]}"; do
  grep -qx "  - $(basename "$m")" deploy/kubernetes/kustomization.yaml ||
    { echo "deploy/kubernetes/kustomization.yaml does not list $(basename "$m")" >&2; exit 1; }
done

if command -v systemd-analyze >/dev/null; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/usr/local/bin" "$root/usr/lib/systemd" "$root/bin" "$root/etc/systemd/system"
  cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
  cp /bin/kill "$root/bin/kill"
  cp "$bin" "$root/usr/local/bin/zerohop"
  cp deploy/systemd/*.service "$root/etc/systemd/system/"
  for u in deploy/systemd/*.service; do
    out=$(systemd-analyze verify --root="$root" "$root/etc/systemd/system/$(basename "$u")" 2>&1) || {
      echo "$out" >&2
      exit 1
    }
    # Unknown keys are only warnings to systemd: refuse them here.
    if [ -n "$out" ]; then
      echo "$out" >&2
      exit 1
    fi
  done
  echo "deploy: $(ls deploy/systemd/*.service | wc -l) systemd units verified"
else
  echo "deploy: systemd-analyze not installed; systemd units not verified" >&2
fi
echo "deploy: ${#manifests[@]} Kubernetes manifests valid (strict)"
