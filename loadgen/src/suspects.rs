//! Suspects: which code inside the service made the round's slow requests slow.
//!
//! A slow request's own log lines cannot say why it was slow when it waited for a worker that
//! another request (or a detached task) was blocking. At the end of a round loadgen asks every
//! instance it reached for its record of recent blocks (`GET /debug/blocked?since=`), and joins:
//! a slow request (the round's slowest N, and every request over its route's p99) is explained
//! by each block on the **same instance** whose interval overlaps the request's
//! `[sent, answered]` interval, widened by [`CLOCK_SKEW`] on both sides. Culprits (handler +
//! kind) are ranked by how many slow requests they explain.
//!
//! The join compares wall clocks of two processes: it assumes they run on the same host or on
//! clocks synced to within [`CLOCK_SKEW`]. [`parse`] and [`join`] are pure and unit-tested;
//! [`fetch`] is the only I/O.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{scenario::Route, send::Client, target::Endpoint};

/// How far apart loadgen's and the service's clocks may be for the join to hold.
pub const CLOCK_SKEW: Duration = Duration::from_millis(5);
/// How long before the round's start the block record is asked from (`since`).
pub const SINCE_MARGIN: Duration = Duration::from_secs(1);
/// The most culprit request ids a suspect lists.
pub const MAX_REQUEST_IDS: usize = 10;

/// What blocked a worker: a request's poll (`blocked`) or code outside any request (`stall`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Blocked,
    Stall,
}

/// One entry of an instance's block record.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub kind: Kind,
    pub handler: String,
    pub request_id: Option<String>,
    pub thread: String,
    pub start: SystemTime,
    /// The end, or the service's `now` for a block still going on.
    pub end: SystemTime,
    pub blocked_ms: f64,
    pub stack: Option<String>,
}

#[derive(Deserialize)]
struct RecordJson {
    now: String,
    blocks: Vec<BlockJson>,
}

#[derive(Deserialize)]
struct BlockJson {
    kind: String,
    handler: String,
    request_id: Option<String>,
    thread: String,
    start: String,
    end: Option<String>,
    blocked_ms: f64,
    stack: Option<String>,
}

fn time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s).map_err(|e| format!("bad time '{s}' ({e})"))
}

/// Parses a `/debug/blocked` answer.
pub fn parse(body: &[u8]) -> Result<Vec<Block>, String> {
    let record: RecordJson =
        serde_json::from_slice(body).map_err(|e| format!("not a block record ({e})"))?;
    let now = time(&record.now)?;
    record
        .blocks
        .into_iter()
        .map(|b| {
            let kind = match b.kind.as_str() {
                "blocked" => Kind::Blocked,
                "stall" => Kind::Stall,
                other => return Err(format!("unknown block kind '{other}'")),
            };
            Ok(Block {
                kind,
                handler: b.handler,
                request_id: b.request_id,
                thread: b.thread,
                start: time(&b.start)?,
                end: b.end.as_deref().map_or(Ok(now), time)?,
                blocked_ms: b.blocked_ms,
                stack: b.stack,
            })
        })
        .collect()
}

/// Fetches the blocks that ended at or after `since` (or are still going on) from one instance.
pub async fn fetch(
    ep: &Endpoint,
    since: SystemTime,
    timeout: Duration,
) -> Result<Vec<Block>, String> {
    let ms = since
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut client = Client::new(ep.destination.clone(), timeout);
    let (status, body) = client.fetch(&format!("/debug/blocked?since={ms}")).await?;
    match status {
        200 => parse(&body),
        404 => Err(
            "does not serve /debug/blocked (404: DEBUG_BLOCKED=false, or not the lab's service)"
                .to_owned(),
        ),
        s => Err(format!("/debug/blocked answered HTTP {s}")),
    }
}

/// A slow request, with wall-clock times.
#[derive(Debug, Clone, PartialEq)]
pub struct Victim {
    pub request_id: String,
    pub route: Route,
    /// Index into the round's endpoints.
    pub endpoint: usize,
    pub sent: SystemTime,
    pub answered: SystemTime,
}

