//! `parse_ports` accepts exactly the REUSE_PORTS grammar: a property test against a reference
//! written independently from the grammar text, on inputs drawn from the grammar's alphabet.
//!
//! ```text
//! REUSE_PORTS = "*" | item ("," item)*     item = port | port "-" port    1 <= port <= 65535
//! blanks (space, tab) around the value, each item and each bound; at most 64 separate ranges
//! ```
//!
//! The reference goes another way than the parser: `str` splitting, a 65536-bit membership
//! map instead of a range list, and ranges counted as runs of set bits after every item. The
//! one limit that is the parser's choice rather than arithmetic: a numeral has at most 10
//! digits (leading zeros included), so no value can overflow on the way.

use proptest::prelude::*;
use reuse_core::config::parse_ports;

/// The accepted set as maximal (lo, hi) runs, or None if the value is not in the grammar.
fn reference(value: &[u8]) -> Option<Vec<(u16, u16)>> {
    let text = std::str::from_utf8(value).ok()?;
    let blank = |c: char| c == ' ' || c == '\t';
    let whole = text.trim_matches(blank);
    if whole.is_empty() {
        return None;
    }
    let mut member = Bits([0; 1024]);
    if whole == "*" {
        member.set(1, 65535);
        return Some(member.runs());
    }
    for item in text.split(',') {
        let bounds: Vec<&str> = item.trim_matches(blank).split('-').collect();
        let (lo, hi) = match bounds[..] {
            [one] => (port(one)?, port(one)?),
            [lo, hi] => (port(lo.trim_matches(blank))?, port(hi.trim_matches(blank))?),
            _ => return None,
        };
        if lo > hi {
            return None;
        }
        member.set(lo, hi);
        if member.run_count() > 64 {
            return None;
        }
    }
    Some(member.runs())
}

/// Port p is bit p % 64 of word p / 64.
struct Bits([u64; 1024]);

impl Bits {
    fn set(&mut self, lo: usize, hi: usize) {
        for p in lo..=hi {
            self.0[p / 64] |= 1 << (p % 64);
        }
    }

    fn has(&self, p: usize) -> bool {
        self.0[p / 64] >> (p % 64) & 1 == 1
    }

    /// Set bits whose lower neighbour is clear: one per run.
    fn run_count(&self) -> u32 {
        let mut carry = 0u64; // the highest bit of the word below
        let mut n = 0;
        for &w in &self.0 {
            n += (w & !(w << 1 | carry)).count_ones();
            carry = w >> 63;
        }
        n
    }

    fn runs(&self) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let mut p = 0;
        while p < 65536 {
            if self.has(p) {
                let start = p;
                while p + 1 < 65536 && self.has(p + 1) {
                    p += 1;
                }
                out.push((start as u16, p as u16));
            }
            p += 1;
        }
        out
    }
}

fn port(numeral: &str) -> Option<usize> {
    if numeral.is_empty() || numeral.len() > 10 || !numeral.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let v: u64 = numeral.parse().ok()?;
    (1..=65535).contains(&v).then_some(v as usize)
}

fn check(value: &[u8]) -> Result<(), TestCaseError> {
    let got = parse_ports(value).map(|s| s.ranges().collect::<Vec<_>>());
    let want = reference(value);
    match (&got, &want) {
        (Ok(g), Some(w)) => prop_assert_eq!(g, w, "{:?}", String::from_utf8_lossy(value)),
        (Err(e), None) => {
            // The part named is a piece of the value itself.
            let (p, v) = (e.part.as_ptr() as usize, value.as_ptr() as usize);
            prop_assert!(e.part.is_empty() || (p >= v && p + e.part.len() <= v + value.len()));
        }
        _ => prop_assert!(
            false,
            "{:?}: parser {:?}, reference {:?}",
            String::from_utf8_lossy(value),
            got,
            want
        ),
    }
    Ok(())
}

/// A numeral as a person (or a fuzzer) might write one: edges, zeros, overlong.
fn numeral() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..=65535).prop_map(|p| p.to_string()),
        (0u32..70000).prop_map(|p| p.to_string()),
        Just("0".to_string()),
        Just("65535".to_string()),
        Just("65536".to_string()),
        (1u32..=65535, 1usize..8).prop_map(|(p, z)| format!("{}{p}", "0".repeat(z))),
        Just("0000065535".to_string()),
        Just("00000065535".to_string()),
        Just("99999999999".to_string()),
        Just(String::new()),
    ]
}

fn blanks() -> impl Strategy<Value = String> {
    "[ \t]{0,2}"
}

fn item() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (blanks(), numeral(), blanks()).prop_map(|(a, n, b)| format!("{a}{n}{b}")),
        4 => (blanks(), numeral(), blanks(), blanks(), numeral(), blanks())
            .prop_map(|(a, lo, b, c, hi, d)| format!("{a}{lo}{b}-{c}{hi}{d}")),
        1 => Just("*".to_string()),
        1 => Just(String::new()),
        1 => "[0-9*, \t-]{1,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Any string over the grammar's alphabet.
    #[test]
    fn parse_ports_matches_the_reference_on_the_alphabet(value in "[0-9*, \t-]{0,24}") {
        check(value.as_bytes())?;
    }

    /// Lists of items, mostly well formed, some not: the interesting region.
    #[test]
    fn parse_ports_matches_the_reference_on_item_lists(
        items in proptest::collection::vec(item(), 1..12),
        outer in (blanks(), blanks()),
    ) {
        let value = format!("{}{}{}", outer.0, items.join(","), outer.1);
        check(value.as_bytes())?;
    }

    /// Near the cap of 64 separate ranges, merged or not.
    #[test]
    fn parse_ports_matches_the_reference_near_the_range_cap(
        ports in proptest::collection::vec(1u16..400, 55..75),
        closing in proptest::option::of((1u16..400, 0u16..400)),
    ) {
        let mut items: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        if let Some((lo, w)) = closing {
            items.push(format!("{lo}-{}", lo.saturating_add(w)));
        }
        check(items.join(",").as_bytes())?;
    }
}

#[test]
fn the_reference_agrees_on_the_documented_examples() {
    for (v, ok) in [
        ("*", true),
        (" * ", true),
        ("8000", true),
        ("8000,9000-9010", true),
        (" 8000 , 9000 - 9010 ", true),
        ("\t1-3,2-5\t", true),
        ("08000", true),
        ("0", false),
        ("80,", false),
        ("*,80", false),
        ("1-2-3", false),
        ("9010-9000", false),
        ("8 0", false),
        ("00000000080", false),
    ] {
        assert_eq!(reference(v.as_bytes()).is_some(), ok, "{v:?}");
        assert!(check(v.as_bytes()).is_ok(), "{v:?}");
    }
}
