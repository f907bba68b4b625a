//! RFC 8785 output primitives: strings, numbers and member-name order.
//!
//! Free of Python so that `cargo test` checks them directly; both the Python-object walker
//! and the JSON-text parser write through these functions, so there is one definition of
//! "canonical" in the crate.

use std::cmp::Ordering;

use crate::error::Problem;

/// Largest integer that IEEE-754 doubles represent exactly next to its neighbours.
pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// For each byte: 0 means "copy as is"; otherwise the escape letter (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `w` is a control character, `"` or `\\` (the SWAR "has zero byte" trick).
#[inline(always)]
fn needs_escape(w: u64) -> bool {
    let quote = w ^ (LO * b'"' as u64);
    let backslash = w ^ (LO * b'\\' as u64);
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    // Bytes below 0x20: subtracting 0x20 borrows into the high bit of exactly those bytes
    // that were < 0x20 (ignoring bytes >= 0x80, masked out by `!w`).
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    (has_zero(quote) | has_zero(backslash) | control) != 0
}

/// Write `s` as a JSON string with exactly the escapes RFC 8785 prescribes.
///
/// Scans and copies eight bytes at a time straight into spare capacity: most strings in tool
/// inputs need no escape at all, and short ones should not pay for a `memcpy` call.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2 + 8);
    out.push(b'"');
    let mut i = 0;
    while i < bytes.len() {
        if i + 8 <= bytes.len() {
            let w = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
            if !needs_escape(w) {
                let len = out.len();
                if out.capacity() - len < 8 + 1 {
                    out.reserve(bytes.len() - i + 8 + 1);
                }
                // SAFETY: at least 8 bytes of spare capacity were just ensured.
                unsafe {
                    std::ptr::write_unaligned(out.as_mut_ptr().add(len) as *mut u64, w);
                    out.set_len(len + 8);
                }
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        match ESCAPE[b as usize] {
            0 => out.push(b),
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
            esc => out.extend_from_slice(&[b'\\', esc]),
        }
        i += 1;
    }
    out.push(b'"');
}

/// Write a double as ECMAScript `Number.prototype.toString` does; NaN and ±Infinity are refused.
#[inline]
pub fn write_f64(out: &mut Vec<u8>, f: f64) -> Result<(), Problem> {
    if !f.is_finite() {
        return Err(Problem::NotFinite(if f.is_nan() {
            "NaN"
        } else if f > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }));
    }
    if f == 0.0 {
        // ECMAScript writes -0 as "0".
        out.push(b'0');
        return Ok(());
    }
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(f).as_bytes());
    Ok(())
}

/// Write an integer exactly; refused outside ±(2^53-1), where two ids could share one double.
#[inline]
pub fn write_int(out: &mut Vec<u8>, n: i64) -> Result<(), Problem> {
    if !(-MAX_SAFE_INT..=MAX_SAFE_INT).contains(&n) {
        return Err(Problem::IntOutOfRange(n.to_string()));
    }
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    Ok(())
}

/// Order member names by their UTF-16 code units, as RFC 8785 requires.
///
/// UTF-8 byte order equals code-point order, and code-point order equals UTF-16 order except
/// where a character above U+FFFF (a surrogate pair in UTF-16, lead byte 0xF0..0xF4 in UTF-8)
/// meets one in U+E000..U+FFFF (lead byte 0xEE or 0xEF): there UTF-16 puts the pair first.
/// Two equal-prefix valid UTF-8 strings first differ either at two lead bytes or at two
/// continuation bytes, so looking at the first differing byte is enough.
#[inline]
pub fn cmp_utf16(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    let mut i = 0;
    // Find the first differing byte a word at a time (keys are short; this beats memcmp's call).
    while i + 8 <= n {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            i += ((x ^ y).trailing_zeros() / 8) as usize;
            return cmp_at(a[i], b[i]);
        }
        i += 8;
    }
    while i < n {
        if a[i] != b[i] {
            return cmp_at(a[i], b[i]);
        }
        i += 1;
    }
    a.len().cmp(&b.len())
}

/// Order of two strings at their first differing byte, in UTF-16 terms.
#[inline(always)]
fn cmp_at(x: u8, y: u8) -> Ordering {
    if x >= 0xF0 && (y == 0xEE || y == 0xEF) {
        Ordering::Less
    } else if y >= 0xF0 && (x == 0xEE || x == 0xEF) {
        Ordering::Greater
    } else {
        x.cmp(&y)
    }
}

