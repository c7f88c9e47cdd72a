#!/usr/bin/env python3
"""Assertions of the container checks on loadgen's JSON reports (loadgen/report.schema.json).

  check_report.py fleet REPORT HOSTNAME...      every api replica (by container hostname) and
                                                the canary served requests
  check_report.py tail BASELINE LOADED RATIO    the victim's p99 on an instance that served
                                                /config/sync is >= RATIO x its baseline p99
  check_report.py slowest REPORT LOGS           request_ids of the slowest requests served by
                                                the fleet appear in its JSON log lines
  check_report.py watchdog LOGS MAX_DELAY_MS     every /config/sync request has one `worker
                                                blocked` line, within MAX_DELAY_MS of its start

Each check prints what it saw and exits 1 with one line on failure. A report file holds one
JSON object per round; the last round is checked.
"""
import json
import re
import sys

# `docker compose logs` (2.26) writes an erase-line sequence before each line even with
# --no-color when stdout is not a terminal.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def last_round(path):
    lines = [line for line in open(path, encoding="utf-8") if line.strip()]
    if not lines:
        sys.exit(f"FAIL: {path} holds no report")
    return json.loads(lines[-1])


def route_stats(instance, route):
    for row in instance["routes"]:
        if row["route"] == route:
            return row["stats"]
    return None


def p99(stats):
    latency = stats and stats["latency"]["corrected"]
    return latency and latency["p99_ms"]


def fleet(report_path, *hostnames):
    report = last_round(report_path)
    served = {}
    for inst in report["instances"]:
        ok = inst["stats"]["status_classes"]["2xx"]
        print(f"  {inst['instance']:<14} {str(inst['flavor']):<8} {inst['address']:<21} "
              f"requests={inst['stats']['requests']:<5} 2xx={ok}")
        served[inst["instance"]] = (inst["flavor"], ok)
    missing = [h for h in hostnames if served.get(h, (None, 0))[1] == 0]
    if missing:
        sys.exit(f"FAIL: api replicas without successful requests: {', '.join(missing)}")
    wrong = [h for h in hostnames if served[h][0] != "release"]
    if wrong:
        sys.exit(f"FAIL: api replicas not reporting flavor release: {', '.join(wrong)}")
    if not any(flavor == "canary" and ok > 0 for flavor, ok in served.values()):
        sys.exit("FAIL: the canary served no successful request")
    print(f"ok: all {len(hostnames)} api replicas and the canary served requests")


def tail(baseline_path, loaded_path, ratio):
    ratio = float(ratio)
    baseline = {i["instance"]: p99(route_stats(i, "orders")) for i in last_round(baseline_path)["instances"]}
    best = None
    for inst in last_round(loaded_path)["instances"]:
        sync = route_stats(inst, "config_sync")
        if not sync or sync["requests"] == 0:
            continue
        base, loaded = baseline.get(inst["instance"]), p99(route_stats(inst, "orders"))
        if not base or not loaded:
            continue
        r = loaded / base
        print(f"  {inst['instance']:<14} config_sync={sync['requests']:<3} orders p99 "
              f"{base:8.1f} ms -> {loaded:8.1f} ms  ({r:.1f}x)")
        best = r if best is None else max(best, r)
    if best is None:
        sys.exit("FAIL: no instance served /config/sync and the victim in both runs")
    if best < ratio:
        sys.exit(f"FAIL: the victim's p99 grew at most {best:.1f}x, expected >= {ratio}x")
    print(f"ok: the victim's p99 grew {best:.1f}x (>= {ratio}x) beside /config/sync")