/// One culprit (handler + kind) and what it explains.
#[derive(Debug, Clone, PartialEq)]
pub struct Culprit {
    pub handler: String,
    pub kind: Kind,
    /// Slow requests during which one of its blocks held a worker of their instance.
    pub explains: usize,
    /// Explained slow requests per route, most first.
    pub victims_by_route: Vec<(Route, usize)>,
    /// The endpoint of its longest matching block.
    pub endpoint: usize,
    /// The culprit requests' ids (distinct, longest block first, at most [`MAX_REQUEST_IDS`]).
    pub request_ids: Vec<String>,
    /// Its longest matching block.
    pub blocked_ms: f64,
    pub start: SystemTime,
    /// The stack of its longest matching block that has one.
    pub stack: Option<String>,
}

/// The join's result for one round.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub slow_requests: usize,
    /// Slow requests explained by at least one culprit.
    pub explained: usize,
    /// Most explaining first.
    pub culprits: Vec<Culprit>,
}

fn overlaps(b: &Block, v: &Victim, skew: Duration) -> bool {
    b.start <= v.answered + skew && b.end + skew >= v.sent
}

/// Matches each victim to the blocks of its own instance (`blocks[endpoint]`, empty when the
/// record could not be read) that overlap it, and ranks the culprits.
pub fn join(victims: &[Victim], blocks: &[Vec<Block>], skew: Duration) -> Join {
    struct Acc<'a> {
        explains: usize,
        routes: HashMap<Route, usize>,
        matched: Vec<(usize, &'a Block)>,
    }
    let mut by_culprit: HashMap<(&str, Kind), Acc<'_>> = HashMap::new();
    let mut explained = 0;
    for v in victims {
        let Some(record) = blocks.get(v.endpoint) else {
            continue;
        };
        let mut hit: Vec<(&str, Kind)> = Vec::new();
        for b in record.iter().filter(|b| overlaps(b, v, skew)) {
            let key = (b.handler.as_str(), b.kind);
            let acc = by_culprit.entry(key).or_insert_with(|| Acc {
                explains: 0,
                routes: HashMap::new(),
                matched: Vec::new(),
            });
            if !acc.matched.iter().any(|(_, m)| std::ptr::eq(*m, b)) {
                acc.matched.push((v.endpoint, b));
            }
            if !hit.contains(&key) {
                hit.push(key);
                acc.explains += 1;
                *acc.routes.entry(v.route).or_default() += 1;
            }
        }
        explained += usize::from(!hit.is_empty());
    }
    let mut culprits: Vec<Culprit> = by_culprit
        .into_iter()
        .map(|((handler, kind), mut acc)| {
            acc.matched
                .sort_by(|a, b| b.1.blocked_ms.total_cmp(&a.1.blocked_ms));
            let (endpoint, longest) = acc.matched[0];
            let mut request_ids: Vec<String> = Vec::new();
            for (_, b) in &acc.matched {
                if let Some(id) = &b.request_id {
                    if !request_ids.contains(id) && request_ids.len() < MAX_REQUEST_IDS {
                        request_ids.push(id.clone());
                    }
                }
            }
            let mut victims_by_route: Vec<(Route, usize)> = acc.routes.into_iter().collect();
            victims_by_route.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            Culprit {
                handler: handler.to_owned(),
                kind,
                explains: acc.explains,
                victims_by_route,
                endpoint,
                request_ids,
                blocked_ms: longest.blocked_ms,
                start: longest.start,
                stack: acc.matched.iter().find_map(|(_, b)| b.stack.clone()),
            }
        })
        .collect();
    culprits.sort_by(|a, b| {
        b.explains
            .cmp(&a.explains)
            .then(b.blocked_ms.total_cmp(&a.blocked_ms))
            .then(a.handler.cmp(&b.handler))
    });
    Join {
        slow_requests: victims.len(),
        explained,
        culprits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
    }

    fn block(handler: &str, kind: Kind, id: Option<&str>, from: u64, to: u64) -> Block {
        Block {
            kind,
            handler: handler.to_owned(),
            request_id: id.map(str::to_owned),
            thread: "w0".to_owned(),
            start: at(from),
            end: at(to),
            blocked_ms: (to - from) as f64,
            stack: Some(format!("{handler} <- main")),
        }
    }

    fn victim(id: &str, endpoint: usize, from: u64, to: u64) -> Victim {
        Victim {
            request_id: id.to_owned(),
            route: Route::Orders,
            endpoint,
            sent: at(from),
            answered: at(to),
        }
    }

    #[test]
    fn a_block_explains_only_overlapping_requests_on_its_own_instance() {
        let blocks = vec![
            vec![block("config_sync", Kind::Blocked, Some("c1"), 100, 400)],
            vec![block("stall", Kind::Stall, None, 1000, 1200)],
        ];
        let victims = [
            victim("a", 0, 150, 420),   // overlaps c1
            victim("b", 0, 403, 500),   // starts 3 ms after c1 ended: within the skew
            victim("c", 0, 450, 900),   // after c1
            victim("d", 1, 150, 420),   // same time, other instance
            victim("e", 1, 1100, 1300), // during the stall
        ];
        let j = join(&victims, &blocks, CLOCK_SKEW);
        assert_eq!((j.slow_requests, j.explained), (5, 3));
        assert_eq!(j.culprits.len(), 2);
        let top = &j.culprits[0];
        assert_eq!(
            (top.handler.as_str(), top.kind, top.explains),
            ("config_sync", Kind::Blocked, 2)
        );
        assert_eq!(top.request_ids, ["c1"]);
        assert_eq!((top.endpoint, top.blocked_ms), (0, 300.0));
        assert_eq!(top.victims_by_route, [(Route::Orders, 2)]);
        let stall = &j.culprits[1];
        assert_eq!(
            (stall.kind, stall.explains, stall.endpoint),
            (Kind::Stall, 1, 1)
        );
        assert!(stall.request_ids.is_empty());
    }

    #[test]
    fn nothing_overlapping_explains_nothing() {
        let blocks = vec![vec![block("cpu_inline", Kind::Blocked, Some("x"), 0, 50)]];
        let j = join(&[victim("a", 0, 100, 400)], &blocks, CLOCK_SKEW);
        assert_eq!((j.slow_requests, j.explained), (1, 0));
        assert!(j.culprits.is_empty());
        // An instance whose record could not be read has no blocks.
        let j = join(&[victim("a", 1, 100, 400)], &blocks, CLOCK_SKEW);
        assert_eq!(j.explained, 0);
    }

    #[test]
    fn culprits_rank_by_how_many_they_explain_and_count_each_victim_once() {
        let blocks = vec![vec![
            block("lock_std", Kind::Blocked, Some("l1"), 0, 100),
            block("config_sync", Kind::Blocked, Some("c1"), 200, 500),
            block("config_sync", Kind::Blocked, Some("c2"), 250, 600),
        ]];
        let victims = [
            victim("a", 0, 50, 300),
            victim("b", 0, 300, 350),
            victim("c", 0, 550, 560),
        ];
        let j = join(&victims, &blocks, Duration::ZERO);
        let names: Vec<_> = j
            .culprits
            .iter()
            .map(|c| (c.handler.as_str(), c.explains))
            .collect();
        assert_eq!(names, [("config_sync", 3), ("lock_std", 1)]);
        assert_eq!(j.culprits[0].request_ids, ["c2", "c1"]);
        assert_eq!(j.explained, 3);
    }

    #[test]
    fn the_service_record_parses_and_ongoing_blocks_end_now() {
        let body = br#"{"instance":"api-1","now":"2026-11-30T12:00:01.000000Z","max_entries":256,
            "blocks":[{"seq":0,"kind":"blocked","handler":"config_sync","request_id":"r1","thread":"t",
            "start":"2026-11-30T12:00:00.000000Z","end":null,"ongoing":true,"blocked_ms":1000.0,"stack":null}]}"#;
        let blocks = parse(body).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            blocks[0].end.duration_since(blocks[0].start).unwrap(),
            Duration::from_secs(1)
        );
        assert!(parse(b"{\"ok\":true}").is_err());
        assert!(parse(br#"{"now":"2026-11-30T12:00:01Z","blocks":[{"kind":"x","handler":"h","request_id":null,"thread":"t","start":"2026-11-30T12:00:00Z","end":null,"blocked_ms":1,"stack":null}]}"#).is_err());
    }
}
