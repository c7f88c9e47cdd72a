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

/// Whether any byte must be escaped. Text shorter than a word: a table look-up per byte.
/// Longer text: eight bytes per step, the last step overlapping the one before it rather than
/// ending byte by byte ([`word_needs_escape`]).
pub(super) fn any_needs_escape(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| ESCAPED[usize::from(b)]);
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"));
    let last = bytes.len() - 8;
    let mut at = 0;
    while at < last {
        if word_needs_escape(word(at)) {
            return true;
        }
        at += 8;
    }
    word_needs_escape(word(last))
}

/// Whether a byte of `w` is below 0x20, a quote or a backslash. With `q` and `b` the word XOR a
/// quote (a backslash) in every byte, such a byte is zero in `q` (`b`) or below 0x20 in `w`, so
/// subtracting 1 (0x20) from it sets its high bit, which is clear in all three. Borrows run
/// only upwards, from a byte that is itself a hit, so the lowest byte flagged is always a hit:
/// no text is sent to the escaping path wrongly, and none is missed. Bytes of 0x80 and above
/// (UTF-8) never hit.
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let q = w ^ (ONES * u64::from(b'"'));
    let b = w ^ (ONES * u64::from(b'\\'));
    let borrows = q.wrapping_sub(ONES) | b.wrapping_sub(ONES) | w.wrapping_sub(ONES * 0x20);
    borrows & !(q | b | w) & HIGH != 0
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
