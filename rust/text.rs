//! Canonicalize JSON text without building Python objects.
//!
//! LLM tool-call arguments arrive as JSON strings. Parsing them here avoids a round trip
//! through `json.loads` and lets the parser refuse what a Python dict would silently hide:
//! a duplicate member name (the last one would win, so two different texts would hash alike).
//! The grammar is RFC 8259's; integers are told apart from floats by their literal, so an
//! integer literal beyond ±(2^53-1) is refused exactly as a Python `int` is.
//!
//! One pass writes canonical bytes straight into the output. Strings without a backslash are
//! copied from the source with their quotes (a valid JSON string without escapes is already
//! canonical); integers are copied as written; an object's members are written in source
//! order and, only when that order is not already canonical, reordered in place afterwards.
//! Nothing is allocated per value: the member table and the buffer for unescaped strings are
//! reused per thread. When this parser refuses a text, the exact parser in
//! [`crate::text_checked`] runs instead, so messages and paths are those it has always given.

use std::cell::RefCell;
use std::cmp::Ordering;

use crate::canonical::{cmp_utf16, copy_piece, find_escape, write_f64, write_str, MAX_SAFE_INT};
use crate::error::{CanonError, MAX_DEPTH};
use crate::text_checked;

/// Parse `text` and return its RFC 8785 canonical bytes.
pub fn canonicalize_text(text: &[u8]) -> Result<Vec<u8>, CanonError> {
    let mut out = Vec::with_capacity(text.len());
    canonicalize_text_into(text, &mut out)?;
    Ok(out)
}

/// As [`canonicalize_text`], appending to `out`.
pub fn canonicalize_text_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), CanonError> {
    match std::str::from_utf8(text) {
        Ok(s) => canonicalize_str_into(s, out),
        Err(_) => text_checked::canonicalize_text_into(text, out),
    }
}

/// As [`canonicalize_text_into`] for text already known to be UTF-8 (a Python `str`).
pub fn canonicalize_str_into(text: &str, out: &mut Vec<u8>) -> Result<(), CanonError> {
    let start = out.len();
    if fast_into(text.as_bytes(), out).is_ok() {
        return Ok(());
    }
    out.truncate(start);
    text_checked::canonicalize_text_into(text.as_bytes(), out)
}

/// Where a member name's unescaped bytes are.
#[derive(Clone, Copy)]
struct Member {
    /// Offset of the name in the source, or in `Scratch::names` when `escaped`.
    name: u32,
    len: u32,
    escaped: bool,
    /// The member's bytes in the output: `"name":value`.
    start: usize,
    end: usize,
}

