//! Phone numbers: international (E.164 written with a `+`) and North American (NANP).
//!
//! * E.164: `+`, then 8–15 digits starting with an assigned ITU country calling code, grouped
//!   by single spaces, dashes or dots, with at most one parenthesised group
//!   (`+44 20 7946 0958`, `+1 (415) 555-2671`, `+49-30-1234567`, `+33.1.23.45.67.89`). With
//!   country code 1 it must also be a valid NANP number (11 digits).
//! * NANP: `(415) 555-2671`, `(415)555-2671`, `415-555-2671`, `415.555.2671`, `415 555 2671`,
//!   `415 555-2671`, optionally after a trunk `1` and the same separator (`1-415-555-2671`,
//!   `1 (415) 555-2671`). Dots are all-or-nothing. Area code and exchange start with 2–9 and are
//!   not N11 service codes (`211`, `911`).
//! * A bare run of 10 digits (or 11 starting with `1`) is a phone only with phone context in
//!   the 40 bytes before or after it (`phone`, `tel`, `call`, `mobile`, `cell`, `fax`, `sms`,
//!   `whatsapp`, `contact`, …, as whole words). Without context it is as likely an order
//!   number, a timestamp in seconds or an account id.
//!
//! Dates (`2026-03-15`), times, ISBNs (`978-3-16-148410-0`), ZIP+4 and version strings do not
//! have these shapes; a number glued to letters or continuing with `-digit`/`.digit` is
//! rejected by the shared boundary rule. An extension (`x123`) may follow a NANP number.

use super::bytes::{at, before, context_near, digit, digits_exactly, left_ok, right_ok};

const CONTEXT: &[&[u8]] = &[
    b"phone",
    b"telephone",
    b"tel",
    b"mobile",
    b"mob",
    b"cell",
    b"cellphone",
    b"call",
    b"fax",
    b"sms",
    b"text me",
    b"whatsapp",
    b"contact",
    b"ph",
];

const WINDOW: usize = 40;

/// The end of an E.164 number whose `+` is at `plus`.
pub(super) fn e164(b: &[u8], plus: usize) -> Option<usize> {
    if !left_ok(b, plus) || before(b, plus) == b'+' {
        return None;
    }
    let mut d = [0u8; 15];
    let mut n = 0usize;
    let mut p = plus + 1;
    let mut open = false;
    loop {
        let g = p;
        while at(b, p).is_ascii_digit() {
            match d.get_mut(n) {
                Some(slot) => *slot = at(b, p) - b'0',
                None => return None, // more than 15 digits
            }
            n += 1;
            p += 1;
        }
        if p == g {
            return None;
        }
        // Up to two separator bytes: one of ` -.` and/or a parenthesis.
        let mut q = p;
        let mut plain = false;
        let mut open2 = open;
        for _ in 0..2 {
            match at(b, q) {
                b' ' | b'-' | b'.' if !plain => plain = true,
                b'(' if !open2 => open2 = true,
                b')' if open2 => open2 = false,
                _ => break,
            }
            q += 1;
        }
        if q > p && at(b, q).is_ascii_digit() {
            p = q;
            open = open2;
        } else {
            break;
        }
    }
    let d = d.get(..n)?;
    if open || !(8..=15).contains(&n) || !calling_code_ok(d) {
        return None;
    }
    if d.first() == Some(&1) && !(n == 11 && nanp_ok(d.get(1..)?)) {
        return None;
    }
    right_ok(b, p).then_some(p)
}

