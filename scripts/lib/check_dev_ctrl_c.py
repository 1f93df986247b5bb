#!/usr/bin/env python3
"""One Ctrl-C stops `scripts/dev` and gives the prompt back.

Runs scripts/dev as a terminal would (its own process group, SIGINT not ignored: a shell's `&`
would start it with SIGINT ignored), waits until it says it is running, sends SIGINT to the
whole group as Ctrl-C does, and fails unless the script has exited within 60 s having said
"stopped" once.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    with tempfile.TemporaryFile(mode="w+") as out:
        dev = subprocess.Popen(
            ["scripts/dev"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

        def text() -> str:
            out.seek(0)
            return out.read()

        deadline = time.monotonic() + 300
        while "Press Ctrl-C to stop" not in text():
            if dev.poll() is not None:
                print(text()[-2000:])
                print("error: scripts/dev ended before it was up", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                os.killpg(dev.pid, signal.SIGTERM)
                print("error: scripts/dev was not up after 5 minutes", file=sys.stderr)
                return 1
            time.sleep(0.5)
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            print("\n".join(text().splitlines()[-5:]))
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait()
            print("error: scripts/dev still running 60 s after one Ctrl-C: one Ctrl-C must "
                  "stop everything and return the prompt", file=sys.stderr)
            return 1
        stopped = text().count("stopped; logs are in")
        if stopped != 1:
            print("\n".join(text().splitlines()[-5:]))
            print(f'error: scripts/dev said "stopped" {stopped} times after one Ctrl-C',
                  file=sys.stderr)
            return 1
    print("one Ctrl-C stopped scripts/dev and returned the prompt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
