#!/usr/bin/env python3
"""Every query of the Grafana dashboard, evaluated by a real Prometheus scraping the live services.

    scripts/dev --once -- python3 scripts/lib/check_dashboard.py [--verbose]

Run it while scripts/dev's stack is up (that is what `scripts/dev --once -- COMMAND` is for): it
starts its own Prometheus (PROMETHEUS_BIN, else `prometheus` on PATH; scripts/lib/deploy_checks.sh
installs Debian's package) on 127.0.0.1:DEV_PROMETHEUS_PORT (19090), with its data in
.local/prometheus/, scraping the /metrics of ingress (:3001), forwarder (:9091), reply (:9092)
and callback (:3000) every second. Once every target has been scraped at least twice, the `expr`
of every panel target is sent to /api/v1/query, with Grafana's variables ($__rate_interval,
$__interval, $__range, …) and the dashboard's template variables replaced by concrete values.

A query fails when Prometheus does not answer `success` (it does not parse, or cannot be
evaluated), or when it answers nothing although the series it reads exist: either every series
selector in it matches series (so the query itself loses them: a `by` or `on` that drops the
labels a join needs, …), or a metric it reads was exported by none of the four services after the
conversation. A query that answers nothing only because the services exported no series that one
of its selectors asks for (a label value for an event that did not happen, such as
outcome!="ok" after a clean conversation) is listed as empty, and passes.

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "wacenter.json"
WORK = ROOT / ".local" / "prometheus"
# The job names of deploy/prometheus/prometheus.yml, on the ports scripts/dev runs the services on.
TARGETS = {
    "wacenter-ingress": 3001,
    "wacenter-forwarder": 9091,
    "wacenter-reply": 9092,
    "wacenter-callback": 3000,
}
SCRAPE_SECONDS = 1
# Grafana's values, as the provisioned datasource (deploy/grafana/provisioning/datasources/
# prometheus.yml, timeInterval 15s) gives them: $__interval is never below the scrape interval
# and $__rate_interval never below four of them.
GRAFANA_SCRAPE_INTERVAL = 15
HINT_SERVICES = "run it while the services are up: scripts/dev --once -- python3 scripts/lib/check_dashboard.py"
HINT_PROMETHEUS = (
    "install it with: source scripts/lib/common.sh && source scripts/lib/deploy_checks.sh && ensure_prometheus "
    "(Debian's prometheus package), or set PROMETHEUS_BIN"
)

# Never through a proxy: everything here is on this machine.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CheckError(Exception):
    pass


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with OPENER.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --------------------------------------------------------------------------------------------
# The dashboard's queries, with Grafana's variables replaced
# --------------------------------------------------------------------------------------------

def seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+)([smhdw])", text)
    if not m:
        raise CheckError(f"cannot read the duration {text!r}")
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m[2]]


def duration(total: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if total % size == 0:
            return f"{total // size}{unit}"
    return f"{total}s"


def iter_panels(panels: list[dict]):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels") or [])


def variable_values(dash: dict) -> dict[str, str]:
    """Grafana's built-in variables and the dashboard's own template variables -> a value."""
    time_from = str((dash.get("time") or {}).get("from", "now-6h"))
    m = re.fullmatch(r"now-(\d+[smhdw])", time_from)
    range_s = seconds(m[1]) if m else 6 * 3600
    # A panel about 1000 pixels wide shows the range in about 1000 steps; never below the
    # datasource's scrape interval.
    interval_s = max(GRAFANA_SCRAPE_INTERVAL, range_s // 1000)
    rate_s = max(interval_s + GRAFANA_SCRAPE_INTERVAL, 4 * GRAFANA_SCRAPE_INTERVAL)
    values = {
        "__interval": duration(interval_s),
        "__interval_ms": str(interval_s * 1000),
        "__rate_interval": duration(rate_s),
        "__rate_interval_ms": str(rate_s * 1000),
        "__range": duration(range_s),
        "__range_s": str(range_s),
        "__range_ms": str(range_s * 1000),
    }
    for var in (dash.get("templating") or {}).get("list") or []:
        name = var.get("name")
        if not name or var.get("type") == "adhoc":
            continue
        current = (var.get("current") or {}).get("value")
        if var.get("type") in ("constant", "textbox") and current in (None, ""):
            current = var.get("query")
        if isinstance(current, list):
            current = "|".join(current) if current else None
        if current in ("$__all", "All"):
            current = var.get("allValue") or ".*"
        if current in (None, ""):
            raise CheckError(
                f"{DASHBOARD.relative_to(ROOT)}: template variable ${name} has no current value: "
                "give it one so its queries can be evaluated"
            )
        values[name] = str(current)
    return values


VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def substitute(expr: str, values: dict[str, str]) -> tuple[str, list[str]]:
    unknown: list[str] = []

    def one(m: re.Match) -> str:
        name = m[1] or m[2] or m[3]
        if name[0].isdigit():  # $1 in label_replace: not a variable
            return m[0]
        if name not in values:
            unknown.append(name)
            return m[0]
        return values[name]

    return VARIABLE.sub(one, expr), unknown


def dashboard_queries(values: dict[str, str]) -> list[dict]:
    dash = json.loads(DASHBOARD.read_text())
    queries = []
    for p in iter_panels(dash.get("panels") or []):
        for t in p.get("targets") or []:
            expr = (t.get("expr") or "").strip()
            if not expr:
                continue
            concrete, unknown = substitute(expr, values)
            queries.append({
                "where": f"panel {p.get('id')} {p.get('title')!r} query {t.get('refId')}",
                "expr": expr,
                "query": concrete,
                "unknown": unknown,
            })
    return queries


# --------------------------------------------------------------------------------------------
# Series selectors in a query (to tell why an empty answer is empty; Prometheus evaluates them)
# --------------------------------------------------------------------------------------------

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan", "atan2", "start", "end",
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile", "limitk", "limit_ratio",
}


def blank(text: str, pattern: str, keep_ends: bool = True) -> str:
    """Replaces what `pattern` matches with spaces (its first and last character kept)."""
    def one(m: re.Match) -> str:
        s = m[0]
        if keep_ends and len(s) >= 2:
            return s[0] + " " * (len(s) - 2) + s[-1]
        return " " * len(s)
    return re.sub(pattern, one, text)


def selectors(expr: str) -> list[tuple[str | None, str]]:
    """(metric name or None, selector text) for every vector selector in `expr`."""
    masked = blank(expr, r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
    masked = blank(masked, r"\{[^}]*\}")
    masked = blank(masked, r"\[[^\]]*\]")
    masked = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)(\s*)\(([^)]*)\)",
                    lambda m: " " * len(m[0]), masked)
    found: list[tuple[str | None, str]] = []
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", masked):
        name = m[0]
        rest = masked[m.end():].lstrip()
        if name in KEYWORDS or rest.startswith("("):
            continue
        text = name
        if rest.startswith("{"):
            start = masked.index("{", m.end())
            end = masked.index("}", start)
            text = name + expr[start:end + 1]
        found.append((name, text))
    for m in re.finditer(r"\{", masked):
        before = masked[:m.start()].rstrip()
        if not before or not re.search(r"[\w:]$", before):
            end = masked.index("}", m.start())
            found.append((None, expr[m.start():end + 1]))
    return found


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------

class Prometheus:
    def __init__(self, binary: str, port: int) -> None:
        self.binary, self.port = binary, port
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.log = WORK / "prometheus.log"

    def start(self) -> None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", self.port)) == 0:
                raise CheckError(f"port {self.port} is in use: stop what uses it, or set DEV_PROMETHEUS_PORT")
        shutil.rmtree(WORK, ignore_errors=True)
        (WORK / "data").mkdir(parents=True)
        config = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS}s",
                       "evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                for job, port in TARGETS.items()
            ],
        }
        (WORK / "prometheus.yml").write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={WORK / 'prometheus.yml'}",
                 f"--storage.tsdb.path={WORK / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise CheckError(f"prometheus exited with status {self.proc.returncode}: {self.log_tail()}")
            try:
                if get(f"{self.base}/-/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise CheckError(f"prometheus was not ready within 60 s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-5:]) + f" (whole log: {self.log.relative_to(ROOT)})"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def query(self, q: str) -> dict:
        """The whole answer of /api/v1/query (status success or error)."""
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        status, body = get(url)
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {"status": "error", "error": f"HTTP {status}, not JSON: {body[:200]!r}"}
        return answer

    def vector(self, q: str) -> list[dict]:
        answer = self.query(q)
        if answer.get("status") != "success":
            raise CheckError(f"{q}: {answer.get('errorType', '')} {answer.get('error', '')}".strip())
        return answer["data"]["result"]

    def version(self) -> str:
        try:
            status, body = get(f"{self.base}/api/v1/status/buildinfo")
            return json.loads(body)["data"]["version"]
        except (OSError, ValueError, KeyError):
            return "?"

    def wait_for_scrapes(self, count: int, limit: float = 60) -> dict[str, int]:
        """Waits until every target is up and has been scraped at least `count` times."""
        deadline = time.time() + limit
        scrapes: dict[str, int] = {}
        while time.time() < deadline:
            scrapes = {r["metric"]["job"]: int(float(r["value"][1]))
                       for r in self.vector("sum by (job) (count_over_time(up[10m]))")}
            up = {r["metric"]["job"]: float(r["value"][1]) for r in self.vector("up")}
            if all(scrapes.get(j, 0) >= count and up.get(j) == 1 for j in TARGETS):
                return scrapes
            time.sleep(0.25)
        problems = []
        try:
            _, body = get(f"{self.base}/api/v1/targets")
            for t in json.loads(body)["data"]["activeTargets"]:
                if t.get("health") != "up":
                    problems.append(f"{t['labels'].get('job')} {t.get('scrapeUrl')}: {t.get('lastError') or t.get('health')}")
        except (OSError, ValueError, KeyError):
            pass
        raise CheckError(f"the targets were not all up and scraped {count} times within {limit:.0f} s "
                         f"(scrapes so far: {scrapes}); {'; '.join(problems) or 'see ' + str(self.log)}")


# --------------------------------------------------------------------------------------------

def why_empty(prom: Prometheus, q: dict) -> tuple[bool, str]:
    """(is it a failure, what to say) for a query that answered nothing."""
    sels = selectors(q["query"])
    if not sels:
        return True, "answers nothing, and reads no series"
    missing_names = []
    empty_selectors = []
    for name, text in sels:
        if prom.vector(f"count({text})"):
            continue
        if name and not prom.vector(f'count({{__name__="{name}"}})'):
            missing_names.append(name)
        else:
            empty_selectors.append(text)
    if missing_names:
        return True, (f"reads {', '.join(sorted(set(missing_names)))}, which none of the four services "
                      "exported after the conversation")
    if not empty_selectors:
        return True, ("answers nothing although every series it reads exists "
                      f"({', '.join(t for _, t in sels)}): the query loses them")
    return False, (f"no {', '.join(empty_selectors)} series after the conversation "
                   "(nothing of that kind happened)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--verbose", "-v", action="store_true", help="print every query and what it answered")
    args = ap.parse_args()

    binary = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if not binary or not os.access(binary, os.X_OK):
        print(f"error: prometheus is not installed; {HINT_PROMETHEUS}", file=sys.stderr)
        return 2
    port = int(os.environ.get("DEV_PROMETHEUS_PORT", "19090"))
    if port in TARGETS.values():
        print(f"error: DEV_PROMETHEUS_PORT={port} is one of the services' ports", file=sys.stderr)
        return 2

    problems: list[str] = []
    try:
        values = variable_values(json.loads(DASHBOARD.read_text()))
        queries = dashboard_queries(values)
    except (OSError, ValueError, CheckError) as e:
        print(f"error: {DASHBOARD.relative_to(ROOT)}: {e}", file=sys.stderr)
        return 1
    for job, p in TARGETS.items():
        try:
            status, _ = get(f"http://127.0.0.1:{p}/metrics", timeout=5)
        except OSError as e:
            status = str(e)
        if status != 200:
            print(f"error: {job} does not serve http://127.0.0.1:{p}/metrics ({status}); {HINT_SERVICES}", file=sys.stderr)
            return 1

    prom = Prometheus(binary, port)
    empty: list[str] = []
    answered = 0
    try:
        prom.start()
        print(f"-- Prometheus {prom.version()} on 127.0.0.1:{port} (data in .local/prometheus/), scraping "
              + ", ".join(f"{j.removeprefix('wacenter-')} :{p}" for j, p in TARGETS.items())
              + f" every {SCRAPE_SECONDS} s")
        scrapes = prom.wait_for_scrapes(2)
        print(f"-- every target up, scraped {min(scrapes.values())} times or more")
        shown = ", ".join(f"${k}={values[k]}" for k in ("__rate_interval", "__interval", "__range"))
        print(f"-- {len(queries)} queries from {DASHBOARD.relative_to(ROOT)} ({shown})")
        for q in queries:
            where = q["where"]
            if q["unknown"]:
                problems.append(f"{where}: no value for ${', $'.join(q['unknown'])} in {q['expr']}")
                continue
            answer = prom.query(q["query"])
            if answer.get("status") != "success":
                problems.append(f"{where}: Prometheus answered {answer.get('status')}: "
                                f"{answer.get('errorType', '')} {answer.get('error', '')} in {q['query']}")
                continue
            answered += 1
            data = answer["data"]
            result = data["result"]
            if data["resultType"] in ("vector", "matrix") and not result:
                failure, why = why_empty(prom, q)
                if failure:
                    problems.append(f"{where}: {why}: {q['query']}")
                else:
                    empty.append(f"{where}: {why}")
                continue
            if args.verbose:
                if data["resultType"] in ("vector", "matrix"):
                    got = ", ".join(f"{r['metric'] or '{}'}={r['value'][1] if 'value' in r else '…'}" for r in result[:4])
                    print(f"  ok     {where}: {len(result)} series ({got}{', …' if len(result) > 4 else ''})")
                else:
                    print(f"  ok     {where}: {data['resultType']} {result[1]}")
    except CheckError as e:
        problems.append(str(e))
    finally:
        prom.stop()

    for e in empty:
        print(f"  empty  {e}")
    if problems:
        print(f"\n{len(problems)} problem(s) with the dashboard's queries against the live services:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"dashboard queries ok: {answered} of {len(queries)} answered by Prometheus, "
          f"{answered - len(empty)} with data, {len(empty)} empty only for want of such events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
