//! The signal handler and what it needs: the signal's installation, the thread's stack bounds,
//! and the frame-pointer walk from the interrupted registers.
//!
//! Everything reachable from [`on_signal`] is async-signal-safe: atomic loads and stores,
//! aligned loads from the interrupted thread's own stack after a bounds check, `gettid`, and
//! `errno` saved and restored. No lock, no allocation, no formatting, no panic path.

use std::{
    os::raw::{c_int, c_void},
    sync::{
        atomic::{AtomicBool, Ordering},
        OnceLock,
    },
};

use crate::{
    objects,
    threads::{DONE, REQUESTED, SLOTS, WRITING},
    Unavailable, MAX_FRAMES,
};

/// The real-time signal used: `SIGRTMIN + 7`, clear of what glibc reserves below `SIGRTMIN`
/// and of the low real-time numbers other libraries tend to pick.
fn signal_number() -> c_int {
    libc::SIGRTMIN() + 7
}

/// How far above the stack pointer the handler looks for the return address out of frameless
/// code (a libc system-call wrapper's frame is a few words).
const LEAF_SCAN_BYTES: usize = 1024;

static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL: OnceLock<Result<(), Unavailable>> = OnceLock::new();

pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

pub fn install() -> Result<(), Unavailable> {
    INSTALL
        .get_or_init(|| {
            objects::record();
            let sig = signal_number();
            // SAFETY: a zeroed `sigaction` is a valid "no handler" value; `sigaction` only
            // reads `new` and writes `old`, both valid for the calls.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                    return Err(Unavailable::Sigaction(
                        std::io::Error::last_os_error().to_string(),
                    ));
                }
                if old.sa_sigaction != libc::SIG_DFL {
                    return Err(Unavailable::SignalInUse(sig));
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as *const () as usize;
                new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(sig, &new, std::ptr::null_mut()) != 0 {
                    return Err(Unavailable::Sigaction(
                        std::io::Error::last_os_error().to_string(),
                    ));
                }
            }
            INSTALLED.store(true, Ordering::Release);
            Ok(())
        })
        .clone()
}

/// Sends the signal to thread `tid` of this process; false when the thread is gone.
pub(crate) fn signal(tid: i32) -> bool {
    // SAFETY: `getpid` and `tgkill` have no memory preconditions; `tgkill` reaches only the
    // named thread of this process, whose handler for this signal is `on_signal`.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal_number()) == 0 }
}

/// The calling thread's usable stack, `[lo, hi)`, without the guard page.
pub(crate) fn current_stack_bounds() -> Option<(usize, usize)> {
    // SAFETY: `attr` is initialised by `pthread_getattr_np` before it is read and destroyed
    // once; `addr` and `size` are written by `pthread_attr_getstack`.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        let mut guard: usize = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0
            && libc::pthread_attr_getguardsize(&attr, &mut guard) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then(|| (addr as usize + guard, addr as usize + size))
    }
}

/// The registers the walk starts from.
struct Interrupted {
    pc: usize,
    sp: usize,
    fp: usize,
    /// aarch64's link register: the return address of a leaf function.
    lr: Option<usize>,
}

/// Reads the interrupted registers from the handler's `ucontext_t`.
///
/// # Safety
/// `context` must be the third argument the kernel passed to an `SA_SIGINFO` handler.
#[cfg(target_arch = "x86_64")]
unsafe fn interrupted(context: *mut c_void) -> Interrupted {
    // SAFETY: per the contract, `context` points to the kernel's `ucontext_t` for this signal.
    let gregs = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    Interrupted {
        pc: gregs[libc::REG_RIP as usize] as usize,
        sp: gregs[libc::REG_RSP as usize] as usize,
        fp: gregs[libc::REG_RBP as usize] as usize,
        lr: None,
    }
}

/// Reads the interrupted registers from the handler's `ucontext_t`.
///
/// # Safety
/// `context` must be the third argument the kernel passed to an `SA_SIGINFO` handler.
#[cfg(target_arch = "aarch64")]
unsafe fn interrupted(context: *mut c_void) -> Interrupted {
    // SAFETY: per the contract, `context` points to the kernel's `ucontext_t` for this signal.
    let mcontext = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext };
    Interrupted {
        pc: mcontext.pc as usize,
        sp: mcontext.sp as usize,
        fp: mcontext.regs[29] as usize,
        lr: Some(mcontext.regs[30] as usize),
    }
}

