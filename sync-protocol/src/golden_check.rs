//! Golden-bytes checks shared by the wire and session tests (test builds
//! only): hex in and out, and one assertion that prints the actual
//! encodings ready to paste when a format change is intended.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `actual` (hex) must equal `golden`, line for line.
pub fn assert_golden(actual: &[String], golden: &[&str], what: &str) {
    let report: String = actual
        .iter()
        .map(|h| alloc::format!("    \"{h}\",\n"))
        .collect();
    assert_eq!(actual, golden, "actual {what} encodings:\n{report}");
}