/// A sort key for the first eight bytes of a name: big-endian, zero-padded.
///
/// For names whose first eight bytes are ASCII, comparing prefixes orders them exactly as
/// [`cmp_utf16`] does unless the prefixes are equal; `None` when a byte is not ASCII.
#[inline]
pub fn ascii_prefix(name: &[u8]) -> Option<u64> {
    let mut word = [0u8; 8];
    let n = name.len().min(8);
    word[..n].copy_from_slice(&name[..n]);
    let w = u64::from_be_bytes(word);
    (w & HI == 0).then_some(w)
}

/// Lowercase hex of a SHA-256 digest, without allocating.
pub fn to_hex(digest: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (i, &b) in digest.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, x);
        String::from_utf8(out).unwrap()
    }

    fn f(x: f64) -> String {
        let mut out = Vec::new();
        write_f64(&mut out, x).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_only_what_rfc8785_says() {
        assert_eq!(s("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s("\u{8}\t\n\u{c}\r"), r#""\b\t\n\f\r""#);
        assert_eq!(s("\u{1}\u{1f}"), r#""\u0001\u001f""#);
        assert_eq!(s("/€\u{7f}😀"), "\"/€\u{7f}😀\"");
        // Escapes found by the word-at-a-time scan at every offset of a long string.
        for pos in 0..20 {
            for c in ['"', '\\', '\u{0}', '\u{1f}'] {
                let mut input: String = "abcdefghijklmnopqrstuvwxyz".into();
                input.insert(pos, c);
                let expected = serde_like(&input);
                assert_eq!(s(&input), expected, "{input:?}");
            }
        }
        assert_eq!(s("\u{7f}\u{80}\u{ff} ~"), "\"\u{7f}\u{80}\u{ff} ~\"");
    }

    /// A byte-at-a-time reference for the scan above.
    fn serde_like(x: &str) -> String {
        let mut r = String::from("\"");
        for c in x.chars() {
            match c {
                '"' => r.push_str("\\\""),
                '\\' => r.push_str("\\\\"),
                '\u{8}' => r.push_str("\\b"),
                '\t' => r.push_str("\\t"),
                '\n' => r.push_str("\\n"),
                '\u{c}' => r.push_str("\\f"),
                '\r' => r.push_str("\\r"),
                c if (c as u32) < 0x20 => r.push_str(&format!("\\u{:04x}", c as u32)),
                c => r.push(c),
            }
        }
        r.push('"');
        r
    }

    #[test]
    fn numbers_follow_ecmascript() {
        assert_eq!(f(-0.0), "0");
        assert_eq!(f(1.0), "1");
        assert_eq!(f(1e21), "1e+21");
        assert_eq!(f(1e20), "100000000000000000000");
        assert_eq!(f(1e-7), "1e-7");
        assert_eq!(f(0.000001), "0.000001");
        assert_eq!(f(5e-324), "5e-324");
        assert!(write_f64(&mut Vec::new(), f64::NAN).is_err());
        assert!(write_f64(&mut Vec::new(), f64::NEG_INFINITY).is_err());
    }

    #[test]
    fn integers_are_exact_within_safe_range() {
        let mut out = Vec::new();
        write_int(&mut out, MAX_SAFE_INT).unwrap();
        assert_eq!(out, b"9007199254740991");
        assert!(write_int(&mut Vec::new(), MAX_SAFE_INT + 1).is_err());
        assert!(write_int(&mut Vec::new(), -MAX_SAFE_INT - 1).is_err());
    }

    #[test]
    fn utf16_order_differs_from_utf8_above_bmp() {
        // U+1F600 (surrogates D83D DE00) sorts before U+E000 in UTF-16, after it in UTF-8.
        assert_eq!(
            cmp_utf16("😀".as_bytes(), "\u{e000}".as_bytes()),
            Ordering::Less
        );
        assert_eq!(
            cmp_utf16("\u{ffff}".as_bytes(), "😀".as_bytes()),
            Ordering::Greater
        );
        assert_eq!(cmp_utf16(b"a", b"b"), Ordering::Less);
        assert_eq!(cmp_utf16(b"ab", b"a"), Ordering::Greater);
        assert_eq!(
            cmp_utf16("\u{80}".as_bytes(), "\u{7ff}".as_bytes()),
            Ordering::Less
        );
        // Differences beyond the first word.
        assert_eq!(
            cmp_utf16("abcdefgh😀".as_bytes(), "abcdefgh\u{e000}".as_bytes()),
            Ordering::Less
        );
        assert_eq!(cmp_utf16(b"abcdefghij", b"abcdefghik"), Ordering::Less);
        assert_eq!(cmp_utf16(b"abcdefghij", b"abcdefghij"), Ordering::Equal);
        assert!(ascii_prefix(b"ab") < ascii_prefix(b"abc"));
        assert!(ascii_prefix(b"b") > ascii_prefix(b"abcdefghijk"));
        assert_eq!(ascii_prefix("é".as_bytes()), None);
    }
}
