//! The folder on real `perf script` text captured on a lab machine (see
//! `fixtures/capture.sh`): the service with one worker serving the sync config route (120 ms
//! emulated disk), `/cpu/inline` and the victim route under load. Every expected weight below was
//! worked out by hand from the timestamps in the fixture, not by running the folder.

use std::{
    collections::BTreeMap,
    io::Write,
    process::{Command, Stdio},
};

use offcpu::{fold, FoldOptions, Folded};

/// perf and the service in one PID namespace: header tid == payload prev_pid (5416).
const HOST: &str = include_str!("fixtures/host.perf.txt");
/// perf inside a new PID namespace with the service: header tid 6, payload prev_pid 6552.
const PIDNS: &str = include_str!("fixtures/pidns.perf.txt");

fn folded(text: &str, include_preempted: bool) -> Folded {
    fold(text.as_bytes(), FoldOptions { include_preempted }).expect("fixture folds")
}

/// The folded output as the flamegraph tool will read it: stack -> microseconds.
fn written(folded: &Folded) -> BTreeMap<String, u64> {
    let mut out = Vec::new();
    folded.write_to(&mut out).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| {
            let (stack, us) = line.rsplit_once(' ').expect("`stack count` line");
            (stack.to_owned(), us.parse().expect("count is an integer"))
        })
        .collect()
}

/// Weight of the one stack that holds every needle.
fn weight_of(stacks: &BTreeMap<String, u64>, needles: &[&str]) -> u64 {
    let hits: Vec<_> = stacks
        .iter()
        .filter(|(stack, _)| needles.iter().all(|n| stack.contains(n)))
        .collect();
    assert_eq!(hits.len(), 1, "stacks holding {needles:?}: {hits:#?}");
    *hits[0].1
}

const SYNC_SLEEP: &[&str] = &[
    "service::routes::config_read::load_config_sync",
    "std::thread::functions::sleep",
    "clock_nanosleep",
    ";[off-cpu S]",
];

#[test]
fn the_sync_handlers_sleep_weighs_exactly_its_interval_off_cpu() {
    let stacks = written(&folded(HOST, false));
    // sched_switch at 2335.290156 (prev_state=S), next switch-in of tid 5416 at 2335.410248.
    assert_eq!(weight_of(&stacks, SYNC_SLEEP), 120_092);
}

#[test]
fn stacks_run_from_the_thread_name_down_to_the_sleep_state() {
    let stacks = written(&folded(HOST, false));
    let sleep = stacks
        .keys()
        .find(|s| s.contains("load_config_sync"))
        .unwrap();
    assert!(sleep.starts_with("actix-rt|system;"), "{sleep}");
    let frames: Vec<_> = sleep.split(';').collect();
    let at = |name: &str| frames.iter().position(|f| f.contains(name)).unwrap();
    // Root first: the async fn calls the std call, which enters the kernel.
    assert!(at("load_config_sync") < at("std::thread::functions::sleep"));
    assert!(at("std::thread::functions::sleep") < at("__schedule"));
    assert_eq!(frames.last(), Some(&"[off-cpu S]"));
    // The unwinder's end marker is not a frame.
    assert!(
        !stacks.keys().any(|s| s.contains("[unknown]")),
        "{stacks:#?}"
    );
}

#[test]
fn weights_are_microseconds_summed_per_stack() {
    let folded = folded(HOST, false);
    let stacks = written(&folded);
    // Worker parking in epoll between requests: 49407 + 5004 + 20274 + 1738 µs.
    // Acceptor thread (`actix-server ac`, a name with a space): 187998 + 2126 + 2118 µs.
    let weights: Vec<u64> = stacks.values().copied().collect();
    assert_eq!(weights.len(), 3, "{stacks:#?}");
    for expected in [120_092, 76_423, 192_242] {
        assert!(weights.contains(&expected), "{expected} not in {weights:?}");
    }
    assert!(stacks.keys().any(|s| s.starts_with("actix-server ac;")));
    assert_eq!(folded.stats.paired, 8);
    assert_eq!(folded.stats.off_cpu_ns, 388_757_000);
}

