//! A progress bar on stderr, only when stderr is a terminal, so logs and CI output stay clean.
//! It reads shared counters on a timer and never touches the hot path.

use std::{
    io::IsTerminal,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::{task::JoinHandle, time::Instant};

/// Counters the workers bump and the bar reads.
#[derive(Debug, Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub errors: AtomicU64,
}

/// Starts the bar for a round of `duration`; `None` when stderr is not a terminal.
pub fn start(round: u64, duration: Duration, counters: Arc<Counters>) -> Option<JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("round {prefix} [{bar:30}] {elapsed}/{duration} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(round.to_string());
    let t0 = Instant::now();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            bar.set_position(t0.elapsed().as_millis() as u64);
            bar.set_message(format!(
                "{} requests, {} errors",
                counters.done.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed)
            ));
            if t0.elapsed() >= duration {
                bar.finish_and_clear();
                return;
            }
        }
    }))
}
