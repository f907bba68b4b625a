//! The slow path that words refusals: a JSON-text parser that builds a tree of owned values,
//! then writes it.
//!
//! [`crate::text`] runs a faster single-pass parser and comes here only when that one refuses
//! the text, so every refusal keeps exactly this parser's message and JSONPath. The
//! differential tests in `text.rs` check that both accept the same texts with the same bytes.
//!
//! LLM tool-call arguments arrive as JSON strings. Parsing them here avoids a round trip
//! through `json.loads` and lets the parser refuse what a Python dict would silently hide:
//! a duplicate member name (the last one would win, so two different texts would hash alike).
//! The grammar is RFC 8259's; integers are told apart from floats by their literal, so an
//! integer literal beyond ±(2^53-1) is refused exactly as a Python `int` is.

use crate::canonical::{cmp_utf16, write_f64, write_int, write_str};
use crate::error::{CanonError, Problem, Seg, MAX_DEPTH};

enum Value {
    Null,
    True,
    False,
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
    path: Vec<Seg>,
}

/// Parse `text` and append its RFC 8785 canonical bytes to `out`.
pub fn canonicalize_text_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), CanonError> {
    let text = std::str::from_utf8(text).map_err(|e| {
        CanonError::new(
            Problem::Syntax(format!("not UTF-8 at byte {}", e.valid_up_to())),
            vec![],
        )
    })?;
    let mut p = Parser {
        src: text.as_bytes(),
        pos: 0,
        path: Vec::new(),
    };
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos != p.src.len() {
        return Err(p.syntax("unexpected data after the JSON value"));
    }
    write_value(&value, out);
    Ok(())
}

fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::True => out.extend_from_slice(b"true"),
        Value::False => out.extend_from_slice(b"false"),
        // Range and finiteness were checked while parsing.
        Value::Int(n) => write_int(out, *n).expect("checked by the parser"),
        Value::Float(f) => write_f64(out, *f).expect("checked by the parser"),
        Value::Str(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(item, out);
            }
            out.push(b'}');
        }
    }
}

impl Parser<'_> {
    fn err(&self, problem: Problem) -> CanonError {
        CanonError::new(problem, self.path.clone())
    }

    fn syntax(&self, msg: &str) -> CanonError {
        self.err(Problem::Syntax(format!("{msg} at byte {}", self.pos)))
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> Result<Value, CanonError> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.syntax("invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, CanonError> {
        self.skip_ws();
        match self.src.get(self.pos) {
            None => Err(self.syntax("unexpected end of input")),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b't') => self.literal(b"true", Value::True),
            Some(b'f') => self.literal(b"false", Value::False),
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'[') => self.array(depth + 1),
            Some(b'{') => self.object(depth + 1),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.syntax("unexpected character")),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, CanonError> {
        if depth > MAX_DEPTH {
            return Err(self.err(Problem::TooDeep));
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.src.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.path.push(Seg::Index(items.len()));
            items.push(self.value(depth)?);
            self.path.pop();
            self.skip_ws();
            match self.src.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.syntax("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, CanonError> {
        if depth > MAX_DEPTH {
            return Err(self.err(Problem::TooDeep));
        }
        self.pos += 1;
        let mut members: Vec<(String, Value)> = Vec::new();
        self.skip_ws();
        if self.src.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.src.get(self.pos) != Some(&b'"') {
                return Err(self.syntax("expected a member name"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.src.get(self.pos) != Some(&b':') {
                return Err(self.syntax("expected ':'"));
            }
            self.pos += 1;
            self.path.push(Seg::Key(key));
            let v = self.value(depth)?;
            let Some(Seg::Key(key)) = self.path.pop() else {
                unreachable!()
            };
            members.push((key, v));
            self.skip_ws();
            match self.src.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.syntax("expected ',' or '}'")),
            }
        }
        members.sort_by(|a, b| cmp_utf16(a.0.as_bytes(), b.0.as_bytes()));
        if let Some(w) = members.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(self.err(Problem::DuplicateKey(w[0].0.clone())));
        }
        Ok(Value::Object(members))
    }

    fn hex4(&mut self) -> Result<u32, CanonError> {
        let digits = self
            .src
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.syntax("short \\u escape"))?;
        let mut n = 0u32;
        for &d in digits {
            let v = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.syntax("bad \\u escape"))?;
            n = n * 16 + v;
        }
        self.pos += 4;
        Ok(n)
    }

    fn string(&mut self) -> Result<String, CanonError> {
        self.pos += 1; // opening quote
        let mut s = String::new();
        loop {
            let start = self.pos;
            while let Some(&b) = self.src.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // The source is valid UTF-8 and we stopped at ASCII bytes, so this slice is too.
            s.push_str(std::str::from_utf8(&self.src[start..self.pos]).expect("valid UTF-8"));
            match self.src.get(self.pos) {
                None => return Err(self.syntax("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let esc = *self
                        .src
                        .get(self.pos)
                        .ok_or_else(|| self.syntax("unterminated string"))?;
                    self.pos += 1;
                    match esc {
                        b'"' => s.push('"'),
                        b'\\' => s.push('\\'),
                        b'/' => s.push('/'),
                        b'b' => s.push('\u{8}'),
                        b'f' => s.push('\u{c}'),
                        b'n' => s.push('\n'),
                        b'r' => s.push('\r'),
                        b't' => s.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if !self.src[self.pos..].starts_with(b"\\u") {
                                    return Err(self.err(Problem::LoneSurrogate));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err(Problem::LoneSurrogate));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(self.err(Problem::LoneSurrogate));
                            } else {
                                hi
                            };
                            s.push(char::from_u32(c).expect("surrogates handled above"));
                        }
                        _ => return Err(self.syntax("invalid escape")),
                    }
                }
                Some(_) => return Err(self.syntax("control character in string")),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.src.get(self.pos) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Value, CanonError> {
        let start = self.pos;
        if self.src[self.pos] == b'-' {
            self.pos += 1;
        }
        let int_start = self.pos;
        let n = self.digits();
        if n == 0 || (n > 1 && self.src[int_start] == b'0') {
            return Err(self.syntax("invalid number"));
        }
        let mut is_int = true;
        if self.src.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            is_int = false;
            if self.digits() == 0 {
                return Err(self.syntax("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.src.get(self.pos) {
            self.pos += 1;
            is_int = false;
            if let Some(b'+' | b'-') = self.src.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.syntax("invalid number"));
            }
        }
        let lit = std::str::from_utf8(&self.src[start..self.pos]).expect("ASCII");
        if is_int {
            if let Ok(v) = lit.parse::<i64>() {
                if write_int(&mut Vec::new(), v).is_ok() {
                    return Ok(Value::Int(v));
                }
            }
            // JSON has only doubles. A long integer literal is kept when it *is* a double's
            // canonical form (ECMAScript writes 1e20 as "100000000000000000000"), so our own
            // output always parses back; one that would round (9007199254740993) is refused.
            let f: f64 = lit.parse().map_err(|_| self.syntax("invalid number"))?;
            let mut canon = Vec::new();
            if write_f64(&mut canon, f).is_ok() && canon == lit.as_bytes() {
                return Ok(Value::Float(f));
            }
            return Err(self.err(Problem::IntOutOfRange(lit.to_owned())));
        }
        // Rust's float parsing is correctly rounded, as RFC 8785 assumes.
        let f: f64 = lit.parse().map_err(|_| self.syntax("invalid number"))?;
        if !f.is_finite() {
            return Err(self.err(Problem::NotFinite(if f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            })));
        }
        Ok(Value::Float(f))
    }
}
