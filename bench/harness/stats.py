"""Pure statistics of the benchmarks: alternated runs, medians, ratios, flatness, verdicts.

No I/O here, so every figure a page shows can be unit-tested (`bench/tests/test_stats.py`).
"""

import statistics


def alternate(rounds, configs, run):
    """Runs every configuration once per round, round after round (never one configuration's
    runs back to back, so a slow phase of the machine hits all of them alike); returns
    {config: [run(config) for each round]} in the configurations' order."""
    results = {config: [] for config in configs}
    for _ in range(rounds):
        for config in configs:
            results[config].append(run(config))
    return results


def median(values):
    return statistics.median(values)


def medians(runs, keys):
    """{key: median of run[key] over runs} for a list of per-run dicts."""
    return {key: statistics.median(run[key] for run in runs) for key in keys}


def ratio(a, b):
    return a / b


def change(before, after):
    """Relative change, e.g. +0.08 for 8 % more."""
    return after / before - 1


def per_request_us(cpu_seconds, requests):
    """CPU time per request in microseconds."""
    return cpu_seconds / requests * 1e6


def mean_between(samples, start, end):
    """Mean of the (t, value) samples with start < t <= end, or None."""
    values = [v for t, v in samples if start < t <= end]
    return statistics.mean(values) if values else None


def settled(samples, settle):
    """(value at the first sample at or after `settle`, min, max of those samples); Nones when
    the run was shorter."""
    values = [v for t, v in samples if t >= settle]
    if not values:
        return None, None, None
    return values[0], min(values), max(values)


def flat(at_settle, low, high, tolerance):
    """Every settled sample within `tolerance` of the first settled one (None: no samples)."""
    if at_settle is None:
        return None
    return high - at_settle <= tolerance and at_settle - low <= tolerance


def bytes_per_task_kib(idle_kib, peak_kib, requests):
    """Memory per retained task under churn: (peak − idle) / requests, in KiB."""
    return (peak_kib - idle_kib) / requests if requests else 0.0


def held(requested, achieved, late_fraction):
    """An open-loop rate counts as held within ±2 % with under 1 % late sends."""
    return abs(achieved - requested) / requested <= 0.02 and late_fraction < 0.01


def verdict(ok):
    return "met" if ok else "**not met**"
