//! The blocked code's stack for the watchdog's lines: captured by [`blocked_stack`] while the
//! worker blocks, symbolized here on the checker thread (never on the worker) with `backtrace`'s
//! resolver and a cache, trimmed to the application's frames, and rendered on one line.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use blocked_stack::{CaptureError, RawStack, ThreadHandle};

/// How long the checker waits for a blocked thread to answer.
pub(super) const CAPTURE_TIMEOUT: Duration = Duration::from_millis(10);

/// The most frames a line shows.
const MAX_SHOWN: usize = 20;

/// The application's frames: the trimmed stack ends at the outermost of these (a handler), so
/// actix's and tokio's frames below it are left out. Without one, at the outermost frame of
/// the crate.
const HANDLER_FRAMES: &str = concat!(env!("CARGO_CRATE_NAME"), "::routes::");
const CRATE_FRAMES: &str = concat!(env!("CARGO_CRATE_NAME"), "::");

/// One captured, symbolized stack.
#[derive(Debug, Clone)]
pub(super) struct Stack {
    /// Function names, innermost first, inlined frames included where debug info has them.
    pub frames: Vec<Arc<str>>,
    /// `object+0xoffset` per captured address, for symbolizing offline against a kept
    /// debug file (see [`build_id`]).
    pub raw: String,
}

impl Stack {
    /// `a <- b <- c`, innermost first, at most [`MAX_SHOWN`] frames.
    pub fn render(frames: &[Arc<str>]) -> String {
        let shown = &frames[..frames.len().min(MAX_SHOWN)];
        let mut line = shown.join(" <- ");
        if frames.len() > shown.len() {
            line.push_str(" <- …");
        }
        line
    }
}

/// What a capture gave, for the line: a stack, or why there is none.
#[derive(Debug, Clone)]
pub(super) enum Sample {
    Taken(Stack),
    Unavailable(CaptureError),
}

/// Whether capture is on: set once, by [`enable`]'s self-test.
static ENABLED: OnceLock<bool> = OnceLock::new();

/// Installs capture and checks, once, on a thread of its own, that a known call chain comes
/// back whole; logs one line either way, and leaves capture off when the check fails. It also
/// warms the symbol cache, so the first real warning is not delayed by it. Until it is done
/// the watchdog's lines carry no stack.
pub(super) fn enable() {
    // Installed now, before the workers start: a thread registers for capture when it first
    // polls, which needs the handler in place.
    if let Err(err) = blocked_stack::install() {
        decide(Err(err.to_string()));
        return;
    }
    let started = std::thread::Builder::new()
        .name("stack-self-test".into())
        .spawn(|| decide(self_test()));
    if let Err(err) = started {
        decide(Err(format!("cannot start the self-test thread: {err}")));
    }
}

/// Turns capture on or off, once, with its one line.
fn decide(checked: Result<(), String>) {
    ENABLED.get_or_init(|| match checked {
        Ok(()) => {
            // A start-up line, not a watchdog warning: the dashboards count those.
            tracing::info!(target: "service::startup", build_id = build_id(), "blocked-stack capture on");
            true
        }
        Err(reason) => {
            tracing::warn!(
                reason,
                "blocked-stack capture off: the watchdog's lines carry no stack"
            );
            false
        }
    });
}

/// Whether capture has been checked and is on.
#[cfg(test)]
pub(super) fn is_on() -> bool {
    ENABLED.get() == Some(&true)
}

fn self_test() -> Result<(), String> {
    let raw = blocked_stack::self_test().map_err(|err| format!("self-test: {err}"))?;
    let frames = symbolize(&raw);
    for expected in blocked_stack::SELF_TEST_FRAMES {
        if !frames.iter().any(|f| f.contains(expected)) {
            return Err(format!(
                "self-test: {expected} missing (built without frame pointers?): {}",
                Stack::render(&frames)
            ));
        }
    }
    Ok(())
}

/// Captures `thread`'s stack, if capture is on and the thread is registered.
pub(super) fn sample(thread: Option<&ThreadHandle>) -> Option<Sample> {
    if ENABLED.get() != Some(&true) {
        return None;
    }
    let thread = thread?;
    Some(match blocked_stack::capture(thread, CAPTURE_TIMEOUT) {
        Ok(raw) => Sample::Taken(Stack {
            frames: trim(symbolize(&raw)),
            raw: offsets(&raw),
        }),
        Err(err) => Sample::Unavailable(err),
    })
}

