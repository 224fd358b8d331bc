//! US Social Security numbers.
//!
//! Shapes: `AAA-GG-SSSS` or `AAA GG SSSS` (one separator kind throughout: `123-45 6789` is not
//! one); `AAA.GG.SSSS` and a bare `AAAGGSSSS` only with SSN context in the 40 bytes before or
//! after (`ssn`, `SSN#`, `social security`, `soc. sec.`, `ss#`, `ss no`, `taxpayer`, whole words,
//! case-insensitive; `_`/`-`/`.` may stand for the spaces, so JSON keys such as
//! `social_security_number` count). A separated SSN must not continue into a longer chain of
//! digit groups (`1-123-45-6789`, `123 45 6789 12`).
//!
//! Validity (SSA rules): area not 000, 666 or 900–999; group not 00; serial not 0000; and not
//! one of the numbers the SSA lists as invalid because they were used in advertising:
//! 078-05-1120, 219-09-9999, 123-45-6789 and 987-65-4320 to 987-65-4329.

use super::bytes::{at, before, context_near, digit, digits_exactly, right_ok};

/// Context words that make a bare 9-digit run (or a dotted one) an SSN.
const CONTEXT: &[&[u8]] = &[
    b"ssn",
    b"social security",
    b"social sec",
    b"soc sec",
    b"ss#",
    b"ss no",
    b"ss num",
    b"taxpayer",
];

/// How far before the number the context may start, or after it, in bytes.
const WINDOW: usize = 40;

/// The end of an SSN whose first digit is at `s` (run of digits up to `run_end`; the left
/// boundary was checked by the caller).
pub(super) fn detect(b: &[u8], s: usize, run_end: usize) -> Option<usize> {
    match run_end - s {
        9 => (right_ok(b, run_end)
            && valid(b, [s, s + 3, s + 5])
            && context_near(b, s, run_end, WINDOW, CONTEXT))
        .then_some(run_end),
        3 => {
            let sep = at(b, run_end);
            if !matches!(sep, b'-' | b' ' | b'.') {
                return None;
            }
            let g = run_end + 1;
            let ser = g + 3;
            let end = ser + 4;
            let shaped =
                digits_exactly(b, g, 2) && at(b, g + 2) == sep && digits_exactly(b, ser, 4);
            if !shaped || !right_ok(b, end) {
                return None;
            }
            // Not part of a longer chain of groups with the same separator.
            let chained_before = before(b, s) == sep && s >= 2 && at(b, s - 2).is_ascii_digit();
            let chained_after = at(b, end) == sep && at(b, end + 1).is_ascii_digit();
            if chained_before || chained_after || !valid(b, [s, g, ser]) {
                return None;
            }
            if sep == b'.' && !context_near(b, s, end, WINDOW, CONTEXT) {
                return None;
            }
            Some(end)
        }
        _ => None,
    }
}

/// SSA validity of the number whose area, group and serial start at the given offsets.
fn valid(b: &[u8], [a, g, s]: [usize; 3]) -> bool {
    let num = |i: usize, n: usize| (i..i + n).fold(0u32, |acc, k| acc * 10 + digit(b, k));
    let area = num(a, 3);
    let group = num(g, 2);
    let serial = num(s, 4);
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    !matches!(
        (area, group, serial),
        (78, 5, 1120) | (219, 9, 9999) | (123, 45, 6789)
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::only;
    use crate::scan::Detector::Ssn;

    fn ssns(s: &str) -> Vec<&str> {
        only(s, Ssn)
    }

    #[test]
    fn separated_forms() {
        assert_eq!(ssns("SSN 219-45-6780."), vec!["219-45-6780"]);
        assert_eq!(ssns("id 536 22 1234"), vec!["536 22 1234"]);
        assert_eq!(ssns("(001-01-0001)"), vec!["001-01-0001"]);
        assert_eq!(ssns(r#"{"ssn":"899-99-9999"}"#), vec!["899-99-9999"]);
        assert_eq!(
            ssns("a: 665-12-3456, b: 667-12-3456"),
            vec!["665-12-3456", "667-12-3456"]
        );
        // Dots only with context.
        assert_eq!(ssns("SSN: 536.22.1234"), vec!["536.22.1234"]);
        assert!(ssns("version 536.22.1234").is_empty());
    }

    #[test]
    fn bare_nine_digits_need_context() {
        assert_eq!(ssns("SSN: 536221234"), vec!["536221234"]);
        assert_eq!(ssns("ssn#536221234"), vec!["536221234"]);
        assert_eq!(ssns("Social Security Number: 536221234"), vec!["536221234"]);
        assert_eq!(
            ssns(r#"{"social_security_number": "536221234"}"#),
            vec!["536221234"]
        );
        assert_eq!(ssns("soc. sec. no. 536221234"), vec!["536221234"]);
        assert_eq!(ssns("taxpayer id 536221234"), vec!["536221234"]);
        assert_eq!(
            ssns("the SSNs are 536221234, 536221235"),
            vec!["536221234", "536221235"]
        );
        assert_eq!(ssns("gave 536221234 as their SSN"), vec!["536221234"]);
        assert_eq!(ssns("536.22.1234 is the ssn"), vec!["536.22.1234"]);
        assert!(ssns("order 536221234").is_empty());
        assert!(ssns("536221234").is_empty());
        assert!(ssns("classname 536221234").is_empty());
        // Context too far away.
        assert!(ssns("ssn is not what this long sentence is about at all: 536221234").is_empty());
    }

    #[test]
    fn invalid_numbers() {
        for s in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "078-05-1120",
            "219-09-9999",
            "123-45-6789",
            "987-65-4320",
            "987-65-4329",
        ] {
            assert!(ssns(&format!("SSN {s}")).is_empty(), "{s}");
            let bare: String = s.chars().filter(char::is_ascii_digit).collect();
            assert!(ssns(&format!("SSN {bare}")).is_empty(), "{bare}");
        }
    }

    #[test]
    fn near_misses() {
        for s in [
            "SSN 219-45 6780",     // mixed separators
            "SSN 219 45-6780",     // mixed separators
            "ORD-219456780",       // glued to an id
            "ORD-1234567890",      // 10 digits
            "SSN 2194567801",      // 10 digits
            "SSN 21945678",        // 8 digits
            "1-219-45-6780",       // longer dashed chain
            "219-45-6780-1",       // longer dashed chain
            "12 219 45 6780",      // longer spaced chain
            "219-45-6780 5",       // fine: 5 is not part of a chain (checked below)
            "94105-1234",          // ZIP+4
            "2026-03-15T14:23:07", // timestamp
            "978-3-16-148410-0",   // ISBN
            "550e8400-e29b-41d4-a716-446655440000",
            "x219-45-6780",
            "219-45-6780x",
            "219-45-67801",
            "2219-45-6780",
            "1.219.45.6780",
        ] {
            if s == "219-45-6780 5" {
                assert_eq!(ssns(s), vec!["219-45-6780"]);
                continue;
            }
            assert!(ssns(s).is_empty(), "{s} -> {:?}", ssns(s));
        }
    }
}