/// Per-thread buffers reused between calls.
#[derive(Default)]
struct Scratch {
    /// Members of the objects being parsed; nested objects push above and truncate back.
    members: Vec<Member>,
    /// Unescaped member names that had a backslash in the source.
    names: Vec<u8>,
    /// One unescaped string value.
    text: String,
    /// An object's bytes while its members are reordered.
    reorder: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Refused: [`text_checked`] says why and where.
struct Refused;

type Res = Result<(), Refused>;

fn fast_into(src: &[u8], out: &mut Vec<u8>) -> Res {
    if src.len() > u32::MAX as usize {
        return Err(Refused);
    }
    SCRATCH.with(|cell| {
        let mut fresh = Scratch::default();
        let mut guard = cell.try_borrow_mut();
        let scratch = match guard.as_mut() {
            Ok(s) => &mut **s,
            Err(_) => &mut fresh,
        };
        scratch.members.clear();
        scratch.names.clear();
        out.reserve(src.len());
        let mut p = Fast {
            src,
            pos: 0,
            out,
            s: scratch,
        };
        p.value(0)?;
        p.skip_ws();
        let done = p.pos == src.len();
        if scratch.reorder.capacity() > 1 << 20 {
            scratch.reorder = Vec::new(); // do not pin a huge buffer after one large text
        }
        if done {
            Ok(())
        } else {
            Err(Refused)
        }
    })
}

/// Powers of ten that doubles hold exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

struct Fast<'a, 'o> {
    src: &'a [u8],
    pos: usize,
    out: &'o mut Vec<u8>,
    s: &'o mut Scratch,
}

impl Fast<'_, '_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Res {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            self.out.extend_from_slice(word);
            Ok(())
        } else {
            Err(Refused)
        }
    }

    fn value(&mut self, depth: usize) -> Res {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'n') => self.literal(b"null"),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            _ => Err(Refused),
        }
    }

    fn array(&mut self, depth: usize) -> Res {
        if depth > MAX_DEPTH {
            return Err(Refused);
        }
        self.pos += 1;
        self.out.push(b'[');
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.out.push(b']');
            return Ok(());
        }
        loop {
            self.value(depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.out.push(b',');
                }
                Some(b']') => {
                    self.pos += 1;
                    self.out.push(b']');
                    return Ok(());
                }
                _ => return Err(Refused),
            }
        }
    }

    /// The unescaped bytes of a member name.
    #[inline(always)]
    fn name(&self, m: &Member) -> &[u8] {
        let (a, b) = (m.name as usize, (m.name + m.len) as usize);
        if m.escaped {
            &self.s.names[a..b]
        } else {
            &self.src[a..b]
        }
    }

    fn object(&mut self, depth: usize) -> Res {
        if depth > MAX_DEPTH {
            return Err(Refused);
        }
        self.pos += 1;
        self.out.push(b'{');
        let body = self.out.len();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.out.push(b'}');
            return Ok(());
        }
        let base = self.s.members.len();
        let names_base = self.s.names.len();
        let mut in_order = true;
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(Refused);
            }
            let start = self.out.len();
            let mut m = self.key()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(Refused);
            }
            self.pos += 1;
            self.out.push(b':');
            self.value(depth)?;
            m.start = start;
            m.end = self.out.len();
            if in_order && self.s.members.len() > base {
                let prev = *self.s.members.last().expect("not empty");
                match cmp_utf16(self.name(&prev), self.name(&m)) {
                    Ordering::Less => {}
                    Ordering::Equal => return Err(Refused), // duplicate
                    Ordering::Greater => in_order = false,
                }
            }
            self.s.members.push(m);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.out.push(b',');
                }
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(Refused),
            }
        }
        if !in_order {
            self.reorder(base, body)?;
        }
        self.s.members.truncate(base);
        self.s.names.truncate(names_base);
        self.out.push(b'}');
        Ok(())
    }

    /// Sort the members `base..` of the object whose members start at `body` in the output,
    /// and rewrite them in that order.
    #[cold]
    fn reorder(&mut self, base: usize, body: usize) -> Res {
        let Scratch {
            members,
            names,
            reorder,
            ..
        } = &mut *self.s;
        let src = self.src;
        let name = |m: &Member| -> &[u8] {
            let (a, b) = (m.name as usize, (m.name + m.len) as usize);
            if m.escaped {
                &names[a..b]
            } else {
                &src[a..b]
            }
        };
        let slice = &mut members[base..];
        slice.sort_unstable_by(|a, b| cmp_utf16(name(a), name(b)));
        if slice.windows(2).any(|w| name(&w[0]) == name(&w[1])) {
            return Err(Refused);
        }
        reorder.clear();
        reorder.extend_from_slice(&self.out[body..]);
        self.out.truncate(body);
        for (i, m) in slice.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out
                .extend_from_slice(&reorder[m.start - body..m.end - body]);
        }
        Ok(())
    }

    /// A member name: written to the output, and where its unescaped bytes are.
    fn key(&mut self) -> Result<Member, Refused> {
        let open = self.pos;
        let end = find_escape(self.src, open + 1);
        match self.src.get(end) {
            Some(b'"') => {
                copy_piece(self.out, &self.src[open..=end]);
                self.pos = end + 1;
                Ok(Member {
                    name: (open + 1) as u32,
                    len: (end - open - 1) as u32,
                    escaped: false,
                    start: 0,
                    end: 0,
                })
            }
            Some(b'\\') => {
                let mut text = std::mem::take(&mut self.s.text);
                let r = self.unescape(end, &mut text);
                let at = self.s.names.len();
                self.s.names.extend_from_slice(text.as_bytes());
                write_str(self.out, &text);
                self.s.text = text;
                r?;
                Ok(Member {
                    name: at as u32,
                    len: (self.s.names.len() - at) as u32,
                    escaped: true,
                    start: 0,
                    end: 0,
                })
            }
            _ => Err(Refused),
        }
    }

    fn string(&mut self) -> Res {
        let open = self.pos;
        let end = find_escape(self.src, open + 1);
        match self.src.get(end) {
            Some(b'"') => {
                // No escape and no control character: the source is already canonical.
                copy_piece(self.out, &self.src[open..=end]);
                self.pos = end + 1;
                Ok(())
            }
            Some(b'\\') => {
                let mut text = std::mem::take(&mut self.s.text);
                let r = self.unescape(end, &mut text);
                if r.is_ok() {
                    write_str(self.out, &text);
                }
                self.s.text = text;
                r
            }
            _ => Err(Refused),
        }
    }

    /// Unescape the string opened at `self.pos`, whose first backslash is at `first`, into
    /// `text`; leaves `self.pos` after the closing quote.
    #[cold]
    fn unescape(&mut self, first: usize, text: &mut String) -> Res {
        text.clear();
        let src = self.src;
        let mut run = self.pos + 1;
        let mut at = first;
        loop {
            // SAFETY of from_utf8 not needed: the source is valid UTF-8 and `run..at` starts
            // after an ASCII byte and stops before one, so it is whole characters.
            text.push_str(std::str::from_utf8(&src[run..at]).map_err(|_| Refused)?);
            match src.get(at) {
                Some(b'"') => {
                    self.pos = at + 1;
                    return Ok(());
                }
                Some(b'\\') => {}
                _ => return Err(Refused),
            }
            let esc = *src.get(at + 1).ok_or(Refused)?;
            at += 2;
            match esc {
                b'"' => text.push('"'),
                b'\\' => text.push('\\'),
                b'/' => text.push('/'),
                b'b' => text.push('\u{8}'),
                b'f' => text.push('\u{c}'),
                b'n' => text.push('\n'),
                b'r' => text.push('\r'),
                b't' => text.push('\t'),
                b'u' => {
                    let hi = hex4(src, at)?;
                    at += 4;
                    let c = if (0xD800..0xDC00).contains(&hi) {
                        if !src[at..].starts_with(b"\\u") {
                            return Err(Refused);
                        }
                        let lo = hex4(src, at + 2)?;
                        at += 6;
                        if !(0xDC00..0xE000).contains(&lo) {
                            return Err(Refused);
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    } else if (0xDC00..0xE000).contains(&hi) {
                        return Err(Refused);
                    } else {
                        hi
                    };
                    text.push(char::from_u32(c).ok_or(Refused)?);
                }
                _ => return Err(Refused),
            }
            run = at;
            at = find_escape(src, at);
        }
    }

    fn digits(&mut self, acc: &mut u64) -> usize {
        let start = self.pos;
        while let Some(&d @ b'0'..=b'9') = self.src.get(self.pos) {
            *acc = acc.wrapping_mul(10).wrapping_add((d - b'0') as u64);
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Res {
        let start = self.pos;
        let neg = self.src[start] == b'-';
        if neg {
            self.pos += 1;
        }
        let int_start = self.pos;
        let mut mant = 0u64;
        let n = self.digits(&mut mant);
        if n == 0 || (n > 1 && self.src[int_start] == b'0') {
            return Err(Refused);
        }
        if !matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            // An integer literal is its own canonical form, except "-0" and beyond 2^53-1.
            if n <= 15 || (n == 16 && mant <= MAX_SAFE_INT as u64) {
                if mant == 0 {
                    self.out.push(b'0');
                } else {
                    copy_piece(self.out, &self.src[start..self.pos]);
                }
                return Ok(());
            }
            return self.big_integer(start);
        }
        let mut digits = n;
        let mut exp10: i64 = 0;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let f = self.digits(&mut mant);
            if f == 0 {
                return Err(Refused);
            }
            digits += f;
            exp10 -= f as i64;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            let eneg = match self.peek() {
                Some(b'-') => {
                    self.pos += 1;
                    true
                }
                Some(b'+') => {
                    self.pos += 1;
                    false
                }
                _ => false,
            };
            let mut e = 0u64;
            let k = self.digits(&mut e);
            if k == 0 {
                return Err(Refused);
            }
            if k > 6 {
                digits = usize::MAX; // leave huge exponents to the full parser
            } else if eneg {
                exp10 -= e as i64;
            } else {
                exp10 += e as i64;
            }
        }
        let f = if digits <= 15 && (-22..=22).contains(&exp10) {
            // Clinger's fast path: the mantissa and the power of ten are exact doubles, so one
            // IEEE multiplication or division rounds correctly, as the full parser does.
            let m = mant as f64;
            let v = if exp10 < 0 {
                m / POW10[(-exp10) as usize]
            } else {
                m * POW10[exp10 as usize]
            };
            if neg {
                -v
            } else {
                v
            }
        } else {
            // SAFETY: the literal is ASCII.
            let lit = unsafe { std::str::from_utf8_unchecked(&self.src[start..self.pos]) };
            lit.parse::<f64>().map_err(|_| Refused)?
        };
        write_f64(self.out, f).map_err(|_| Refused)
    }

    /// A long integer literal is kept only when it is exactly a double's canonical form.
    #[cold]
    fn big_integer(&mut self, start: usize) -> Res {
        let lit = &self.src[start..self.pos];
        // SAFETY: the literal is ASCII.
        let f: f64 = unsafe { std::str::from_utf8_unchecked(lit) }
            .parse()
            .map_err(|_| Refused)?;
        let at = self.out.len();
        if write_f64(self.out, f).is_ok() && &self.out[at..] == lit {
            return Ok(());
        }
        Err(Refused)
    }
}

