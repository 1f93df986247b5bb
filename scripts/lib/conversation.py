"""The scripted conversation scripts/dev plays against a running wacenter, shown as it happens.

Standard library only: it talks to the simulators' /_sim/ inspection API and the services'
health endpoints.
"""
import base64
import json
import sys
import time
import urllib.error
import urllib.request

OTOMAX = "http://127.0.0.1:5000"
WHATSAPP = "http://127.0.0.1:3100"
CALLBACK = "http://127.0.0.1:3000"
RESELLER = "628123456789"
STRANGER = "628777000999"
# The business's two numbers (scripts/dev's routing table: terminals 1 and 2).
FIRST_NUMBER = "628987654321@s.whatsapp.net"
SECOND_NUMBER = "628987654322@s.whatsapp.net"


def http(method, url, body=None, auth=None, timeout=5):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("content-type", "application/json")
    if auth:
        req.add_header("authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_for(what, check, limit=60):
    started = time.time()
    while time.time() - started < limit:
        try:
            result = check()
            if result:
                return result
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    sys.exit(f"error: timed out waiting for {what}; see .local/dev/logs/")


def clock():
    return time.strftime("%H:%M:%S")


def show(arrow, who, text):
    print(f"  {clock()} {arrow} {who:<28} {text}", flush=True)


def ready():
    for name, port in [("callback", 3000), ("ingress", 3001), ("forwarder", 9091), ("reply", 9092)]:
        wait_for(f"{name} to be ready", lambda: http("GET", f"http://127.0.0.1:{port}/readyz")[0] == 200)
    wait_for("the OtomaX simulator", lambda: http("GET", f"{OTOMAX}/_sim/stats")[0] == 200)
    wait_for("the WhatsApp simulator", lambda: http("GET", f"{WHATSAPP}/_sim/stats")[0] == 200)


def step(title, sender, text, expect_result=False, number=FIRST_NUMBER):
    print(f"\n{title}", flush=True)
    inbox_before = len(http("GET", f"{OTOMAX}/_sim/inbox")[1])
    sent_before = len(http("GET", f"{WHATSAPP}/_sim/outbox")[1])
    outbox_before = len(http("GET", f"{OTOMAX}/_sim/outbox")[1])
    show("→", f"WhatsApp {sender}", f"{text}   (to {number.split('@')[0]})")
    status, answer = http("POST", f"{WHATSAPP}/_sim/incoming", {"from": sender, "text": text, "device": number})
    if status != 200 or answer.get("webhook_status") != 200:
        sys.exit(f"error: the webhook was refused: {answer}")
    show("→", "ingress", f"webhook accepted, queued on NATS (message {answer['id']})")
    row = wait_for("InsertInbox", lambda: http("GET", f"{OTOMAX}/_sim/inbox?since={inbox_before}")[1])[0]
    show("→", "OtomaX InsertInbox", f"kode_inbox {row['kode_inbox']}, status {row['status']}, terminal {row['body']['kode_terminal']}")
    reply = wait_for("the auto-reply", lambda: http("GET", f"{WHATSAPP}/_sim/outbox?since={sent_before}")[1])[0]
    show("←", f"auto-reply to {reply['body']['phone']}", f"{reply['body']['message']}   (from {reply['device_id'].split('@')[0]})")
    if reply["device_id"] != number:
        sys.exit(f"error: the auto-reply went out through {reply['device_id']}, not {number}")
    if expect_result:
        out = wait_for("the outbox row", lambda: [r for r in http("GET", f"{OTOMAX}/_sim/outbox?since={outbox_before}")[1] if r["state"] == "delivered"])[0]
        show("←", "OtomaX outbox callback", f"kode {out['row']['kode']}: {out['row']['pesan'][:60]}")
        result = wait_for("the transaction result", lambda: http("GET", f"{WHATSAPP}/_sim/outbox?since={sent_before + 1}")[1])[0]
        show("←", f"WhatsApp {result['body']['phone']}", result["body"]["message"])
        acked = wait_for("UpdateStatusOutbox", lambda: [r for r in http("GET", f"{OTOMAX}/_sim/outbox")[1] if r["row"]["kode"] == out["row"]["kode"] and r.get("update_status")])[0]
        show("→", "OtomaX UpdateStatusOutbox", f"kode {acked['row']['kode']} status {acked['update_status']} (delivered)")


def main():
    print("\nwaiting for the services to be ready…", flush=True)
    ready()
    status, body = http("POST", f"{CALLBACK}/otomax/set-callback", auth="admin:admin")
    if status != 200:
        sys.exit(f"error: set-callback failed: {body}")
    print(f"registered the outbox callback with OtomaX: {body['results'].get('url', '')}")
    step("1. A reseller buys 5k credit for 08123456789", RESELLER, "S5.08123456789.1234", expect_result=True)
    step("2. Someone who is not a reseller tries the same", STRANGER, "S5.08123456789.1234")
    step("3. A reseller types something OtomaX does not understand", RESELLER, "halo kak, isi pulsa dong")
    step("4. A reseller writes to the business's second number (terminal 2)", RESELLER, "S.1234", number=SECOND_NUMBER)
    print("\nconversation done: every message went WhatsApp → NATS → OtomaX → NATS → WhatsApp.", flush=True)


if __name__ == "__main__":
    main()
