//! Whether a callsite's names (its target, its name, its fields' names) can be written without
//! escaping, as nearly all can: decided once per callsite and thread, then remembered, so the
//! names on every line are copied rather than scanned.

use std::cell::Cell;

use tracing::Metadata;

use super::escape::any_needs_escape;

// The low bit of a slot is the verdict, so metadata addresses must be even.
const _: () = assert!(std::mem::align_of::<Metadata<'static>>() >= 2);

/// Remembered callsites per thread; a callsite that collides with another is decided again.
const SLOTS: usize = 64;

thread_local! {
    /// A callsite's metadata address, plus 1 when its names are plain (addresses are even).
    static DECIDED: [Cell<usize>; SLOTS] = const { [const { Cell::new(0) }; SLOTS] };
}

/// Whether `meta`'s target, name and field names need no escaping inside a JSON string.
pub fn names_are_plain(meta: &'static Metadata<'static>) -> bool {
    let address = std::ptr::from_ref(meta) as usize;
    DECIDED.with(|slots| {
        let slot = &slots[(address >> 4) % SLOTS];
        let seen = slot.get();
        if seen & !1 == address {
            return seen & 1 == 1;
        }
        let plain = [meta.target(), meta.name()]
            .into_iter()
            .chain(meta.fields().iter().map(|field| field.name()))
            .all(|name| !any_needs_escape(name.as_bytes()));
        slot.set(address | usize::from(plain));
        plain
    })
}
