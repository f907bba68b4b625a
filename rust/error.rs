//! What can go wrong while canonicalizing, and where.
//!
//! Every refusal carries a JSONPath so a user can find the offending value in a large
//! tool input. The Python layer turns this into `dar.CanonicalizationError` in one place.

use std::fmt;

/// Containers nested deeper than this are refused: the limit keeps recursion bounded
/// (no stack overflow, whatever the input) and doubles as the cycle guard.
pub const MAX_DEPTH: usize = 128;

/// One step of a JSONPath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NotFinite(&'static str),
    IntOutOfRange(String),
    LoneSurrogate,
    NonStringKey(String),
    DuplicateKey(String),
    Unsupported(String),
    TooDeep,
    Cycle,
    Syntax(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotFinite(what) => {
                write!(
                    f,
                    "{what} is not a JSON number (RFC 8785 refuses NaN and Infinity)"
                )
            }
            Problem::IntOutOfRange(n) => write!(
                f,
                "integer {n} is outside the exactly representable range ±(2**53-1); \
                 pass large ids as strings"
            ),
            Problem::LoneSurrogate => {
                write!(
                    f,
                    "string contains a lone surrogate, which is not valid Unicode"
                )
            }
            Problem::NonStringKey(t) => write!(f, "object key of type {t} is not a string"),
            Problem::DuplicateKey(k) => write!(f, "duplicate member name {k:?}"),
            Problem::Unsupported(t) => {
                write!(
                    f,
                    "value of type {t} is not JSON (give `default=` to convert it)"
                )
            }
            Problem::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH} levels"),
            Problem::Cycle => write!(f, "container refers to itself (a cycle)"),
            Problem::Syntax(m) => write!(f, "invalid JSON: {m}"),
        }
    }
}

/// A refusal: the problem and the path of the value that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonError {
    pub problem: Problem,
    pub path: Vec<Seg>,
}

impl CanonError {
    pub fn new(problem: Problem, path: Vec<Seg>) -> Self {
        CanonError { problem, path }
    }

    /// The JSONPath of the offending value, e.g. `$.items[3].price`.
    pub fn path_string(&self) -> String {
        format_path(&self.path)
    }
}

impl fmt::Display for CanonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.path_string(), self.problem)
    }
}

impl std::error::Error for CanonError {}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Render path segments as JSONPath: `.name` for identifier-like keys, `['odd key']` otherwise.
pub fn format_path(path: &[Seg]) -> String {
    let mut s = String::from("$");
    for seg in path {
        match seg {
            Seg::Index(i) => {
                s.push('[');
                s.push_str(itoa::Buffer::new().format(*i));
                s.push(']');
            }
            Seg::Key(k) if is_identifier(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Key(k) => {
                s.push_str("['");
                for c in k.chars() {
                    match c {
                        '\'' => s.push_str("\\'"),
                        '\\' => s.push_str("\\\\"),
                        c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
                        c => s.push(c),
                    }
                }
                s.push_str("']");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_as_jsonpath() {
        let p = vec![
            Seg::Key("items".into()),
            Seg::Index(3),
            Seg::Key("price".into()),
        ];
        assert_eq!(format_path(&p), "$.items[3].price");
        assert_eq!(format_path(&[Seg::Key("a b'".into())]), "$['a b\\'']");
        assert_eq!(format_path(&[Seg::Key("9x".into())]), "$['9x']");
        assert_eq!(format_path(&[]), "$");
    }

    #[test]
    fn message_names_path_and_problem() {
        let e = CanonError::new(Problem::NotFinite("NaN"), vec![Seg::Key("x".into())]);
        assert!(e
            .to_string()
            .starts_with("at $.x: NaN is not a JSON number"));
    }
}
