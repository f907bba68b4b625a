//! The differential reference: the canonicalizer's primitives written the plain, slow way, kept
//! for differential tests only (compiled with `cfg(test)` or the `reference` feature, never into
//! the wheel).

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

/// Write a finite double with ryu-js alone (the reference formatter).
pub fn write_f64(out: &mut Vec<u8>, f: f64) {
    if f == 0.0 {
        out.push(b'0');
    } else {
        out.extend_from_slice(ryu_js::Buffer::new().format_finite(f).as_bytes());
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
