# docs/semantics.md's current_call() example, run against a stand-in for a payment provider
# on a local port, which deduplicates charges by their Idempotency-Key as Stripe does.
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

charges: dict[str, dict] = {}  # the provider's record, by Idempotency-Key


class Provider(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers["Idempotency-Key"]
        charge = charges.setdefault(key, {"id": f"ch_{len(charges) + 1}", **body})
        reply = json.dumps(charge).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
threading.Thread(target=server.serve_forever, daemon=True).start()
PAYMENTS = f"http://127.0.0.1:{server.server_port}/v1/charges"
Path("payments.db").unlink(missing_ok=True)  # a fresh log on every run

import urllib.request

import dar
from dar import Effect, Runtime, tool

@tool(effect=Effect.MUTATE_EXTERNAL, timeout=10)
def charge(customer: str, cents: int) -> dict:
    call = dar.current_call()   # this call: the same key on every retry, after any crash
    request = urllib.request.Request(
        PAYMENTS, data=json.dumps({"customer": customer, "amount": cents}).encode(),
        headers={"Idempotency-Key": call.key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)

with Runtime("sqlite:///payments.db", tools=[charge]) as rt:
    paid = rt.call("charge", {"customer": "cus_42", "cents": 1999})
    print(paid.status, paid.output["id"])   # executed ch_1
    print(dar.current_call())               # None: outside a handler there is no call

# Had the process died after the charge, the next worker's retry would send the same key,
# and the provider would answer with ch_1 instead of charging again.
assert paid.status == "executed" and len(charges) == 1
[key] = charges
assert key.startswith("dar-") and len(key) == 36
server.shutdown()
