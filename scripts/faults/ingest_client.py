#!/usr/bin/env python3
"""Sustained ingest against a running leadscore, for the fault scripts (standard library only).

Sends batches of events from several threads for --seconds; a batch answered 503 (or not
answered at all) is sent again after the Retry-After it was given (or 1 s), the way an SDK
retries, until it is acknowledged. Then it reads every contact's events back and reports:
events acknowledged, stored, lost (acknowledged, not stored), stored twice; the answers by
status, whether every 503 carried Retry-After and the JSON error shape, and the longest time
a batch waited to be acknowledged. Exit status 1 when an acknowledged event is missing or
one is stored twice, or an answer other than 200/503 came back.
"""

import argparse
import collections
import datetime
import json
import sys
import threading
import time
import urllib.error
import urllib.request


def post(base, key, batch, timeout):
    body = json.dumps({"batch": batch}).encode()
    request = urllib.request.Request(
        f"{base}/api/v1/events", data=body, method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
        return None, {}, str(err).encode()


def get_json(base, key, path):
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--tag", default="f")
    args = parser.parse_args()

    lock = threading.Lock()
    acked = []
    answers = collections.Counter()
    problems = []
    longest_wait = [0.0]
    unavailable = [None, None]  # first and last 503
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    began = time.monotonic()

    def worker(n):
        seq = 0
        while time.monotonic() - began < args.seconds:
            batch = []
            for j in range(args.batch):
                k = (n * 1_000_000 + seq * args.batch + j)
                at = start + datetime.timedelta(milliseconds=k)
                batch.append({"messageId": f"{args.tag}-{n}-{seq}-{j}", "type": "track", "event": "Viewed",
                              "userId": f"{args.tag}u{(seq * 7 + j) % args.users}", "timestamp": at.isoformat()})
            seq += 1
            first_try = time.monotonic()
            while True:
                status, headers, body = post(args.base, args.key, batch, timeout=30)
                with lock:
                    answers[str(status) if status else "no answer"] += 1
                if status == 200:
                    with lock:
                        acked.extend(e["messageId"] for e in batch)
                        longest_wait[0] = max(longest_wait[0], time.monotonic() - first_try)
                    break
                wait = 1.0
                if status == 503:
                    now = time.monotonic() - began
                    with lock:
                        unavailable[0] = unavailable[0] if unavailable[0] is not None else now
                        unavailable[1] = now
                    retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after")
                    try:
                        shape = json.loads(body)["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        shape = None
                    if retry_after is None or shape != "unavailable":
                        with lock:
                            problems.append(f"503 without Retry-After or the JSON shape: {retry_after!r} {body[:200]!r}")
                    else:
                        wait = float(retry_after)
                elif status is not None:
                    with lock:
                        problems.append(f"HTTP {status}: {body[:300]!r}")
                time.sleep(wait)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began

    stored = collections.Counter()
    for user in range(args.users):
        cursor = ""
        while True:
            try:
                page = get_json(args.base, args.key, f"/api/v1/contacts/{args.tag}u{user}/export?limit=50000{cursor}")
            except urllib.error.HTTPError as err:
                if err.code == 404:
                    break
                raise
            stored.update(e["messageId"] for e in page["events"])
            if not page.get("next_cursor"):
                break
            cursor = "&cursor=" + page["next_cursor"]
    acked_set = set(acked)
    lost = [m for m in acked_set if m not in stored]
    twice = [m for m, n in stored.items() if n > 1]
    outage = "none" if unavailable[0] is None else f"503s from {unavailable[0]:.1f} s to {unavailable[1]:.1f} s"
    print(f"ingest for {elapsed:.1f} s: {len(acked_set)} events acknowledged, {len(stored)} stored, "
          f"{len(lost)} lost, {len(twice)} stored twice; answers {dict(answers)}; {outage}; "
          f"longest wait for an acknowledgement {longest_wait[0]:.1f} s")
    for problem in problems[:10]:
        print("problem:", problem)
    if lost or twice or problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
