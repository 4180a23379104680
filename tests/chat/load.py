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

  load.py abort BASE_URL --target URL --clients 2 --aborts 1000 --abort-seconds 10
      Clients that hang up mid-request, under load. Sessions and a chat come
      from BASE_URL; everything else goes to TARGET (a service directly, or
      the gateway). CLIENTS keep-alive clients post to TARGET all along.
      Meanwhile waves of --wave raw-socket clients each send a POST (every
      fifth only half of its body) and then, 0 to --hold-ms later, all hang
      up at once, as when a load generator stops (a --reset-fraction of them
      with a RST); every --reset-at-connect-every'th (10; 0: none) instead
      resets as soon as it has connected, before sending anything. At most
      ABORTS of them, for at most
      ABORT_SECONDS. Right
      after the burst, --probes rounds of a GET and a POST on fresh
      connections must each be answered (200, 201) within --probe-timeout
      seconds, while the load goes on for --after seconds more. With --acked
      FILE, the texts of the POSTs acknowledged with 201 (load and probes) go
      to FILE, one per line. Prints one JSON line: chat_id, load acked and
      failed (during and after the burst), hang-ups (by kind, and how many
      had been answered before), probes ok, the slowest probe. Fails unless
      every probe and every load request succeeded.

Every loop is bounded in count and time.
"""
import argparse
import http.client
import json
import random
import socket
import struct
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


def raw_post(host, port, session, chat_id, text):
    """The bytes of one POST /api/messages (HTTP/1.1, Content-Length)."""
    body = json.dumps({"chat_id": chat_id, "text": text}).encode()
    head = (f"POST /api/messages HTTP/1.1\r\nHost: {host}:{port}\r\nSession-Id: {session}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head, body


def cmd_abort(args):
    pool, chat_id = setup(args.base, args.clients, "abort test")
    target = Client(args.target)  # checks loopback
    host, port = target.host, target.port
    sessions = [c.session for c in pool]
    for c in pool:
        c.close()
    load_clients = [Client(args.target) for _ in pool]
    for c, sid in zip(load_clients, sessions):
        c.session = sid
    lock = threading.Lock()
    stats = {"load_acked": 0, "load_failed": 0, "load_acked_after": 0, "load_failed_after": 0,
             "aborts": 0, "answered_before_close": 0,
             "by_kind": {"full": 0, "mid_body": 0, "reset_at_connect": 0, "reset": 0},
             "connect_failed": 0}
    first_failure = []
    acked = []
    last_id = [0]
    burst_over = threading.Event()
    stop = threading.Event()
    budget = threading.Semaphore(args.max_messages)
    t_start = time.monotonic()
    hard_end = t_start + args.warmup + args.abort_seconds + args.after + 30

    def load(i, c):
        n = 0
        while not stop.is_set() and time.monotonic() < hard_end and budget.acquire(blocking=False):
            after = burst_over.is_set()
            text = f"abort-load {i}-{n}"
            try:
                status, body = c.request("POST", "/api/messages", {"chat_id": chat_id, "text": text})
            except Exception as e:  # noqa: BLE001 - counted as a failure
                status, body = None, repr(e)
            n += 1
            with lock:
                if status == 201:
                    acked.append(text)
                    stats["load_acked"] += 1
                    stats["load_acked_after"] += after
                    last_id[0] = max(last_id[0], body.get("id", 0) if isinstance(body, dict) else 0)
                else:
                    stats["load_failed"] += 1
                    stats["load_failed_after"] += after
                    if not first_failure:
                        first_failure.append(f"load: {status} {body}")
            if status != 201:
                time.sleep(0.05)  # no busy loop against a service that is down
        c.close()

    def burst():
        """Waves of WAVE clients that each send a POST (a few only half of
        its body) and then, 0 to HOLD_MS later, all hang up at once, as when
        a load generator stops; some reset right after connecting. Until
        ABORTS or ABORT_SECONDS."""
        burst_end = time.monotonic() + args.abort_seconds
        rng = random.Random(1)
        k = 0
        while k < args.aborts and time.monotonic() < burst_end:
            wave = []
            for _ in range(min(args.wave, args.aborts - k)):
                if time.monotonic() >= burst_end:
                    break
                try:
                    s = socket.create_connection((host, port), timeout=2)
                except OSError as e:
                    with lock:
                        stats["connect_failed"] += 1
                        if not first_failure:
                            first_failure.append(f"abort: connecting: {e!r}")
                    continue
                # Some reset (SO_LINGER 0) instead of closing with a FIN.
                every = args.reset_at_connect_every
                at_connect = every > 0 and k % every == every - 1
                reset = at_connect or rng.random() < args.reset_fraction
                if reset:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if at_connect:
                    # Gone before the server has (most likely) accepted it.
                    s.close()
                    with lock:
                        stats["aborts"] += 1
                        stats["by_kind"]["reset_at_connect"] += 1
                        stats["by_kind"]["reset"] += 1
                else:
                    wave.append((s, k, "mid_body" if k % 5 == 4 else "full", reset))
                k += 1
            # Every request of the wave in flight together: most wait for a
            # database connection when the wave hangs up.
            for s, n, kind, _ in wave:
                head, body = raw_post(host, port, sessions[n % len(sessions)], chat_id, f"abort {n}")
                try:
                    s.sendall(head + (body[: len(body) // 2] if kind == "mid_body" else body))
                except OSError:
                    pass
            time.sleep(rng.uniform(0, args.hold_ms) / 1000)
            answered = 0
            for s, _, _, _ in wave:
                s.setblocking(False)
                try:
                    answered += bool(s.recv(1))
                except OSError:
                    pass
            for s, _, _, _ in wave:
                s.close()
            with lock:
                stats["aborts"] += len(wave)
                stats["answered_before_close"] += answered
                for _, _, kind, reset in wave:
                    stats["by_kind"][kind] += 1
                    stats["by_kind"]["reset"] += reset
            time.sleep(args.wave_gap_ms / 1000)

    def probe(method, path, body, want):
        """One request on a fresh connection; (ok, milliseconds, status)."""
        c = Client(args.target, timeout=args.probe_timeout)
        c.session = sessions[0]
        t0 = time.perf_counter()
        try:
            status, payload = c.request(method, path, body)
        except Exception as e:  # noqa: BLE001 - a timeout is a failed probe
            status, payload = None, repr(e)
        finally:
            c.close()
        ms = (time.perf_counter() - t0) * 1000
        ok = status == want and ms <= args.probe_timeout * 1000
        if status == 201:
            with lock:
                acked.append(body["text"])
        if not ok:
            with lock:
                if not first_failure:
                    first_failure.append(f"probe {method}: {status} {payload} in {ms:.0f} ms")
        return ok, ms, status

    loaders = [threading.Thread(target=load, args=(i, c)) for i, c in enumerate(load_clients)]
    for t in loaders:
        t.start()
    time.sleep(args.warmup)
    t_burst = time.monotonic()
    burst()
    t_over = time.monotonic()
    burst_over.set()
    probes_ok, probe_ms, statuses = 0, [], []
    for r in range(args.probes):
        since = last_id[0]
        for method, path, body, want in (
            ("GET", f"/api/messages?chat_id={chat_id}&fetch_from_message_id={since}", None, 200),
            ("POST", "/api/messages", {"chat_id": chat_id, "text": f"abort-probe {r}"}, 201),
        ):
            ok, ms, status = probe(method, path, body, want)
            probes_ok += ok
            probe_ms.append(ms)
            statuses.append(f"{method} {status}")
    time.sleep(max(0.0, args.after - (time.monotonic() - t_over)))
    stop.set()
    for t in loaders:
        t.join(args.after + 30)
    if args.acked:
        with open(args.acked, "w") as f:
            f.writelines(t + "\n" for t in acked)
    result = {
        "chat_id": chat_id,
        "clients": args.clients,
        **stats,
        "burst_seconds": round(t_over - t_burst, 3),
        "probes": 2 * args.probes,
        "probes_ok": probes_ok,
        "probe_max_ms": round(max(probe_ms), 1) if probe_ms else None,
        "probe_statuses": statuses,
        "first_failure": first_failure[0] if first_failure else None,
        "seconds": round(time.monotonic() - t_start, 3),
    }
    print(json.dumps(result))
    ok = (probes_ok == 2 * args.probes and stats["load_failed"] == 0 and stats["load_acked_after"] > 0
          and stats["aborts"] > 0)
    return 0 if ok else 1


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
    ap = sub.add_parser("abort")
    ap.add_argument("base")
    ap.add_argument("--target", required=True, help="where the load, the aborts and the probes go")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--aborts", type=int, default=1000)
    ap.add_argument("--abort-seconds", type=float, default=10, help="the burst stops after this long")
    ap.add_argument("--wave", type=int, default=200, help="clients that hang up together")
    ap.add_argument("--hold-ms", type=float, default=20, help="longest pause before a wave hangs up")
    ap.add_argument("--wave-gap-ms", type=float, default=300, help="pause between waves")
    ap.add_argument("--reset-fraction", type=float, default=0.25, help="share of hang-ups that reset (RST)")
    ap.add_argument("--reset-at-connect-every", type=int, default=10,
                    help="every N-th client resets right after connecting (0: none)")
    ap.add_argument("--warmup", type=float, default=1, help="seconds of load before the burst")
    ap.add_argument("--probes", type=int, default=3, help="rounds of GET + POST after the burst")
    ap.add_argument("--probe-timeout", type=float, default=1.0)
    ap.add_argument("--after", type=float, default=3, help="seconds of load after the burst")
    ap.add_argument("--max-messages", type=int, default=20000)
    ap.add_argument("--acked", help="write the texts acknowledged with 201 here")
    args = p.parse_args()
    sys.exit({"load": cmd_load, "restart": cmd_restart, "abort": cmd_abort}[args.command](args))


if __name__ == "__main__":
    main()