/// A NANP number at `s`, the first digit of a run ending at `run_end`: returns its span
/// (which may start before `s`, at a `(`).
pub(super) fn nanp(b: &[u8], s: usize, run_end: usize) -> Option<(usize, usize)> {
    let run = run_end - s;
    match run {
        3 => {
            if before(b, s) == b'(' {
                let open = s - 1;
                if !left_ok(b, open) {
                    return None;
                }
                if let Some(e) = core(b, s, true) {
                    return Some((open, e));
                }
                // `(415.555.2671)`: a whole number in parentheses.
                return core(b, s, false).map(|e| (s, e));
            }
            // Not the tail of a longer chain of digit groups (`+0 415 555 2671`, `12 415 555 2671`).
            if before(b, s) == b' ' && s >= 2 && at(b, s - 2).is_ascii_digit() {
                return None;
            }
            core(b, s, false).map(|e| (s, e))
        }
        1 if at(b, s) == b'1' => {
            // Trunk prefix: `1-415-555-2671`, `1 (415) 555-2671`.
            let t = at(b, s + 1);
            if !matches!(t, b' ' | b'-' | b'.') {
                return None;
            }
            let e = if at(b, s + 2) == b'(' {
                core(b, s + 3, true)?
            } else {
                if at(b, s + 5) != t {
                    return None;
                }
                core(b, s + 2, false)?
            };
            Some((s, e))
        }
        10 | 11 => {
            let a = if run == 11 {
                if at(b, s) != b'1' {
                    return None;
                }
                s + 1
            } else {
                s
            };
            let ok = right_ok(b, run_end)
                && codes_ok(b, a, a + 3)
                && context_near(b, s, run_end, WINDOW, CONTEXT);
            ok.then_some((s, run_end))
        }
        _ => None,
    }
}

/// The end of a NANP number whose area code starts at `s` (after a `(` if `paren`).
fn core(b: &[u8], s: usize, paren: bool) -> Option<usize> {
    if !digits_exactly(b, s, 3) {
        return None;
    }
    let mut p = s + 3;
    let sep1 = if paren {
        if at(b, p) != b')' {
            return None;
        }
        p += 1;
        if matches!(at(b, p), b' ' | b'-') {
            p += 1;
        }
        b')'
    } else {
        let c = at(b, p);
        if !matches!(c, b' ' | b'-' | b'.') {
            return None;
        }
        p += 1;
        c
    };
    let exchange = p;
    if !digits_exactly(b, exchange, 3) {
        return None;
    }
    p += 3;
    let sep2 = at(b, p);
    if !matches!(sep2, b' ' | b'-' | b'.') || (sep1 == b'.') != (sep2 == b'.') {
        return None;
    }
    p += 1;
    if !digits_exactly(b, p, 4) {
        return None;
    }
    p += 4;
    if !codes_ok(b, s, exchange) {
        return None;
    }
    // An extension may follow directly: `x123`.
    let ext = matches!(at(b, p), b'x' | b'X') && at(b, p + 1).is_ascii_digit();
    if !ext && !right_ok(b, p) {
        return None;
    }
    Some(p)
}

/// NANP rules for the area code at `a` and the exchange at `x`: first digit 2–9, not N11.
fn codes_ok(b: &[u8], a: usize, x: usize) -> bool {
    let ok = |i: usize| digit(b, i) >= 2 && !(digit(b, i + 1) == 1 && digit(b, i + 2) == 1);
    ok(a) && ok(x)
}

/// The same rules over the 10 digit values of a NANP number.
fn nanp_ok(d: &[u8]) -> bool {
    let ok = |i: usize| {
        let x = |k: usize| d.get(k).copied().unwrap_or(0);
        x(i) >= 2 && !(x(i + 1) == 1 && x(i + 2) == 1)
    };
    d.len() == 10 && ok(0) && ok(3)
}

