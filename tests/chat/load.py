#!/usr/bin/env python3
"""Load clients for the chat stack (Python stdlib only; loopback only).

  load.py load BASE_URL --clients 100 --messages 1000
      Every client gets its own session; the first creates one chat. Then
      all clients post together, MESSAGES in total split evenly, each over
      its own keep-alive connection, no retries. Prints one JSON line:
      chat_id, acked (201s), failures, seconds, req_per_s, latency p50/p99.

  load.py restart BASE_URL --clients 20 --seconds 12 --acked FILE
      Clients post unique texts to one chat, pausing --interval between
      posts, until SECONDS have passed (and at most --max-messages in total). A POST that fails with a connection
      error, 502 or 503 is retried (same text) for up to --retry-seconds.
      Texts acknowledged with 201 are written to FILE, one per line. Prints
      one JSON line: chat_id, attempts, acked, retried, failed, and acked
      in the last third of the run (proof that posting resumed).

Every loop is bounded in count and time.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse

RETRY_STATUSES = {502, 503}


class Client:
    """One HTTP/1.1 keep-alive connection; reconnects after an error."""

    def __init__(self, base, timeout=15):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("load.py only talks to loopback")
        self.timeout = timeout
        self.conn = None
        self.session = None

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Accept": "application/json"}
        if self.session:
            headers["Session-Id"] = self.session
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        return resp.status, payload

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def new_session(self):
        status, body = self.request("GET", "/api/sessions")
        if status != 201:
            raise RuntimeError(f"GET /api/sessions: {status} {body}")
        self.session = body["session_id"]

    def create_chat(self, name):
        status, body = self.request("POST", "/api/chats", {"name": name, "description": "load test"})
        if status != 201:
            raise RuntimeError(f"POST /api/chats: {status} {body}")
        return body["id"]


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def setup(base, clients, label):
    """Sessions for every client (in parallel) and one chat."""
    pool = [Client(base) for _ in range(clients)]
    errors = []

    def start(c):
        try:
            c.new_session()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=start, args=(c,)) for c in pool]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise SystemExit(f"session setup failed ({len(errors)}): {errors[0]}")
    chat_id = pool[0].create_chat(f"{label} {time.strftime('%H:%M:%S')}")
    return pool, chat_id


def cmd_load(args):
    pool, chat_id = setup(args.base, args.clients, "load test")
    per = [args.messages // args.clients + (1 if i < args.messages % args.clients else 0) for i in range(args.clients)]
    lat, failures = [], []
    lock = threading.Lock()
    barrier = threading.Barrier(args.clients + 1)
    deadline = time.monotonic() + args.timeout

    def run(i, c):
        barrier.wait()
        for n in range(per[i]):
            if time.monotonic() > deadline:
                with lock:
                    failures.append("deadline")
                return
            t0 = time.perf_counter()
            try:
                status, body = c.request("POST", "/api/messages", {"chat_id": chat_id, "text": f"load {i}-{n}"})
            except Exception as e:  # noqa: BLE001
                status, body = None, repr(e)
            dt = time.perf_counter() - t0
            with lock:
                if status == 201:
                    lat.append(dt)
                else:
                    failures.append(f"{status} {body}")
        c.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(pool)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(args.timeout + 30)
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "chat_id": chat_id,
        "clients": args.clients,
        "acked": len(lat),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "seconds": round(seconds, 3),
        "req_per_s": round(len(lat) / seconds, 1) if seconds > 0 else None,
        "p50_ms": round(percentile(lat, 50) * 1000, 1) if lat else None,
        "p99_ms": round(percentile(lat, 99) * 1000, 1) if lat else None,
    }))
    return 0 if len(lat) == args.messages and not failures else 1


def cmd_restart(args):
    pool, chat_id = setup(args.base, args.clients, "restart test")
    acked, stats = [], {"attempts": 0, "retried": 0, "failed": 0, "late_acked": 0}
    first_error = []
    lock = threading.Lock()
    budget = threading.Semaphore(args.max_messages)
    t_start = time.monotonic()
    t_end = t_start + args.seconds
    late = t_start + args.seconds * 2 / 3

    def post(c, text):
        """POST one message, retrying transient failures; True if acked."""
        give_up = time.monotonic() + args.retry_seconds
        tries = 0
        while True:
            tries += 1
            with lock:
                stats["attempts"] += 1
            try:
                status, body = c.request("POST", "/api/messages", {"chat_id": chat_id, "text": text})
            except Exception as e:  # noqa: BLE001 - connection errors are retried
                status, body = None, repr(e)
            if status == 201:
                return True
            if (status is None or status in RETRY_STATUSES) and time.monotonic() < give_up and tries < 200:
                with lock:
                    stats["retried"] += 1
                time.sleep(0.1)
                continue
            with lock:
                stats["failed"] += 1
                if not first_error:
                    first_error.append(f"{status} {body}")
            return False

    def run(i, c):
        n = 0
        while time.monotonic() < t_end and budget.acquire(blocking=False):
            text = f"restart {i}-{n}"
            n += 1
            if post(c, text):
                with lock:
                    acked.append(text)
                    if time.monotonic() >= late:
                        stats["late_acked"] += 1
            time.sleep(args.interval)
        c.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(pool)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + args.retry_seconds + 30)
    with open(args.acked, "w") as f:
        f.writelines(t + "\n" for t in acked)
    print(json.dumps({"chat_id": chat_id, "acked": len(acked), **stats,
                      "first_error": first_error[0] if first_error else None,
                      "seconds": round(time.monotonic() - t_start, 3)}))
    return 0 if stats["failed"] == 0 and acked else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    lp = sub.add_parser("load")
    lp.add_argument("base")
    lp.add_argument("--clients", type=int, default=100)
    lp.add_argument("--messages", type=int, default=1000)
    lp.add_argument("--timeout", type=float, default=120)
    rp = sub.add_parser("restart")
    rp.add_argument("base")
    rp.add_argument("--clients", type=int, default=20)
    rp.add_argument("--seconds", type=float, default=12)
    rp.add_argument("--max-messages", type=int, default=5000)
    rp.add_argument("--interval", type=float, default=0.05, help="pause of each client between posts")
    rp.add_argument("--retry-seconds", type=float, default=30)
    rp.add_argument("--acked", required=True)
    args = p.parse_args()
    sys.exit({"load": cmd_load, "restart": cmd_restart}[args.command](args))


if __name__ == "__main__":
    main()
