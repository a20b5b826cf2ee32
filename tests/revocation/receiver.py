"""A credential owner's revocation endpoint, as the `webhook` binding kind calls it.

It holds credentials (tokens it issued to agents), checks Vigil's signature and the
idempotency key, and revokes. The tests (tests/api/revocation.rs) run it as a real process on a
free loopback port and read its state over HTTP. Standard library only.

Environment:
  RECEIVER_SECRET       the HMAC key Vigil signs with (VIGIL_WEBHOOK_SECRET)
  RECEIVER_CREDENTIALS  comma-separated names of the credentials it holds
  RECEIVER_FAIL_ONCE    "before": the first signed revocation request is answered 500 without
                        revoking; "after": it revokes, then answers 500 (the answer is lost);
                        unset: no failure

It prints {"port": N} on its first line of stdout, then serves:
  POST /revoke          Vigil's call: 401 on a bad or stale signature; the same answer for a key
                        seen before (revoking once); {"status": "revoked"} or {"status":
                        "failed", "reason": ...}
  POST /issue/<name>    {"token": ...}: a credential issued to an agent
  GET  /login           200 if the bearer token authenticates, 401 if it does not (revoked)
  GET  /state           what happened: revocations per credential, every request seen
"""

import hashlib
import hmac
import json
import os
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["RECEIVER_SECRET"].encode()
FAIL_ONCE = os.environ.get("RECEIVER_FAIL_ONCE", "")
MAX_SKEW = 300

lock = threading.Lock()
credentials = {
    name: {"tokens": [], "revoked": False, "revocations": 0}
    for name in os.environ.get("RECEIVER_CREDENTIALS", "").split(",")
    if name
}
answers = {}  # idempotency key -> (status, body)
requests = []  # what each POST /revoke looked like
failed_once = False


def signature_ok(headers, body):
    timestamp = headers.get("X-Vigil-Timestamp", "")
    signature = headers.get("X-Vigil-Signature", "")
    try:
        if abs(time.time() - int(timestamp)) > MAX_SKEW:
            return False
    except ValueError:
        return False
    expected = "sha256=" + hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


class Handler(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_POST(self):
        global failed_once
        body = self.body()
        if self.path.startswith("/issue/"):
            name = self.path[len("/issue/"):]
            with lock:
                if name not in credentials or credentials[name]["revoked"]:
                    return self.answer(404, {"error": "no such credential"})
                token = "tok_" + secrets.token_hex(16)
                credentials[name]["tokens"].append(token)
            return self.answer(200, {"token": token})
        if self.path != "/revoke":
            return self.answer(404, {"error": "not found"})
        key = self.headers.get("Idempotency-Key", "")
        seen = {
            "idempotency_key": key,
            "rotation_id": self.headers.get("X-Vigil-Rotation-Id"),
            "signature_ok": signature_ok(self.headers, body),
        }
        with lock:
            requests.append(seen)
            if not seen["signature_ok"]:
                seen["answered"] = 401
                return self.answer(401, {"error": "bad signature"})
            request = json.loads(body)
            seen["body"] = request
            if request.get("idempotency_key") != key:
                seen["answered"] = 400
                return self.answer(400, {"error": "the idempotency key of the body and the header differ"})
            if key in answers:
                seen["answered"] = "replayed"
                return self.answer(*answers[key])
            if FAIL_ONCE == "before" and not failed_once:
                failed_once = True
                seen["answered"] = 500
                return self.answer(500, {"error": "temporarily unavailable"})
            name = request.get("name")
            if name not in credentials:
                answers[key] = (200, {"status": "failed", "reason": "no credential named %s here" % name})
            else:
                credentials[name]["revoked"] = True
                credentials[name]["revocations"] += 1
                answers[key] = (200, {"status": "revoked"})
            if FAIL_ONCE == "after" and not failed_once:
                failed_once = True
                seen["answered"] = 500
                return self.answer(500, {"error": "revoked, then crashed before answering"})
            seen["answered"] = answers[key][0]
            return self.answer(*answers[key])

    def do_GET(self):
        if self.path == "/login":
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            with lock:
                for c in credentials.values():
                    if token in c["tokens"]:
                        return self.answer(401 if c["revoked"] else 200, {"revoked": c["revoked"]})
            return self.answer(401, {"error": "unknown token"})
        if self.path == "/state":
            with lock:
                state = {
                    "credentials": {
                        n: {"revoked": c["revoked"], "revocations": c["revocations"]} for n, c in credentials.items()
                    },
                    "requests": requests,
                }
            return self.answer(200, state)
        return self.answer(404, {"error": "not found"})

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
