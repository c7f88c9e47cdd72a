//! The objects mapped into the process: their code ranges (for the handler, which must tell a
//! return address from data without calling anything) and their build ids (for offline
//! symbolization). Read once, by `install`, with `dl_iterate_phdr`.

use std::{
    ffi::CStr,
    os::raw::{c_int, c_void},
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
};

use crate::Module;

/// Code ranges of the main executable, as `[lo0, hi0, lo1, hi1, …]`, read by the handler.
const MAX_MAIN_RANGES: usize = 8;
static MAIN_TEXT: [AtomicUsize; 2 * MAX_MAIN_RANGES] = [const { AtomicUsize::new(0) }; 16];
static MAIN_TEXT_LEN: AtomicUsize = AtomicUsize::new(0);

static MODULES: OnceLock<Vec<Module>> = OnceLock::new();

/// The objects recorded by `install`; empty before.
pub fn modules() -> &'static [Module] {
    MODULES.get().map_or(&[], Vec::as_slice)
}

/// Whether `addr` points into the main executable's code. Signal-safe: atomic loads only.
pub(crate) fn in_main_text(addr: usize) -> bool {
    let len = MAIN_TEXT_LEN.load(Ordering::Acquire);
    (0..len).any(|i| {
        let lo = MAIN_TEXT[2 * i].load(Ordering::Relaxed);
        let hi = MAIN_TEXT[2 * i + 1].load(Ordering::Relaxed);
        lo <= addr && addr < hi
    })
}

/// Reads every loaded object's executable segments and build id (once).
pub(crate) fn record() {
    MODULES.get_or_init(|| {
        let mut modules: Vec<Module> = Vec::new();
        // SAFETY: `collect` matches the callback type `dl_iterate_phdr` expects, and `data`
        // points to `modules`, which outlives the call; the callback runs synchronously.
        unsafe {
            libc::dl_iterate_phdr(Some(collect), (&mut modules as *mut Vec<Module>).cast());
        }
        if let Some(main) = modules.iter().find(|m| m.main) {
            for (i, &(lo, hi)) in main.ranges.iter().take(MAX_MAIN_RANGES).enumerate() {
                MAIN_TEXT[2 * i].store(lo, Ordering::Relaxed);
                MAIN_TEXT[2 * i + 1].store(hi, Ordering::Relaxed);
            }
            MAIN_TEXT_LEN.store(main.ranges.len().min(MAX_MAIN_RANGES), Ordering::Release);
        }
        modules
    });
}

/// `dl_iterate_phdr`'s callback: one object's executable `PT_LOAD` ranges and build id.
unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: `dl_iterate_phdr` passes a valid `dl_phdr_info` for the duration of the call, and
    // `data` is the `&mut Vec<Module>` that `record` passed in.
    let (info, modules) = unsafe { (&*info, &mut *data.cast::<Vec<Module>>()) };
    let headers: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers of a loaded object.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let bias = info.dlpi_addr as usize;
    let ranges: Vec<(usize, usize)> = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0)
        .map(|h| {
            let lo = bias + h.p_vaddr as usize;
            (lo, lo + h.p_memsz as usize)
        })
        .collect();
    let build_id = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_NOTE)
        .find_map(|h| {
            // SAFETY: a PT_NOTE segment of a loaded object lies inside one of its PT_LOAD
            // segments, mapped readable for the object's lifetime, `p_memsz` bytes long.
            let notes = unsafe {
                std::slice::from_raw_parts(
                    (bias + h.p_vaddr as usize) as *const u8,
                    h.p_memsz as usize,
                )
            };
            gnu_build_id(notes)
        });
    let name = if info.dlpi_name.is_null() {
        String::new()
    } else {
        // SAFETY: a non-null `dlpi_name` is a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_string_lossy()
            .into_owned()
    };
    // The first object reported is the main program, whose name is empty.
    let main = modules.is_empty();
    let name = if main {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "main".to_owned())
    } else {
        name.rsplit('/').next().unwrap_or(&name).to_owned()
    };
    if !ranges.is_empty() {
        modules.push(Module {
            name,
            bias,
            build_id,
            main,
            ranges,
        });
    }
    0
}

/// The GNU build id in a PT_NOTE segment's notes, as hex.
fn gnu_build_id(mut notes: &[u8]) -> Option<String> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8]| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let align4 = |n: usize| (n + 3) & !3;
    while notes.len() >= 12 {
        let (namesz, descsz, kind) = (
            word(notes) as usize,
            word(&notes[4..]) as usize,
            word(&notes[8..]),
        );
        let name_end = 12 + align4(namesz);
        let desc_end = name_end + align4(descsz);
        if desc_end > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" {
            let desc = &notes[name_end..name_end + descsz];
            return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
        }
        notes = &notes[desc_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gnu_build_id_note_is_read_as_hex() {
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(&3u32.to_ne_bytes());
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[0xab, 0xcd, 0xef, 0]);
        assert_eq!(gnu_build_id(&note).as_deref(), Some("abcdef"));
        note[8] = 1; // another note type
        assert_eq!(gnu_build_id(&note), None);
    }
}
