#!/usr/bin/env python3
"""Connection churn against a container until Docker restarts it (the canary's OOM check).

Eight threads send `GET /api/orders/1`, each on a new connection (so a new tokio task, which
the canary's console keeps for its retention), until the container's restart count rises or
the time is up. Errors while the container is down are expected and only slow the loop.

Usage: churn.py HOST_PORT CONTAINER_ID [TIMEOUT_S]. Exit 0 once the container restarted,
1 with one line if it did not.
"""
import http.client
import subprocess
import sys
import threading
import time


def restart_count(container):
    out = subprocess.run(["docker", "inspect", "-f", "{{.RestartCount}}", container],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def main():
    port, container = int(sys.argv[1]), sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 90.0
    before = restart_count(container)
    done, sent = threading.Event(), [0] * 8

    def churn(i):
        while not done.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/api/orders/1", headers={"Connection": "close"})
                conn.getresponse().read()
                conn.close()
                sent[i] += 1
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)  # down or restarting

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(len(sent))]
    for thread in threads:
        thread.start()
    start, after = time.monotonic(), before
    while time.monotonic() - start < timeout and after == before:
        time.sleep(1)
        after = restart_count(container)
    done.set()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    if after == before:
        print(f"{container[:12]}: not restarted after {sum(sent)} requests in {elapsed:.0f} s", file=sys.stderr)
        return 1
    print(f"  {sum(sent)} requests, a connection each, in {elapsed:.0f} s; restart count {before} -> {after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