extern "C" fn on_signal(_signal: c_int, _info: *mut libc::siginfo_t, context: *mut c_void) {
    // SAFETY: `__errno_location` returns this thread's errno, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: `gettid` has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    if let Some(slot) = SLOTS.iter().find(|s| s.tid.load(Ordering::Acquire) == tid) {
        // Only a pending request is answered: a stray or late signal changes nothing.
        if slot
            .state
            .compare_exchange(REQUESTED, WRITING, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: the kernel calls this `SA_SIGINFO` handler with its `ucontext_t`.
            let registers = unsafe { interrupted(context) };
            let bounds = (
                slot.stack_lo.load(Ordering::Relaxed),
                slot.stack_hi.load(Ordering::Relaxed),
            );
            let mut len = 0;
            walk(&registers, bounds, |frame| {
                if len < MAX_FRAMES {
                    slot.frames[len].store(frame, Ordering::Relaxed);
                    len += 1;
                }
                len < MAX_FRAMES
            });
            slot.len.store(len, Ordering::Relaxed);
            slot.state.store(DONE, Ordering::Release);
        }
    }
    // SAFETY: as above; restoring the value the interrupted code may be about to read.
    unsafe { *libc::__errno_location() = errno };
}

/// Loads the word at `addr` if it lies inside `[lo, hi)` and is aligned, else `None`.
fn load(addr: usize, (lo, hi): (usize, usize)) -> Option<usize> {
    let word = std::mem::size_of::<usize>();
    if addr < lo || addr.checked_add(word)? > hi || !addr.is_multiple_of(word) {
        return None;
    }
    // SAFETY: `[lo, hi)` is the interrupted thread's own stack from the interrupted stack
    // pointer up (see `walk`): mapped, readable, and not freed while this handler runs on that
    // thread. The address is aligned and the whole word lies inside the range.
    Some(unsafe { std::ptr::read_volatile(addr as *const usize) })
}

/// Reports the interrupted instruction, then each return address, innermost first, while
/// `emit` returns true. Every load stays inside the interrupted stack, from the stack pointer
/// (below it nothing is guaranteed mapped) to the top; frame pointers must increase.
fn walk(registers: &Interrupted, (lo, hi): (usize, usize), mut emit: impl FnMut(usize) -> bool) {
    if !emit(registers.pc) {
        return;
    }
    let in_stack = registers.sp >= lo && registers.sp < hi;
    let bounds = (registers.sp.max(lo), hi);
    if let Some(offset) = return_address_at_entry_or_exit(registers.pc) {
        // Stopped on a function's first instruction, after its `push rbp`, or on its `ret`:
        // the frame pointer is still the caller's, so the caller's frame would be skipped.
        if in_stack {
            if let Some(address) = load(registers.sp + offset, bounds) {
                if objects::in_main_text(address) && !emit(address) {
                    return;
                }
            }
        }
    } else if !objects::in_main_text(registers.pc) {
        // Stopped in code without frame pointers (a libc wrapper): its caller in the main
        // executable is found by the return address nearest above the stack pointer.
        let leaf_return = match registers.lr {
            Some(lr) if objects::in_main_text(lr) => Some(lr),
            _ if in_stack => {
                let end = registers.sp.saturating_add(LEAF_SCAN_BYTES).min(
                    if registers.fp > registers.sp {
                        registers.fp
                    } else {
                        hi
                    },
                );
                (registers.sp..end)
                    .step_by(std::mem::size_of::<usize>())
                    .filter_map(|addr| load(addr, bounds))
                    .find(|&word| objects::in_main_text(word))
            }
            _ => None,
        };
        if let Some(address) = leaf_return {
            if !emit(address) {
                return;
            }
        }
    }
    if !in_stack {
        return;
    }
    let mut fp = registers.fp;
    for _ in 0..MAX_FRAMES {
        let (Some(next), Some(ret)) = (load(fp, bounds), load(fp.wrapping_add(8), bounds)) else {
            return;
        };
        if ret == 0 || !emit(ret) || next <= fp {
            return;
        }
        fp = next;
    }
}

/// Where the return address is, relative to the stack pointer, when `pc` is an instruction of
/// the main executable at which the frame pointer does not yet (or no longer) belong to the
/// interrupted function: `push rbp` (entry), `mov rbp, rsp` (just after it), `ret` (exit).
#[cfg(target_arch = "x86_64")]
fn return_address_at_entry_or_exit(pc: usize) -> Option<usize> {
    if !objects::in_main_text(pc) || !objects::in_main_text(pc.wrapping_add(2)) {
        return None;
    }
    // SAFETY: `pc` and `pc + 2` lie inside an executable PT_LOAD segment of the main program,
    // mapped (and readable: code segments are R+X) for the life of the process.
    let bytes = unsafe { std::ptr::read_unaligned(pc as *const [u8; 3]) };
    match bytes {
        [0x55, ..] | [0xc3, ..] => Some(0),
        [0x48, 0x89, 0xe5] => Some(8),
        _ => None,
    }
}

/// Not handled on aarch64 (the return address sits in the link register there): a capture that
/// lands on a function's entry or exit may skip its caller.
#[cfg(target_arch = "aarch64")]
fn return_address_at_entry_or_exit(_pc: usize) -> Option<usize> {
    None
}