#[test]
fn preemptions_are_left_out_unless_asked_for() {
    let default = folded(HOST, false);
    assert_eq!(default.stats.preempted, 8);
    assert!(!written(&default).keys().any(|s| s.ends_with("[off-cpu R]")));

    let with = folded(HOST, true);
    let stacks = written(&with);
    let preempted: u64 = stacks
        .iter()
        .filter(|(s, _)| s.ends_with(";[off-cpu R]"))
        .map(|(_, us)| us)
        .sum();
    // The eight `prev_state=R` intervals of the worker, mostly inside burn_cpu:
    // 4004 + 11998 + 4032 + 2140 + 20048 + 8650 + 8018 + 32019 µs.
    assert_eq!(preempted, 90_909);
    assert!(stacks
        .keys()
        .any(|s| s.contains("service::routes::cpu::burn_cpu") && s.ends_with("[off-cpu R]")));
    assert_eq!(with.stats.paired, default.stats.paired + 8);
    assert_eq!(with.stats.preempted, 0);
}

#[test]
fn pairing_follows_the_header_thread_id_inside_a_pid_namespace() {
    // The fixture really has the mismatch the container shows.
    let first_switch = PIDNS
        .lines()
        .find(|l| l.contains("sched:sched_switch:") && l.contains("prev_comm=actix-rt"))
        .unwrap();
    assert!(first_switch.contains(" 6 ") && first_switch.contains("prev_pid=6552"));

    let stacks = written(&folded(PIDNS, false));
    // sched_switch at 2351.713163, switch-in of tid 6 at 2351.835564.
    assert_eq!(weight_of(&stacks, SYNC_SLEEP), 122_401);
}

#[test]
fn intervals_still_open_at_the_end_are_dropped() {
    let folded = folded(HOST, false);
    // The worker's second sync sleep (2335.483956) and the acceptor's last park never see a
    // switch-in inside the window: neither counts, so the sync stack keeps one interval only.
    assert_eq!(folded.stats.unpaired, 2);
    assert_eq!(weight_of(&written(&folded), SYNC_SLEEP), 120_092);
}

#[test]
fn a_lost_switch_in_drops_that_interval_instead_of_stretching_it() {
    // Remove the switch-in that ends the first sync sleep, as if perf had lost it.
    let lost: String = HOST
        .lines()
        .filter(|l| !l.contains("2335.410248: PERF_RECORD_SWITCH IN"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(lost.len(), HOST.len());
    let folded = folded(&lost, false);
    assert_eq!(folded.stats.unpaired, 3);
    assert!(!written(&folded)
        .keys()
        .any(|s| s.contains("load_config_sync")));
}

fn run_bin(input: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_offcpu-fold"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn assert_bad_input(input: &str, args: &[&str], mentions: &str) {
    let (code, stdout, stderr) = run_bin(input, args);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("offcpu-fold: ") && stderr.contains(mentions),
        "{stderr}"
    );
}

#[test]
fn the_binary_folds_a_fixture_from_stdin() {
    let (code, stdout, stderr) = run_bin(PIDNS, &["--quiet"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert!(stdout
        .lines()
        .any(|l| l.contains("load_config_sync") && l.ends_with(" 122401")));
}

#[test]
fn bad_input_exits_2_with_one_line() {
    assert_bad_input("", &[], "empty input");
    assert_bad_input("this is not perf output\n", &[], "line 1");
    assert_bad_input(
        "\tffff8 __schedule ([kernel.kallsyms])\n",
        &[],
        "outside a sample",
    );
    let no_switch_events: String = HOST
        .lines()
        .filter(|l| !l.contains("PERF_RECORD_SWITCH"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_bad_input(&no_switch_events, &[], "--switch-events");
    let no_tracepoint = "sh 1 1.000001: PERF_RECORD_SWITCH IN\n";
    assert_bad_input(no_tracepoint, &[], "sched:sched_switch");
    assert_bad_input("", &["/nonexistent/perf.txt"], "cannot open");
}
