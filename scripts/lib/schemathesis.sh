# Fuzzes the callback service's REST API with schemathesis, driven by the service's own OpenAPI
# document (GET /openapi.json, committed as proto/openapi.json).
#
# Sourced by scripts/test (after scripts/lib/common.sh) for its `run_schemathesis` function, or run
# on its own: `bash scripts/lib/schemathesis.sh`. It starts everything it needs on free loopback
# ports and stops it again: a private nats-server, `wacenter sim otomax`, and `wacenter-callback`
# configured only through explicit environment variables (nothing inherited from the caller's
# environment or a config file).
#
# Knobs (environment): SCHEMATHESIS_MAX_EXAMPLES (default 30 per operation), SCHEMATHESIS_MAX_TIME
# (seconds, default 300), SCHEMATHESIS_SEED (reproduce a run; default random),
# SCHEMATHESIS_WORKERS (default 1: with more, operations run in threads and hypothesis calls
# `ast.parse` from several at once, which CPython 3.11.7 can answer with "SystemError: AST
# constructor recursion depth mismatch", failing a run whose API checks all passed),
# SCHEMATHESIS_ARGS (more `schemathesis run` options, e.g.
# "--include-path /otomax/test --report har"). Reports and service logs go to .local/schemathesis/.

# Pinned: checks and CLI flags change between schemathesis releases.
SCHEMATHESIS_VERSION="4.32.5"

if ! declare -F ensure_python_packages >/dev/null; then
  # shellcheck source=common.sh
  source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
fi

# A TCP port on 127.0.0.1 nobody listens on right now.
_st_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until `url` answers 200, or fails after `seconds`, showing `log` to say why.
_st_wait_for() {
  local url="$1" seconds="$2" log="$3" what="$4" i
  for ((i = 0; i < seconds * 10; i++)); do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  printf 'error: %s did not become ready at %s within %ss; its log:\n' "$what" "$url" "$seconds" >&2
  tail -n 30 "$log" >&2 || true
  return 1
}

