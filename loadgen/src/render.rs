//! Render: the human table printed on stdout after each round. Separate from the report so
//! the JSON stays the contract and the table can change freely.

use std::fmt::Write as _;

use crate::{
    report::{Mode, Report, Stats},
    suspects::Kind,
};

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn rate(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn header(out: &mut String, first: &str) {
    let _ = writeln!(
        out,
        "  {first:<34} {:>8} {:>9} {:>9} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "reqs",
        "req/s",
        "asked/s",
        "errors",
        "late",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "p99 actual"
    );
}

fn row(out: &mut String, label: &str, s: &Stats) {
    let c = s.latency.corrected;
    let _ = writeln!(
        out,
        "  {label:<34} {:>8} {:>9} {:>9} {:>6} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
        s.requests,
        rate(s.achieved_rate),
        rate(s.requested_rate),
        s.errors,
        s.late_sends,
        ms(c.map(|c| c.p50_ms)),
        ms(c.map(|c| c.p90_ms)),
        ms(c.map(|c| c.p99_ms)),
        ms(c.map(|c| c.p99_9_ms)),
        ms(c.map(|c| c.max_ms)),
        ms(s.latency.actual.map(|a| a.p99_ms)),
    );
}

/// The whole table for one round.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let mode = match r.mode {
        Mode::Open => format!(
            "open loop at {} req/s, in-flight cap {}",
            rate(r.requested_rate),
            r.concurrency
        ),
        Mode::Closed => format!("closed loop, {} connections", r.concurrency),
    };
    let _ = writeln!(
        out,
        "round {} · {mode} · {:.1} s planned, {:.1} s elapsed · mix {} · started {}",
        r.round, r.duration_s, r.elapsed_s, r.mix, r.started_at
    );
    let t = &r.total;
    let k = &t.errors_by_kind;
    let _ = writeln!(
        out,
        "{} requests · {} req/s achieved · errors {} ({:.2} %: connect {}, timeout {}, io {}, 4xx {}, 5xx {}) · late sends {} · x-request-id mismatches {}",
        t.requests,
        rate(t.achieved_rate),
        t.errors,
        t.error_rate * 100.0,
        k.connect,
        k.timeout,
        k.io,
        k.http_4xx,
        k.http_5xx,
        t.late_sends,
        t.id_mismatches
    );
    let _ = writeln!(
        out,
        "latency in ms from the intended send time (coordinated-omission corrected); last column from the actual send"
    );
    header(&mut out, "instance / route");
    for i in &r.instances {
        let flavor = i.flavor.as_deref().unwrap_or("?");
        row(&mut out, &format!("{} [{flavor}]", i.instance), &i.stats);
        for rr in &i.routes {
            row(&mut out, &format!("  {}", rr.route), &rr.stats);
        }
    }
    if r.instances.len() > 1 {
        for rr in &r.routes {
            row(&mut out, &format!("all / {}", rr.route), &rr.stats);
        }
    }
    row(&mut out, "total", &r.total);
    if !r.slowest.is_empty() {
        let _ = writeln!(out, "slowest {} requests:", r.slowest.len());
        let _ = writeln!(
            out,
            "  {:>10} {:>10}  {:<12} {:<24} {:<24}  request_id",
            "latency", "actual", "route", "instance", "start"
        );
        for s in &r.slowest {
            let outcome = match (s.status, s.error) {
                (_, Some(e)) => format!(" ({})", e.name()),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {:>10.1} {:>10}  {:<12} {:<24} {:<24}  {}{outcome}",
                s.latency_ms,
                ms(s.actual_ms),
                s.route.name(),
                s.instance,
                s.start,
                s.request_id
            );
        }
        if let Some(first) = r.slowest.first() {
            let _ = writeln!(out, "logs of the slowest: {}", first.logql);
            let _ = writeln!(out, "in Grafana Explore:  {}", first.explore_url);
        }
    }
    suspects(&mut out, r);
    for f in &r.gates.failures {
        let _ = writeln!(out, "GATE FAILED: {f}");
    }
    out
}

/// The stack as printed: from the first frame that is not the runtime's or libc's (the code
/// that blocked), three frames at most.
fn short_stack(stack: &str) -> String {
    const NOISE: [&str; 9] = [
        "__",
        "std::",
        "core::",
        "alloc::",
        "<std",
        "<core",
        "clock_",
        "nanosleep",
        "syscall",
    ];
    let frames: Vec<&str> = stack.split(" <- ").collect();
    let first = frames
        .iter()
        .position(|f| !NOISE.iter().any(|n| f.starts_with(n)))
        .unwrap_or(0);
    let shown = &frames[first..frames.len().min(first + 3)];
    let more = if first + shown.len() < frames.len() {
        " <- …"
    } else {
        ""
    };
    format!("{}{more}", shown.join(" <- "))
}

/// The `suspects` section: what blocked the workers while the slow requests waited.
fn suspects(out: &mut String, r: &Report) {
    let s = &r.suspects_summary;
    let _ = writeln!(
        out,
        "suspects: {} slow requests (the slowest {} and every request over its route's p99), matched to blocked workers on their instance (clocks assumed within {} ms):",
        s.slow_requests,
        r.slowest.len(),
        s.clock_skew_ms
    );
    if s.slow_requests > 0 && r.suspects.is_empty() {
        let _ = writeln!(
            out,
            "  no in-process culprit: the slowness was outside the service's workers"
        );
    }
    for (i, c) in r.suspects.iter().enumerate() {
        let routes: Vec<String> = c
            .victims_by_route
            .iter()
            .map(|(route, n)| format!("{n} {route}"))
            .collect();
        let what = match c.kind {
            Kind::Blocked => format!("{} blocked its worker", c.handler),
            Kind::Stall => "a stall (blocking code outside any request)".to_owned(),
        };
        let example = match (c.kind, c.request_ids.first()) {
            (Kind::Blocked, Some(id)) => format!("e.g. request {id} on {}", c.instance),
            _ => format!("e.g. on {}", c.instance),
        };
        let at = c
            .stack
            .as_deref()
            .map_or_else(String::new, |st| format!(" at {}", short_stack(st)));
        let _ = writeln!(
            out,
            "  {}. {what} during {} of the {} slow requests ({}) — {example}, blocked {:.0} ms{at}",
            i + 1,
            c.explains,
            c.slow_requests,
            routes.join(", "),
            c.blocked_ms
        );
        let _ = writeln!(out, "     logs:    {}", c.logql);
        let _ = writeln!(out, "     Explore: {}", c.explore_url);
    }
    if let Some(share) = s.explained_share {
        let _ = writeln!(
            out,
            "  explained: {} of {} slow requests ({:.0} %)",
            s.explained,
            s.slow_requests,
            share * 100.0
        );
    }
    for u in &s.unavailable {
        let _ = writeln!(out, "  no block record from {}: {}", u.instance, u.error);
    }
}

#[cfg(test)]
mod tests {
    use super::short_stack;

    #[test]
    fn stacks_start_at_the_blocking_code() {
        let s = "__GI___clock_nanosleep <- std::thread::sleep <- service::routes::config_read::read_config_blocking <- service::routes::config_read::config_sync <- a <- b";
        assert_eq!(
            short_stack(s),
            "service::routes::config_read::read_config_blocking <- service::routes::config_read::config_sync <- a <- …"
        );
        assert_eq!(short_stack("std::a <- std::b"), "std::a <- std::b");
    }
}
