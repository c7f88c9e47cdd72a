//! Escaping for the inside of JSON strings: a scan that finds nearly all text clean, and the
//! byte-by-byte path for the rare text that is not.

use std::fmt::{self, Write as _};

use super::Line;

/// Whether each byte must be escaped inside a JSON string (below 0x20, a quote, a backslash).
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize;
        b += 1;
    }
    table
};

/// Whether any byte must be escaped. Most strings written are short (keys, names, methods):
/// a table look-up per byte; longer ones eight bytes per step, where a byte of a word is zero
/// (or below 0x20) exactly when the high bit of `(w - 0x01…) & !w` (or `(w - 0x20…) & !w`)
/// survives for some byte, and a quote or a backslash is a zero after an XOR with that byte
/// repeated.
pub(super) fn any_needs_escape(bytes: &[u8]) -> bool {
    if bytes.len() < 16 {
        return bytes.iter().any(|&b| ESCAPED[usize::from(b)]);
    }
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let zero_in = |w: u64, below: u64| w.wrapping_sub(ONES * below) & !w;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_ne_bytes(word.try_into().expect("eight bytes"));
        let hits = zero_in(w, 0x20)
            | zero_in(w ^ (ONES * u64::from(b'"')), 1)
            | zero_in(w ^ (ONES * u64::from(b'\\')), 1);
        if hits & HIGH != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| ESCAPED[usize::from(b)])
}

/// `value` escaped, byte by byte: `\"`, `\\`, `\n`, `\r`, `\t`, `\u00XX` for other control
/// bytes. Out of line: text that needs it is rare, and the common path stays short.
#[cold]
#[inline(never)]
pub(super) fn push_escaped_slowly(out: &mut Line, value: &str) {
    let mut clean_from = 0;
    for (i, &b) in value.as_bytes().iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&value[clean_from..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        clean_from = i + 1;
    }
    out.push_str(&value[clean_from..]);
}

/// A `fmt::Write` adapter that escapes what passes through for the inside of a JSON string,
/// so `Debug` output streams into the line without an intermediate `String`.
pub(super) struct Escaping<'a>(pub(super) &'a mut Line);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.push_escaped(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &Line) -> &str {
        std::str::from_utf8(line.as_bytes()).unwrap()
    }

    fn needs_escape(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }

    #[test]
    fn the_scans_agree_with_the_byte_test() {
        let mut text: Vec<u8> = (0u8..=255).collect();
        text.extend(b"plain text, long enough for several words of eight");
        for start in 0..text.len() {
            for len in [0, 1, 7, 8, 9, 17, 40] {
                let slice = &text[start..(start + len).min(text.len())];
                let expected = slice.iter().any(|&b| needs_escape(b));
                assert_eq!(any_needs_escape(slice), expected, "{slice:?}");
            }
        }
    }

    #[test]
    fn escapes_what_json_requires() {
        let raw = "a\"b\\c\nd\u{1}é\t\r";
        let mut out = Line::default();
        out.push_json_str(raw);
        assert_eq!(text(&out), r#""a\"b\\c\nd\u0001é\t\r""#);
        let parsed: String = serde_json::from_str(text(&out)).unwrap();
        assert_eq!(parsed, raw);
        // Streamed `Debug` output is escaped the same way.
        let mut out = Line::default();
        let _ = write!(Escaping(&mut out), "{raw}");
        assert_eq!(text(&out), r#"a\"b\\c\nd\u0001é\t\r"#);
    }
}