# Runs in a subshell so its EXIT trap and `set -e` never leak into the caller.
run_schemathesis() (
  set -euo pipefail
  cd "$ROOT"
  require_cargo
  ensure_nats_server
  ensure_python_packages "schemathesis==$SCHEMATHESIS_VERSION"
  command -v curl >/dev/null 2>&1 || die "curl is needed to wait for the services"

  say "building wacenter and wacenter-callback (debug)"
  cargo build --quiet --bin wacenter --bin wacenter-callback
  local bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

  # Not `local`: the EXIT trap reads them (this function runs in its own subshell anyway).
  out="$LOCAL/schemathesis"
  mkdir -p "$out"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/wacenter-schemathesis.XXXXXX")"
  pids=()
  # Stops exactly the processes started here, by PID, newest first (the callback service before
  # the NATS it drains into), SIGKILL for any still running after 15 s; removes the NATS store.
  cleanup() {
    local i pid waited
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
      pid="${pids[$i]}"
      kill "$pid" 2>/dev/null || continue
      for ((waited = 0; waited < 150; waited++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
  }
  trap cleanup EXIT

  local nats_port sim_port app_port
  nats_port="$(_st_free_port)"
  sim_port="$(_st_free_port)"
  app_port="$(_st_free_port)"
  local admin_user="schemathesis" admin_pass="st-admin-pass-1"
  local callback_secret="st-callback-secret-1"
  local app_id="OtomaX.Addon" app_key="demoKey" dev_key="YAR.OtomaX.OpenApi.App"

  say "nats-server on 127.0.0.1:$nats_port"
  "$NATS_SERVER_BIN" -a 127.0.0.1 -p "$nats_port" -js -sd "$tmp/nats" >"$out/nats-server.log" 2>&1 &
  pids+=("$!")

  say "OtomaX simulator on 127.0.0.1:$sim_port"
  # R001 is the reseller in the document's examples, so lookups reach OtomaX's success path too.
  env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
    OTOMAX_APP_ID="$app_id" OTOMAX_APP_KEY="$app_key" OTOMAX_DEV_KEY="$dev_key" \
    RUST_LOG=warn LOG_FORMAT=text \
    "$bin/wacenter" sim otomax --bind 127.0.0.1 --port "$sim_port" \
    --reseller 628123456789=R001 --reseller 6285219898489=R002 \
    >"$out/otomax-sim.log" 2>&1 &
  pids+=("$!")

  say "wacenter-callback on 127.0.0.1:$app_port"
  env -i PATH="$PATH" HOME="${HOME:-/tmp}" \
    APP_PORT="$app_port" \
    NATS_URL="nats://127.0.0.1:$nats_port" \
    NATS_STREAM_REPLICAS=1 \
    OTOMAX_ENABLED=true \
    OTOMAX_API_URL="http://127.0.0.1:$sim_port/" \
    OTOMAX_APP_ID="$app_id" OTOMAX_APP_KEY="$app_key" OTOMAX_DEV_KEY="$dev_key" \
    OTOMAX_DEFAULT_RESELLER="" OTOMAX_DEFAULT_KODE_TERMINAL=1 \
    OTOMAX_EXP_SECONDS=30 OTOMAX_TIMEOUT_SECONDS=5 OTOMAX_MAX_RETRIES=1 OTOMAX_RATE_LIMIT=0 \
    OTOMAX_CALLBACK_SECRET="$callback_secret" OTOMAX_CALLBACK_ALLOW_IPS="" \
    APP_BASIC_AUTH="$admin_user:$admin_pass" \
    PUBLIC_URL="http://127.0.0.1:$app_port" \
    WA_DEFAULT_COUNTRY_CODE=62 \
    LOG_FORMAT=text RUST_LOG=warn DEBUG=false OTEL_EXPORTER_OTLP_ENDPOINT="" \
    "$bin/wacenter-callback" >"$out/wacenter-callback.log" 2>&1 &
  pids+=("$!")

  local base="http://127.0.0.1:$app_port"
  _st_wait_for "http://127.0.0.1:$sim_port/_sim/stats" 60 "$out/otomax-sim.log" "the OtomaX simulator"
  _st_wait_for "$base/readyz" 60 "$out/wacenter-callback.log" "wacenter-callback"

  # Settings the command line cannot express:
  # - credentials per security scheme of the document: basic auth for the admin routes, the
  #   callback secret (as its header) for /otomax/callback. (`--auth user:pass` would override
  #   these and leave the callback untested beyond its 401.)
  # - 502 is what the spec answers when OtomaX refuses a call (an unknown reseller code, which
  #   is most generated codes), so on the OtomaX routes, and only there, it is an expected
  #   status of not_a_server_error. Every other 5xx, and 502 anywhere else, still fails the run.
  cat >"$tmp/schemathesis.toml" <<EOF
[auth.openapi.basic_auth]
username = "$admin_user"
password = "$admin_pass"

[auth.openapi.callback_secret_header]
api_key = "$callback_secret"

[[operations]]
include-tag = "otomax"

[operations.checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "502"]
EOF

  local extra_args=()
  if [ -n "${SCHEMATHESIS_SEED:-}" ]; then extra_args+=(--seed "$SCHEMATHESIS_SEED"); fi
  # Word-split on purpose: a list of options.
  # shellcheck disable=SC2206
  if [ -n "${SCHEMATHESIS_ARGS:-}" ]; then extra_args+=($SCHEMATHESIS_ARGS); fi
  local max_time="${SCHEMATHESIS_MAX_TIME:-300}"
  say "schemathesis $SCHEMATHESIS_VERSION against $base/openapi.json"
  local status=0
  # From .local/schemathesis, so schemathesis' and hypothesis' caches (.schemathesis/,
  # .hypothesis/ in the working directory) stay out of the repository.
  cd "$out"
  # `timeout` is the hard stop should schemathesis itself hang past its own time budget.
  # /otomax/trail/live is a server-sent event stream: it never ends, so it is not fuzzed here
  # (tests/api/console.rs reads it).
  timeout --signal=INT --kill-after=30 "$((max_time + 120))" \
    schemathesis --config-file "$tmp/schemathesis.toml" run "$base/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-30}" \
    --max-time "$max_time" \
    --workers "${SCHEMATHESIS_WORKERS:-1}" \
    --request-timeout 20 \
    --report junit --report-dir "$out" \
    --no-color \
    --exclude-path /otomax/trail/live \
    "${extra_args[@]}" || status=$?

  if [ "$status" -eq 0 ]; then
    say "schemathesis passed (report: .local/schemathesis/)"
  else
    printf 'error: schemathesis failed (exit %s); report and service logs in .local/schemathesis/\n' "$status" >&2
  fi
  exit "$status"
)

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  run_schemathesis
fi