def slowest(report_path, logs_path):
    report = last_round(report_path)
    fleet_flavors = {i["instance"]: i["flavor"] for i in report["instances"]}
    wanted = [s for s in report["slowest"]
              if s["status"] is not None and fleet_flavors.get(s["instance"]) == "release"]
    logged, lines, bad = set(), 0, 0
    for raw in open(logs_path, encoding="utf-8", errors="replace"):
        raw = ANSI.sub("", raw).strip()
        if not raw:
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            bad += 1
            continue
        lines += 1
        span = line.get("span") or {}
        for rid in (span.get("request_id"), (line.get("fields") or {}).get("request_id"),
                    line.get("request_id")):
            if rid:
                logged.add(rid)
        for s in line.get("spans") or []:
            if s.get("request_id"):
                logged.add(s["request_id"])
    print(f"  {lines} JSON log lines ({bad} not JSON), {len(logged)} distinct request_ids")
    if bad:
        sys.exit(f"FAIL: {bad} api log lines are not JSON")
    if not wanted:
        sys.exit("FAIL: loadgen's slowest list has no request answered by an api replica")
    missing = [s["request_id"] for s in wanted if s["request_id"] not in logged]
    for s in wanted:
        mark = "missing" if s["request_id"] in missing else "logged"
        print(f"  {s['request_id']}  {s['route']:<12} {s['latency_ms']:8.1f} ms  {mark}")
    if missing:
        sys.exit(f"FAIL: {len(missing)} of the slowest request_ids are not in the api logs")
    print(f"ok: all {len(wanted)} slowest fleet request_ids are in the api replicas' logs")


def watchdog(logs_path, max_delay_ms):
    """Every /config/sync request of the release fleet has exactly one `worker blocked` line
    naming `config_sync` and its request_id, written at most max_delay_ms after the handler's
    `loading config` line (while it blocks: the slow disk is 300 ms), and (nearly) every one
    carries a stack naming `read_config_blocking`."""
    from datetime import datetime

    def when(line):
        return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))

    loading, blocked = {}, {}
    for raw in open(logs_path, encoding="utf-8", errors="replace"):
        try:
            line = json.loads(ANSI.sub("", raw).strip())
        except ValueError:
            continue
        fields, span = line.get("fields") or {}, line.get("span") or {}
        if fields.get("message") == "loading config" and span.get("name") == "config_sync":
            loading[span["request_id"]] = when(line)
        elif fields.get("message") == "worker blocked":
            blocked.setdefault(fields.get("request_id"), []).append(
                (fields.get("handler"), when(line), fields.get("stack") or ""))
    if not loading:
        sys.exit("FAIL: no /config/sync request in the api logs")
    delays = []
    for rid, started in loading.items():
        warnings = blocked.get(rid, [])
        if len(warnings) != 1 or warnings[0][0] != "config_sync":
            sys.exit(f"FAIL: /config/sync request {rid} has these watchdog warnings: {warnings}")
        delays.append((warnings[0][1] - started).total_seconds() * 1000)
    print(f"  {len(loading)} /config/sync requests, one `worker blocked` each, "
          f"{min(delays):.0f}-{max(delays):.0f} ms after `loading config`")
    # The culprit stack: taken while the worker blocks, it names the blocking function. A
    # warning in a process's first second may precede capture's start-up self-test.
    stacks = [blocked[rid][0][2] for rid in loading]
    named = sum("read_config_blocking" in stack for stack in stacks)
    print(f"  {named} of {len(stacks)} warnings carry a stack naming read_config_blocking, e.g. "
          f"{next((s for s in stacks if 'read_config_blocking' in s), '(none)')[:160]}")
    if named == 0 or named < 0.8 * len(stacks):
        sys.exit(f"FAIL: too few culprit stacks name read_config_blocking: {stacks[:3]}")
    if max(delays) > float(max_delay_ms):
        sys.exit(f"FAIL: a warning came {max(delays):.0f} ms after the block began")
    print("ok: the release fleet's own logs name every blocking /config/sync request while it blocks")


if __name__ == "__main__":
    checks = {"fleet": fleet, "tail": tail, "slowest": slowest, "watchdog": watchdog}
    if len(sys.argv) < 3 or sys.argv[1] not in checks:
        sys.exit(__doc__)
    checks[sys.argv[1]](*sys.argv[2:])
