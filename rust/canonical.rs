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
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// High bit set in exactly the bytes of `x` that are zero (no borrow between bytes).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7).wrapping_add(LOW7)) | x) & HI
}

/// High bit set in exactly the bytes of `w` that need an escape: below 0x20, `"` or `\\`.
///
/// Exact per byte (unlike the borrow-based "has zero byte" trick), so any window may be
/// inspected, including one that overlaps bytes already written.
#[inline(always)]
fn escape_bytes(w: u64) -> u64 {
    // (b & 0x7f) + 0x60 stays below 0x100 and reaches 0x80 exactly when b & 0x7f >= 0x20.
    let control = !(((w & LOW7).wrapping_add(LO * 0x60)) | w) & HI;
    control | zero_bytes(w ^ (LO * b'"' as u64)) | zero_bytes(w ^ (LO * b'\\' as u64))
}

#[inline(always)]
fn load_u64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// Index of the first byte at or after `i` that needs an escape, or `b.len()`.
#[inline]
pub fn find_escape(b: &[u8], mut i: usize) -> usize {
    let n = b.len();
    while i + 8 <= n {
        let m = escape_bytes(load_u64(b, i));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    if i < n && n >= 8 {
        // The last (overlapping) word, with the bytes before `i` shifted out.
        let skip = i - (n - 8);
        let m = escape_bytes(load_u64(b, n - 8)) >> (8 * skip);
        return if m != 0 {
            i + (m.trailing_zeros() / 8) as usize
        } else {
            n
        };
    }
    while i < n {
        if ESCAPE[b[i] as usize] != 0 {
            return i;
        }
        i += 1;
    }
    n
}

/// The first `n < 8` bytes of `b` in a little-endian word, zero above.
#[inline(always)]
fn load_short(b: &[u8]) -> u64 {
    let n = b.len();
    if n >= 4 {
        let lo = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as u64;
        let hi = u32::from_le_bytes(b[n - 4..].try_into().expect("4 bytes")) as u64;
        lo | (hi << (8 * (n - 4)))
    } else {
        let mut w = 0u64;
        for (k, &c) in b.iter().enumerate() {
            w |= (c as u64) << (8 * k);
        }
        w
    }
}

/// Write `s` as a JSON string with exactly the escapes RFC 8785 prescribes.
///
/// Most strings in tool inputs need no escape: they are checked and stored eight bytes at a
/// time straight into spare capacity (the tail as one overlapping or zero-padded word), with
/// no call to `memcpy`. A string with an escape goes to [`write_str_escaped`] from there.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let n = b.len();
    out.reserve(n + 2 + 8);
    let start = out.len();
    // SAFETY: `n + 2 + 8` bytes of spare capacity: every store below ends within
    // `start + 1 + n + 8`, and `set_len` covers only bytes written.
    unsafe {
        let dst = out.as_mut_ptr().add(start + 1);
        *dst.sub(1) = b'"';
        let mut i = 0;
        while i + 8 <= n {
            let w = load_u64(b, i);
            if escape_bytes(w) != 0 {
                out.set_len(start + 1 + i);
                return write_str_escaped(out, b, i);
            }
            std::ptr::write_unaligned(dst.add(i) as *mut u64, w);
            i += 8;
        }
        if i < n {
            let w = if n >= 8 {
                // The last word overlaps bytes already copied unchanged.
                let skip = i - (n - 8);
                let w = load_u64(b, n - 8);
                if escape_bytes(w) >> (8 * skip) != 0 {
                    out.set_len(start + 1 + i);
                    return write_str_escaped(out, b, i);
                }
                i = n - 8;
                w
            } else {
                let w = load_short(b);
                if escape_bytes(w) & (u64::MAX >> (8 * (8 - n))) != 0 {
                    out.set_len(start + 1);
                    return write_str_escaped(out, b, 0);
                }
                w
            };
            std::ptr::write_unaligned(dst.add(i) as *mut u64, w);
        }
        *dst.add(n) = b'"';
        out.set_len(start + n + 2);
    }
}

/// The rest of [`write_str`] from byte `i` on: scan to the next escape, copy the run, escape.
#[cold]
fn write_str_escaped(out: &mut Vec<u8>, bytes: &[u8], mut i: usize) {
    loop {
        let j = find_escape(bytes, i);
        out.extend_from_slice(&bytes[i..j]);
        let Some(&b) = bytes.get(j) else { break };
        match ESCAPE[b as usize] {
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
        i = j + 1;
    }
    out.push(b'"');
}

/// Write a double as ECMAScript `Number.prototype.toString` does; NaN and ±Infinity are refused.
///
/// zmij finds the shortest round-tripping digits (the same digits as ryu-js, faster: 28 ns
/// against 39 on random doubles, 25 against 56 on prices, on the development machine); only
/// its layout differs from ECMAScript's, in three places fixed up here.
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
    let a = f.abs();
    // Integral values (ids, counts, 0.0 discounts) are exactly their i64: write that.
    if a < 1e16 && (f as i64) as f64 == f {
        out.extend_from_slice(itoa::Buffer::new().format(f as i64).as_bytes());
        return Ok(());
    }
    let mut buf = zmij::Buffer::new();
    let s = buf.format_finite(f).as_bytes();
    // zmij uses fixed notation exactly when the shortest digits' exponent is in -5..=15, that
    // is for 1e-5 <= |f| < 1e16 (both bounds are the doubles nearest them, and no decimal
    // of another double's rounding interval crosses a double's own). ECMAScript also does for
    // -6 and 16..=20. Deciding by `a` avoids reading back bytes zmij has just stored.
    if (1e-5..1e16).contains(&a) || !(1e-6..1e21).contains(&a) {
        copy_short(out, s);
    } else {
        write_exponent_form(out, s);
    }
    Ok(())
}