/// The frames every sample shares, counted from the outermost: for a thread blocked in one
/// call they are the whole stack; for a CPU loop, the loop and its callers.
pub(super) fn common(samples: &[Stack]) -> Vec<Arc<str>> {
    let Some((first, rest)) = samples.split_first() else {
        return Vec::new();
    };
    let shared = rest.iter().fold(first.frames.len(), |shared, other| {
        first
            .frames
            .iter()
            .rev()
            .zip(other.frames.iter().rev())
            .take(shared)
            .take_while(|(a, b)| a == b)
            .count()
    });
    first.frames[first.frames.len() - shared..].to_vec()
}

/// The main executable's GNU build id, to pick the matching debug file offline.
pub(super) fn build_id() -> Option<&'static str> {
    blocked_stack::modules()
        .iter()
        .find(|m| m.main)
        .and_then(|m| m.build_id.as_deref())
}

fn trim(frames: Vec<Arc<str>>) -> Vec<Arc<str>> {
    let last = frames
        .iter()
        .rposition(|f| f.contains(HANDLER_FRAMES))
        .or_else(|| frames.iter().rposition(|f| f.contains(CRATE_FRAMES)));
    match last {
        Some(last) => frames[..=last].to_vec(),
        None => frames,
    }
}

/// Names for every address, innermost first; a return address is looked up at the call
/// instruction (`- 1`), which may belong to a different line or inlined function than the
/// instruction after it.
fn symbolize(raw: &RawStack) -> Vec<Arc<str>> {
    static CACHE: Mutex<Option<HashMap<usize, Vec<Arc<str>>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    let mut names = Vec::new();
    for (i, &address) in raw.frames.iter().enumerate() {
        let lookup = if i == 0 {
            address
        } else {
            address.wrapping_sub(1)
        };
        let resolved = cache.entry(lookup).or_insert_with(|| {
            let mut found = Vec::new();
            backtrace::resolve(lookup as *mut std::ffi::c_void, |symbol| {
                if let Some(name) = symbol.name() {
                    found.push(Arc::from(format!("{name:#}")));
                }
            });
            if found.is_empty() {
                found.push(Arc::from(format!("{address:#x}")));
            }
            found
        });
        names.extend(resolved.iter().cloned());
    }
    names.dedup();
    names
}

/// `object+0xoffset` for each captured address: the offset is the address in the object's
/// file, what `addr2line -e` takes.
fn offsets(raw: &RawStack) -> String {
    let modules = blocked_stack::modules();
    raw.frames
        .iter()
        .map(
            |&address| match modules.iter().find(|m| m.contains(address)) {
                Some(m) => format!("{}+{:#x}", m.name, address - m.bias),
                None => format!("{address:#x}"),
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(frames: &[&str]) -> Stack {
        Stack {
            frames: frames.iter().map(|f| Arc::from(*f)).collect(),
            raw: String::new(),
        }
    }

    #[test]
    fn samples_share_their_outermost_frames() {
        let samples = [
            stack(&["mul", "burn_cpu", "handler", "poll"]),
            stack(&["add", "inner", "burn_cpu", "handler", "poll"]),
            stack(&["burn_cpu", "handler", "poll"]),
        ];
        let shared = common(&samples);
        let shared: Vec<&str> = shared.iter().map(|f| &**f).collect();
        assert_eq!(shared, ["burn_cpu", "handler", "poll"]);
        assert_eq!(common(&samples[..1]).len(), 4);
    }

    #[test]
    fn a_stack_is_trimmed_after_its_outermost_handler_frame() {
        let frames = [
            "sleep",
            "service::routes::config_read::read",
            "service::routes::config_read::handler",
            "actix::poll",
            "tokio::run",
        ]
        .map(Arc::from)
        .to_vec();
        let trimmed = trim(frames);
        assert_eq!(trimmed.len(), 3);
        assert_eq!(
            Stack::render(&trimmed),
            "sleep <- service::routes::config_read::read <- service::routes::config_read::handler"
        );
    }
}
