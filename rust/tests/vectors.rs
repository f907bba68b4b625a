//! The RFC 8785 vectors (copied into tests/data/jcs) against the pure canonicalizer.

use std::fs;
use std::path::PathBuf;

use _core::canonical::write_f64;
use _core::text::canonicalize_text;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/jcs")
        .join(rel)
}

#[test]
fn documents_canonicalize_byte_exact() {
    let mut seen = 0;
    for entry in fs::read_dir(data("input")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let expected = fs::read(data("output").join(&name)).unwrap();
        let got = canonicalize_text(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(got, expected, "{name:?}");
        seen += 1;
    }
    assert_eq!(seen, 6);
}

fn double(hex: &str) -> f64 {
    f64::from_bits(u64::from_str_radix(hex, 16).unwrap())
}

fn format(f: f64) -> Option<String> {
    let mut out = Vec::new();
    write_f64(&mut out, f)
        .ok()
        .map(|()| String::from_utf8(out).unwrap())
}

#[test]
fn es6_number_lines() {
    let text = fs::read_to_string(data("es6testfile_10000.txt")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let (hex, expected) = line.split_once(',').unwrap();
        assert_eq!(format(double(hex)).as_deref(), Some(expected), "{line}");
        n += 1;
    }
    assert_eq!(n, 10_000);
}

#[test]
fn appendix_b_table() {
    let text = fs::read_to_string(data("rfc8785_appendix_b.csv")).unwrap();
    for line in text.lines().skip(1) {
        let mut cols = line.splitn(3, ',');
        let (hex, expected) = (cols.next().unwrap(), cols.next().unwrap());
        let got = format(double(hex));
        if expected == "ERROR" {
            assert_eq!(got, None, "{line}");
        } else {
            assert_eq!(got.as_deref(), Some(expected), "{line}");
        }
    }
}
