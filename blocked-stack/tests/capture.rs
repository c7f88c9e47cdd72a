//! Real threads, real signals: what a capture returns, and what the captured thread sees.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    panic,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread,
    time::{Duration, Instant},
};

use blocked_stack::{capture, install, register_current_thread, CaptureError, ThreadHandle};

/// Function names of a captured stack, innermost first, inlined frames included (return
/// addresses are looked up at `- 1`, the call instruction).
fn names(frames: &[usize]) -> Vec<String> {
    let mut names = Vec::new();
    for (i, &address) in frames.iter().enumerate() {
        let lookup = if i == 0 { address } else { address - 1 };
        let before = names.len();
        backtrace::resolve(lookup as *mut _, |symbol| {
            if let Some(name) = symbol.name() {
                names.push(format!("{name:#}"));
            }
        });
        if names.len() == before {
            names.push("?".to_owned());
        }
    }
    names
}

/// Starts `work` on a registered thread and returns its handle once it runs.
fn spawn_registered<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> (ThreadHandle, thread::JoinHandle<T>) {
    install().expect("capture installs on this platform");
    let (tx, rx) = mpsc::channel();
    let joined = thread::spawn(move || {
        tx.send(register_current_thread().expect("a free slot"))
            .unwrap();
        work()
    });
    (rx.recv().unwrap(), joined)
}

#[inline(never)]
fn read_config_blocking(sleep: Duration) -> Duration {
    let started = Instant::now();
    thread::sleep(sleep);
    std::hint::black_box(started.elapsed())
}

#[test]
fn a_sleeping_thread_is_captured_in_its_sleep_and_still_sleeps_its_full_time() {
    let (handle, joined) = spawn_registered(|| read_config_blocking(Duration::from_millis(300)));
    thread::sleep(Duration::from_millis(60));
    let stack = capture(&handle, Duration::from_millis(50)).expect("the sleeper answers");
    let names = names(&stack.frames);
    let position = |needle: &str| names.iter().position(|n| n.contains(needle));
    let sleep = position("std::")
        .filter(|&i| names[i].contains("sleep"))
        .unwrap_or_else(|| panic!("no sleep in {names:?}"));
    let caller =
        position("read_config_blocking").unwrap_or_else(|| panic!("no caller in {names:?}"));
    assert!(
        sleep < caller,
        "sleep must be inner to its caller: {names:?}"
    );
    let slept = joined.join().unwrap();
    assert!(slept >= Duration::from_millis(300), "slept only {slept:?}");
}

#[inline(never)]
fn spin_until(stop: &AtomicBool) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    n
}

#[test]
fn every_capture_of_a_cpu_loop_names_the_loop() {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let (handle, joined) = spawn_registered(move || spin_until(&flag));
    for _ in 0..20 {
        thread::sleep(Duration::from_millis(5));
        // Generous: on a loaded machine a runnable thread may wait several ticks for a CPU.
        let stack = capture(&handle, Duration::from_millis(500)).expect("the spinner answers");
        let names = names(&stack.frames);
        assert!(
            names.iter().any(|n| n.contains("spin_until")),
            "the loop is missing from {names:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    joined.join().unwrap();
}

#[test]
fn a_socket_read_interrupted_by_a_capture_still_returns_the_data() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let (handle, joined) = spawn_registered(move || {
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).map(|()| buf)
    });
    thread::sleep(Duration::from_millis(50));
    for _ in 0..3 {
        capture(&handle, Duration::from_millis(50)).expect("the reader answers");
    }
    client.write_all(b"hello").unwrap();
    let read = joined
        .join()
        .unwrap()
        .expect("the read succeeds, not EINTR");
    assert_eq!(&read, b"hello");
}

#[test]
fn a_signal_nobody_asked_for_is_ignored() {
    let (handle, joined) = spawn_registered(|| read_config_blocking(Duration::from_millis(100)));
    thread::sleep(Duration::from_millis(20));
    // SAFETY: tgkill to a live thread of this process, with the handler installed.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            handle.tid(),
            libc::SIGRTMIN() + 7,
        )
    };
    assert_eq!(sent, 0);
    assert!(joined.join().unwrap() >= Duration::from_millis(100));
}

#[test]
fn a_thread_that_has_exited_is_gone() {
    let (handle, joined) = spawn_registered(|| ());
    joined.join().unwrap();
    assert_eq!(
        capture(&handle, Duration::from_millis(20)),
        Err(CaptureError::Gone)
    );
}

#[inline(never)]
fn churn(stop: &AtomicBool) -> usize {
    let mut rounds = 0;
    while !stop.load(Ordering::Relaxed) {
        let v: Vec<String> = (0..64).map(|i| format!("item {i}")).collect();
        std::hint::black_box(&v);
        drop(v);
        let caught = panic::catch_unwind(|| {
            if std::hint::black_box(rounds % 3 == 0) {
                // Unwinds like a panic without calling the (global) panic hook.
                panic::resume_unwind(Box::new("unwound on purpose"));
            }
        });
        std::hint::black_box(caught.is_err());
        rounds += 1;
    }
    rounds
}

#[test]
fn thousands_of_captures_of_threads_that_allocate_and_unwind_all_return_or_time_out() {
    let stop = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..3)
        .map(|_| {
            let flag = Arc::clone(&stop);
            spawn_registered(move || churn(&flag))
        })
        .collect();
    let (mut answered, mut timed_out) = (0, 0);
    for i in 0..3000 {
        let (handle, _) = &churners[i % churners.len()];
        match capture(handle, Duration::from_millis(50)) {
            Ok(stack) => {
                assert!(!stack.frames.is_empty());
                answered += 1;
            }
            Err(CaptureError::Timeout) => timed_out += 1,
            Err(other) => panic!("capture {i}: {other}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for (_, joined) in churners {
        assert!(joined.join().unwrap() > 0);
    }
    assert_eq!(answered + timed_out, 3000);
    // Time-outs are clean (checked above) and depend on the machine's load; most must answer.
    assert!(answered >= 2000, "only {answered} of 3000 answered");
}

#[test]
fn the_self_test_finds_its_known_call_chain() {
    install().unwrap();
    let stack = blocked_stack::self_test().expect("the self-test thread answers");
    let names = names(&stack.frames);
    for expected in blocked_stack::SELF_TEST_FRAMES {
        assert!(
            names.iter().any(|n| n.contains(expected)),
            "{expected} missing from {names:?}"
        );
    }
}