/// Append `s`: short pieces (most member names) without a `memcpy` call.
#[inline(always)]
pub fn copy_piece(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 32 {
        copy_short(out, s);
    } else {
        out.extend_from_slice(s);
    }
}

/// Append at most 32 bytes with a few overlapping word copies instead of a `memcpy` call.
#[inline(always)]
fn copy_short(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    debug_assert!(n <= 32);
    out.reserve(32);
    // SAFETY: 32 bytes of spare capacity; every read is within `s`, every write within the
    // first `n` spare bytes, and `set_len` covers exactly those.
    unsafe {
        let src = s.as_ptr();
        let dst = out.as_mut_ptr().add(out.len());
        if n >= 16 {
            let head = std::ptr::read_unaligned(src as *const u128);
            let tail = std::ptr::read_unaligned(src.add(n - 16) as *const u128);
            std::ptr::write_unaligned(dst as *mut u128, head);
            std::ptr::write_unaligned(dst.add(n - 16) as *mut u128, tail);
        } else if n >= 8 {
            let head = std::ptr::read_unaligned(src as *const u64);
            let tail = std::ptr::read_unaligned(src.add(n - 8) as *const u64);
            std::ptr::write_unaligned(dst as *mut u64, head);
            std::ptr::write_unaligned(dst.add(n - 8) as *mut u64, tail);
        } else {
            std::ptr::copy_nonoverlapping(src, dst, n);
        }
        out.set_len(out.len() + n);
    }
}

/// zmij's exponent form `[-]d[.ddd]e±x`, in ECMAScript's layout: fixed notation for exponents
/// -6 and 16..=20 (zmij uses fixed notation only for -5..=15), as is otherwise.
#[cold]
fn write_exponent_form(out: &mut Vec<u8>, s: &[u8]) {
    // Never panic on output this function did not expect: fixed notation passes through (with
    // an integral ".0" dropped), and the differential test reports the difference.
    let exponent = s.iter().position(|&b| b == b'e').and_then(|at| {
        let exp = std::str::from_utf8(&s[at + 1..])
            .ok()?
            .parse::<i32>()
            .ok()?;
        Some((at, exp))
    });
    let Some((e_at, exp)) = exponent.filter(|&(_, exp)| exp == -6 || (16..=20).contains(&exp))
    else {
        out.extend_from_slice(s.strip_suffix(b".0").unwrap_or(s));
        return;
    };
    let (sign, mantissa) = match s[0] {
        b'-' => (&s[..1], &s[1..e_at]),
        _ => (&s[..0], &s[..e_at]),
    };
    out.extend_from_slice(sign);
    let digits = mantissa.iter().filter(|b| b.is_ascii_digit());
    if exp == -6 {
        out.extend_from_slice(b"0.00000");
        out.extend(digits);
    } else {
        // At most 17 significant digits and an exponent of 16 or more: always an integer.
        let count = digits.clone().count();
        out.extend(digits);
        out.extend(std::iter::repeat_n(b'0', exp as usize + 1 - count));
    }
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
    // Loads straight from the name (no copy to a stack buffer that is then read back).
    let n = name.len();
    let w = if n >= 8 {
        u64::from_be_bytes(name[..8].try_into().expect("8 bytes"))
    } else if n >= 4 {
        let head = u32::from_be_bytes(name[..4].try_into().expect("4 bytes")) as u64;
        let tail = u32::from_be_bytes(name[n - 4..].try_into().expect("4 bytes")) as u64;
        // `tail` ends with the last byte; overlapping bytes agree, so OR is exact.
        (head << 32) | (tail << (64 - 8 * n))
    } else {
        let mut w = 0u64;
        for (k, &c) in name.iter().enumerate() {
            w |= (c as u64) << (56 - 8 * k);
        }
        w
    };
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
        assert_eq!(f(1.5e-6), "0.0000015");
        assert_eq!(f(-1e-6), "-0.000001");
        assert_eq!(f(1.25e16), "12500000000000000");
        assert_eq!(f(-1.2345678901234567e20), "-123456789012345670000");
        assert_eq!(f(123.0), "123");
        assert_eq!(f(-0.5), "-0.5");
        assert_eq!(f(1.5e300), "1.5e+300");
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

    /// Strings built from pieces that hit every escape at every offset and word boundary.
    #[test]
    fn write_str_and_ascii_prefix_match_the_reference() {
        use crate::reference;
        const PIECES: &[&str] = &[
            "a",
            "bc",
            "defgh",
            "\"",
            "\\",
            "\u{0}",
            "\u{1f}",
            "\n",
            " ",
            "\u{7f}",
            "é",
            "€",
            "😀",
            "\u{e000}",
            "0123456789abcdef",
            "~",
        ];
        let mut x: u64 = 0x1234_5678_9abc_def1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let mut input = String::new();
            for _ in 0..next() % 12 {
                input.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let (mut new, mut old) = (Vec::new(), Vec::new());
            write_str(&mut new, &input);
            reference::write_str(&mut old, &input);
            assert_eq!(new, old, "{input:?}");
            for k in 0..=input.len() {
                let b = &input.as_bytes()[..k];
                assert_eq!(ascii_prefix(b), reference::ascii_prefix(b), "{b:?}");
            }
        }
    }
}