fn hex4(src: &[u8], at: usize) -> Result<u32, Refused> {
    let digits = src.get(at..at + 4).ok_or(Refused)?;
    let mut n = 0u32;
    for &d in digits {
        n = n * 16 + (d as char).to_digit(16).ok_or(Refused)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Problem;

    fn canon(t: &str) -> Result<String, CanonError> {
        canonicalize_text(t.as_bytes()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn sorts_and_normalizes() {
        assert_eq!(
            canon(r#" { "b" : [1.0, -0, 1E2], "a": "\u00e9\/" } "#).unwrap(),
            r#"{"a":"é/","b":[1,0,100]}"#
        );
    }

    #[test]
    fn refuses_duplicates_with_path() {
        let e = canon(r#"{"x": {"k": 1, "k": 2}}"#).unwrap_err();
        assert_eq!(e.problem, Problem::DuplicateKey("k".into()));
        assert_eq!(e.path_string(), "$.x");
    }

    #[test]
    fn refuses_big_integers_but_not_big_floats() {
        let e = canon(r#"{"id": [9007199254740993]}"#).unwrap_err();
        assert_eq!(e.path_string(), "$.id[0]");
        assert!(canon("9007199254740993.0").is_ok()); // a float literal may round
        assert_eq!(
            canon("-333333333333333300000").unwrap(),
            "-333333333333333300000"
        );
        assert!(canon("333333333333333300001").is_err());
        assert_eq!(canon("9007199254740992.0").unwrap(), "9007199254740992");
        assert_eq!(
            canon("1e400").unwrap_err().problem,
            Problem::NotFinite("Infinity")
        );
    }

    #[test]
    fn refuses_lone_surrogates() {
        assert_eq!(
            canon(r#"["\ud800"]"#).unwrap_err().problem,
            Problem::LoneSurrogate
        );
        assert_eq!(
            canon(r#""\udc00x""#).unwrap_err().problem,
            Problem::LoneSurrogate
        );
        assert_eq!(canon(r#""\ud83d\ude00""#).unwrap(), "\"😀\"");
    }

    #[test]
    fn depth_is_bounded() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(canon(&ok).is_ok());
        let deep = "[".repeat(100_000);
        assert_eq!(canon(&deep).unwrap_err().problem, Problem::TooDeep);
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "",
            "[1,]",
            "{\"a\"1}",
            "01",
            "1.",
            "-",
            "tru",
            "\"\u{1}\"",
            "[1] x",
            "{1:2}",
        ] {
            assert!(
                matches!(canon(bad).unwrap_err().problem, Problem::Syntax(_)),
                "{bad:?}"
            );
        }
    }
}

/// The single-pass parser against the exact one it stands in for, on generated texts.
#[cfg(test)]
mod differential {
    use super::*;

    /// xorshift64*: deterministic, so a failure can be reproduced from its seed.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const PIECES: &[&str] = &[
        "a",
        "b",
        "id",
        "é",
        "€",
        "😀",
        "\u{e000}",
        "\u{ffff}",
        " ",
        "\\\"",
        "\\\\",
        "\\/",
        "\\n",
        "\\t",
        "\\u0000",
        "\\u001f",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\uE000",
        "x",
        "\u{7f}",
        "\u{80}",
        "longer piece of text",
    ];

    fn ws(r: &mut Rng, t: &mut String) {
        for _ in 0..r.below(4).saturating_sub(1) {
            t.push([' ', '\t', '\n', '\r'][r.below(4) as usize]);
        }
    }

    fn string(r: &mut Rng, t: &mut String, short: bool) {
        t.push('"');
        let n = if short { r.below(4) } else { r.below(12) };
        for _ in 0..n {
            t.push_str(PIECES[r.below(PIECES.len() as u64) as usize]);
        }
        t.push('"');
    }

    fn number(r: &mut Rng, t: &mut String) {
        match r.below(9) {
            0 => t.push_str(&(r.next() as i64 >> r.below(64)).to_string()),
            1 => t.push_str(&(r.below(2000) as i64 - 1000).to_string()),
            2 => t.push_str(&format!("{}.{}", r.below(100_000), r.below(100))),
            3 => t.push_str(&format!("{:?}", f64::from_bits(r.next()))),
            4 => t.push_str(&format!(
                "{}{}e{}{}",
                if r.below(2) == 0 { "-" } else { "" },
                r.below(1000),
                ["", "+", "-"][r.below(3) as usize],
                r.below(330)
            )),
            5 => t.push_str(
                ["-0", "0", "-0.0", "0e0", "1E400", "9007199254740993"][r.below(6) as usize],
            ),
            6 => t.push_str(&format!("{}", (r.below(1_000_000) as f64) * 1e15)),
            7 => t.push_str(&format!("{:e}", r.next() as f64 / 7.0)),
            _ => t.push_str(&format!(
                "0.{:0>width$}",
                r.below(1000),
                width = r.below(25) as usize
            )),
        }
    }

    pub fn value(r: &mut Rng, t: &mut String, depth: u32) {
        ws(r, t);
        let container = depth < 5 && r.below(3) == 0;
        match if container {
            r.below(2)
        } else {
            2 + r.below(6)
        } {
            0 => {
                t.push('[');
                let n = r.below(6);
                for i in 0..n {
                    if i > 0 {
                        t.push(',');
                    }
                    value(r, t, depth + 1);
                }
                ws(r, t);
                t.push(']');
            }
            1 => {
                t.push('{');
                let n = r.below(7);
                for i in 0..n {
                    if i > 0 {
                        t.push(',');
                    }
                    ws(r, t);
                    string(r, t, true);
                    ws(r, t);
                    t.push(':');
                    value(r, t, depth + 1);
                }
                ws(r, t);
                t.push('}');
            }
            2 | 3 => string(r, t, false),
            4 | 5 => number(r, t),
            6 => t.push_str(["null", "true", "false"][r.below(3) as usize]),
            _ => t.push_str("[[[{}]],{\"k\":[]}]"),
        }
        ws(r, t);
    }

    /// Both parsers: equal bytes when they accept, and the same acceptance.
    fn check(text: &[u8]) -> bool {
        let mut slow = Vec::new();
        let slow_ok = text_checked::canonicalize_text_into(text, &mut slow).is_ok();
        let mut fast = Vec::new();
        let fast_ok = match std::str::from_utf8(text) {
            Ok(s) => fast_into(s.as_bytes(), &mut fast).is_ok(),
            Err(_) => false,
        };
        assert_eq!(fast_ok, slow_ok, "{:?}", String::from_utf8_lossy(text));
        if fast_ok {
            assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(text));
        }
        slow_ok
    }

    #[test]
    fn fast_parser_matches_the_exact_one_on_generated_texts() {
        let mut r = Rng::new(18);
        let (mut valid, mut refused) = (0, 0);
        for _ in 0..30_000 {
            let mut t = String::new();
            value(&mut r, &mut t, 0);
            if check(t.as_bytes()) {
                valid += 1;
            } else {
                refused += 1;
            }
        }
        // Generated values are valid except duplicates, 1E400 and 9007199254740993.
        assert!(valid > 20_000, "{valid} valid, {refused} refused");
    }

    #[test]
    fn fast_parser_matches_the_exact_one_on_mutated_texts() {
        let mut r = Rng::new(8785);
        let mut seen_ok = 0;
        for _ in 0..30_000 {
            let mut t = String::new();
            value(&mut r, &mut t, 0);
            let mut b = t.into_bytes();
            for _ in 0..1 + r.below(3) {
                if b.is_empty() {
                    break;
                }
                let i = r.below(b.len() as u64) as usize;
                match r.below(4) {
                    0 => {
                        b.remove(i);
                    }
                    1 => b.insert(i, b"\"\\{}[],:0-.eE \x01u"[r.below(16) as usize]),
                    2 => b[i] = r.next() as u8,
                    _ => b.truncate(i),
                }
            }
            if check(&b) {
                seen_ok += 1;
            }
        }
        assert!(seen_ok > 1000, "{seen_ok}");
    }

    #[test]
    fn objects_in_every_order_and_with_duplicates() {
        for text in [
            r#"{"b":1,"a":2,"c":{"z":[],"y":{"q":1,"p":2}}}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"b":1,"a":2,"b":3}"#,
            r#"{"\u0061":1,"a":2}"#,
            r#"{"😀":1,"":2,"\ue000":3}"#,
            r#"{"a":1,"b":{"a":1,"a":2}}"#,
            r#"[{"b":"\n","a":"\u00e9"},{"d":-0,"c":1.50}]"#,
        ] {
            check(text.as_bytes());
        }
    }
}
