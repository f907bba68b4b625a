//! The number formatter (zmij, laid out as ECMAScript) against ryu-js (the reference formatter) on more than twenty
//! million doubles, by category, plus the 10,000-line ES6 file.
//!
//! `make test` runs this in release mode:
//! `cargo test --release --no-default-features --features reference --test numbers`.
//! A debug build checks a twentieth of each category.

use std::fs;
use std::path::PathBuf;

use _core::canonical::write_f64;
use _core::reference;

/// xorshift64*: deterministic, so a failure can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn scale(n: u64) -> u64 {
    if cfg!(debug_assertions) {
        n / 20
    } else {
        n
    }
}

/// Checks one double (and its negation) and counts it.
struct Check {
    new: Vec<u8>,
    old: Vec<u8>,
    count: u64,
}

impl Check {
    fn one(&mut self, f: f64) {
        if !f.is_finite() {
            return;
        }
        for x in [f, -f] {
            self.new.clear();
            self.old.clear();
            write_f64(&mut self.new, x).unwrap();
            reference::write_f64(&mut self.old, x);
            assert_eq!(
                self.new,
                self.old,
                "{x:e} (bits {:#018x}): {} vs ryu-js {}",
                x.to_bits(),
                String::from_utf8_lossy(&self.new),
                String::from_utf8_lossy(&self.old)
            );
            self.count += 1;
        }
    }

    /// `f` and its neighbours up to `ulps` away.
    fn around(&mut self, f: f64, ulps: u64) {
        let b = f.to_bits();
        for d in 0..=ulps {
            self.one(f64::from_bits(b.wrapping_add(d)));
            self.one(f64::from_bits(b.wrapping_sub(d)));
        }
    }
}

#[test]
fn twenty_million_doubles_match_ryu_js() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut c = Check {
        new: Vec::new(),
        old: Vec::new(),
        count: 0,
    };
    // Random bit patterns: every exponent, full 17-digit mantissas.
    for _ in 0..scale(4_000_000) {
        c.one(f64::from_bits(r.next()));
    }
    // Subnormals.
    for _ in 0..scale(500_000) {
        c.one(f64::from_bits(r.below(1 << 52)));
    }
    // Prices: cents, tenths and thousandths up to a few million, and their neighbours.
    for _ in 0..scale(1_000_000) {
        let cents = r.below(1_000_000_000) as f64;
        c.around(cents / 100.0, 1);
        c.one(r.below(100_000_000) as f64 / 10.0);
        c.one(r.below(100_000_000) as f64 / 1000.0);
    }
    // Short decimals at every scale the fast path covers and beyond: d digits, 10^e.
    for _ in 0..scale(1_500_000) {
        let digits = 1 + r.below(17) as u32;
        let m = r.below(10u64.pow(digits)) as f64;
        let e = r.below(60) as i32 - 30;
        c.around(m * 10f64.powi(e), 1);
    }
    // Powers of ten and their neighbours, across the whole range.
    for e in -325..=308 {
        let p: f64 = format!("1e{e}").parse().unwrap();
        c.around(p, 64);
        for d in 2..10 {
            c.around(format!("{d}e{e}").parse().unwrap(), 4);
        }
    }
    // Integers from 1e15 to 1e21 (written without an exponent up to 1e21) and neighbours.
    for _ in 0..scale(1_000_000) {
        let e = 15 + r.below(7) as i32;
        let f = (r.next() as f64 / u64::MAX as f64 + 1.0) * 10f64.powi(e);
        c.around(f.round(), 1);
    }
    // Where zmij's layout and ECMAScript's part: around 1e-6, 1e-5, 1e16 and 1e21.
    for edge in [1e-6, 1e-5, 1e15, 1e16, 1e-7, 1e21, 1e14, 0.1, 0.5] {
        c.around(edge, 100_000);
    }
    assert!(c.count >= scale(20_000_000), "only {} doubles", c.count);
    eprintln!("{} doubles checked", c.count);
}

#[test]
fn es6_number_lines_match_ryu_js() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/jcs/es6testfile_10000.txt");
    let text = fs::read_to_string(path).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let (hex, expected) = line.split_once(',').unwrap();
        let f = f64::from_bits(u64::from_str_radix(hex, 16).unwrap());
        let mut new = Vec::new();
        write_f64(&mut new, f).unwrap();
        let mut old = Vec::new();
        reference::write_f64(&mut old, f);
        assert_eq!(new, expected.as_bytes(), "{line}");
        assert_eq!(new, old, "{line}");
        n += 1;
    }
    assert_eq!(n, 10_000);
}