/// Whether the digits start with an assigned ITU-T E.164 country calling code.
fn calling_code_ok(d: &[u8]) -> bool {
    let x = |k: usize| u32::from(d.get(k).copied().unwrap_or(0));
    let two = x(0) * 10 + x(1);
    let three = two * 10 + x(2);
    match x(0) {
        1 | 7 => true,
        2 => {
            two == 20
                || two == 27
                || matches!(three, 211 | 212 | 213 | 216 | 218 | 220..=258 | 260..=269 | 290 | 291 | 297..=299)
        }
        3 => {
            matches!(two, 30..=34 | 36 | 39)
                || matches!(three, 350..=359 | 370..=383 | 385..=387 | 389)
        }
        4 => two != 42 || matches!(three, 420 | 421 | 423),
        5 => matches!(two, 51..=58) || matches!(three, 500..=509 | 590..=599),
        6 => matches!(two, 60..=66) || matches!(three, 670 | 672..=683 | 685..=692),
        8 => {
            matches!(two, 81 | 82 | 84 | 86)
                || matches!(
                    three,
                    800 | 808 | 850 | 852 | 853 | 855 | 856 | 870 | 878 | 880..=883 | 886 | 888
                )
        }
        9 => {
            matches!(two, 90..=95 | 98)
                || matches!(three, 960..=968 | 970..=977 | 979 | 992..=996 | 998)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::only;
    use crate::scan::Detector::Phone;

    fn phones(s: &str) -> Vec<&str> {
        only(s, Phone)
    }

    #[test]
    fn nanp_forms() {
        for s in [
            "(415) 555-2671",
            "(415)555-2671",
            "(415) 555 2671",
            "415-555-2671",
            "415.555.2671",
            "415 555 2671",
            "415 555-2671",
            "1-415-555-2671",
            "1 415 555 2671",
            "1 (415) 555-2671",
            "1.800.555.0199",
        ] {
            assert_eq!(phones(&format!("Call me at {s}.")), vec![s], "{s}");
            assert_eq!(phones(&format!("{{\"p\":\"{s}\"}}")), vec![s], "{s}");
        }
        assert_eq!(phones("415-555-2671x204"), vec!["415-555-2671"]);
        assert_eq!(phones("(415.555.2671)"), vec!["415.555.2671"]);
    }

    #[test]
    fn e164_forms() {
        for s in [
            "+14155552671",
            "+1 415 555 2671",
            "+1 (415) 555-2671",
            "+1-415-555-2671",
            "+44 20 7946 0958",
            "+442079460958",
            "+49 30 1234567",
            "+49-30-1234567",
            "+33 1 23 45 67 89",
            "+33.1.23.45.67.89",
            "+91 98765 43210",
            "+81 3-1234-5678",
            "+61 (2) 9876 5432",
            "+353 1 234 5678",
            "+971 50 123 4567",
        ] {
            assert_eq!(phones(&format!("tel {s} ok")), vec![s], "{s}");
        }
    }

    #[test]
    fn bare_digits_need_context() {
        assert_eq!(phones("phone: 4155552671"), vec!["4155552671"]);
        assert_eq!(
            phones(r#"{"phone_number":"4155552671"}"#),
            vec!["4155552671"]
        );
        assert_eq!(phones("Tel 14155552671"), vec!["14155552671"]);
        assert_eq!(phones("4155552671 is my cell"), vec!["4155552671"]);
        assert!(phones("order 4155552671").is_empty());
        assert!(phones("4155552671").is_empty());
        assert!(phones("hotel 4155552671").is_empty());
        assert!(phones("ts 1767225600").is_empty());
    }

    #[test]
    fn near_misses() {
        for s in [
            "2026-03-15",
            "2026-03-15T14:23:07Z",
            "14:23:07",
            "978-3-16-148410-0",
            "ISBN 978-0-306-40615-7",
            "94105-1234",
            "v415.555.2671",
            "1.2.415.555.2671",
            "415-555-26710",
            "415-555-2671-9",
            "ORD-415-555-2671",
            "(115) 555-2671", // area starts with 1
            "(415) 155-2671", // exchange starts with 1
            "(911) 555-2671", // N11 area
            "415-911-2671",   // N11 exchange
            "415.555-2671",   // dots all-or-nothing
            "415-55-52671",
            "$415.555.26",
            "192.168.100.200",
            "+1 115 555 2671",   // NANP rules apply to +1
            "+1 415 555 26711",  // 12 digits
            "+0 415 555 2671",   // no country code 0
            "+12345",            // too short
            "+1234567890123456", // too long
            "+05:30",
            "1e+10",
            "x+4155552671",
            "+999 123 456 789", // unassigned code
            "550e8400-e29b-41d4-a716-446655440000",
            "price 4,155,552,671",
            "2 + 2 = 4",
        ] {
            assert!(phones(s).is_empty(), "{s} -> {:?}", phones(s));
        }
    }

    #[test]
    fn calling_codes() {
        use super::calling_code_ok;
        let d = |s: &str| s.bytes().map(|c| c - b'0').collect::<Vec<u8>>();
        for ok in [
            "1", "7", "20", "27", "212", "234", "299", "31", "358", "380", "44", "420", "52",
            "599", "61", "679", "81", "852", "86", "90", "971", "998",
        ] {
            assert!(calling_code_ok(&d(&format!("{ok}00000000"))), "{ok}");
        }
        for bad in [
            "0", "210", "259", "384", "422", "671", "693", "969", "978", "990", "999",
        ] {
            assert!(!calling_code_ok(&d(&format!("{bad}00000000"))), "{bad}");
        }
    }
}
