//! Payment card numbers (PANs).
//!
//! Shapes: 13–19 digits in one run, or grouped with single spaces or single dashes (one kind
//! throughout) where the first group has 4 digits, the others 3–6 and the last may be shorter
//! (`4111 1111 1111 1111`, Amex `3782 822463 10005`, Diners `3056 930902 5904`, 13-digit
//! `4222 2222 2222 2`, 19-digit `6212 3456 7890 1234 567`).
//! Dots group a card too (`4111.1111.1111.1111`) when card context stands within 40 bytes
//! before or after it (`card`, `cc`, `credit`, `debit`, `visa`, `mastercard`, `amex`, `pan`,
//! `payment`, whole words): without it, dotted digits are as likely a version.
//! Of a chain of space-separated groups the longest valid prefix counts (a card followed by
//! ` 2027` or a CVV is still found); a dash chain must end there (`-5` after it is an id).
//!
//! Validity: Luhn, and a known issuer prefix with one of its lengths (Visa 4: 13/16/19;
//! Mastercard 51–55, 2221–2720: 16; Amex 34/37: 15; Discover 6011, 644–649, 65,
//! 622126–622925: 16–19; JCB 3528–3589: 16–19; Diners 300–305, 36, 38–39: 14–19;
//! UnionPay 62: 16–19). A Luhn-valid number with another prefix (an order number, an IMEI) or a
//! run longer than 19 digits is not a card.

use super::bytes::{at, context_near, right_ok};

/// Context words that make dot-grouped digits a card.
const CONTEXT: &[&[u8]] = &[
    b"card",
    b"cc",
    b"ccn",
    b"credit",
    b"debit",
    b"visa",
    b"mastercard",
    b"amex",
    b"pan",
    b"payment",
];

const WINDOW: usize = 40;

/// The end of a card number whose first digit is at `s` (the run of digits there ends at
/// `run_end`; the left boundary was checked by the caller).
pub(super) fn detect(b: &[u8], s: usize, run_end: usize) -> Option<usize> {
    let run = run_end - s;
    if (13..=19).contains(&run) {
        return (right_ok(b, run_end) && valid(b, s, run_end)).then_some(run_end);
    }
    if run != 4 {
        return None;
    }
    let sep = at(b, run_end);
    if !matches!(sep, b' ' | b'-' | b'.') {
        return None;
    }
    let mut best = None;
    let mut total = 4;
    let mut end = run_end;
    while at(b, end) == sep && at(b, end + 1).is_ascii_digit() {
        let g = super::bytes::digits_end(b, end + 1) - (end + 1);
        if g > 6 || total + g > 19 {
            break;
        }
        total += g;
        end += 1 + g;
        if total >= 13 && valid(b, s, end) {
            best = Some(end);
        }
        if g < 3 {
            break; // a short group only ends a number (`4222 2222 2222 2`)
        }
    }
    let end = best?;
    let n = at(b, end);
    let ok = if n == b'-' {
        !at(b, end + 1).is_ascii_alphanumeric()
    } else {
        right_ok(b, end)
    };
    let context = sep != b'.' || context_near(b, s, end, WINDOW, CONTEXT);
    (ok && context).then_some(end)
}

/// Whether the digits in `b[s..e]` (separators skipped) are a valid card number.
fn valid(b: &[u8], s: usize, e: usize) -> bool {
    let mut d = [0u8; 19];
    let mut n = 0;
    for i in s..e {
        let c = at(b, i);
        if c.is_ascii_digit() {
            match d.get_mut(n) {
                Some(slot) => *slot = c - b'0',
                None => return false,
            }
            n += 1;
        }
    }
    let Some(d) = d.get(..n) else { return false };
    issuer_ok(d) && luhn(d)
}

/// Luhn checksum over digit values.
pub(super) fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &x) in d.iter().rev().enumerate() {
        let x = u32::from(x);
        sum += if k % 2 == 1 {
            let y = x * 2;
            if y > 9 {
                y - 9
            } else {
                y
            }
        } else {
            x
        };
    }
    matches!(sum % 10, 0)
}

/// Whether the number's prefix belongs to a known issuer that uses its length.
fn issuer_ok(d: &[u8]) -> bool {
    let prefix = |k: usize| {
        d.iter()
            .take(k)
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x))
    };
    let len = d.len();
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    let var = (16..=19).contains(&len);
    if p1 == 4 {
        return matches!(len, 13 | 16 | 19); // Visa
    }
    if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
        return len == 16; // Mastercard
    }
    if p2 == 34 || p2 == 37 {
        return len == 15; // American Express
    }
    if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6) {
        return var; // Discover
    }
    if (3528..=3589).contains(&p4) {
        return var; // JCB
    }
    if (300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39 {
        return (14..=19).contains(&len); // Diners Club
    }
    if p2 == 62 {
        return var; // UnionPay
    }
    false
}

#[cfg(test)]
mod tests {
    use super::super::tests::only;
    use crate::scan::Detector::PaymentCard;

    fn cards(s: &str) -> Vec<&str> {
        only(s, PaymentCard)
    }

    #[test]
    fn well_known_test_pans() {
        for pan in [
            "4111111111111111",    // Visa
            "4012888888881881",    // Visa
            "4222222222222",       // Visa, 13 digits
            "4000056655665556",    // Visa debit
            "5555555555554444",    // Mastercard
            "5105105105105100",    // Mastercard
            "2223003122003222",    // Mastercard 2-series
            "378282246310005",     // Amex
            "371449635398431",     // Amex
            "6011111111111117",    // Discover
            "6011000990139424",    // Discover
            "6445644564456445",    // Discover 644
            "3530111333300000",    // JCB
            "3566002020360505",    // JCB
            "30569309025904",      // Diners, 14 digits
            "38520000023237",      // Diners, 14 digits
            "3056930009020004",    // Diners, 16 digits
            "6200000000000005",    // UnionPay
            "6212345678901265",    // UnionPay
            "6221260000000000001", // 19 digits, 622126 (Discover/UnionPay range)
        ] {
            assert_eq!(cards(&format!("card: {pan}.")), vec![pan], "{pan}");
        }
    }

    #[test]
    fn grouped_forms() {
        for s in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "3782 822463 10005",
            "3782-822463-10005",
            "3056 930902 5904",
            "5555 5555 5555 4444",
            "6221 2600 0000 0000 001",
            "4222 2222 2222 2",
            "6221-2600-0000-0000-001",
        ] {
            assert_eq!(cards(&format!("pay with {s} today")), vec![s], "{s}");
        }
        // Dots with card context, before or after.
        assert_eq!(
            cards("cc: 4111.1111.1111.1111"),
            vec!["4111.1111.1111.1111"]
        );
        assert_eq!(
            cards("4111.1111.1111.1111 is my Visa"),
            vec!["4111.1111.1111.1111"]
        );
        // A trailing year or CVV after spaces does not hide the card.
        assert_eq!(
            cards("4111 1111 1111 1111 12/27"),
            vec!["4111 1111 1111 1111"]
        );
        assert_eq!(
            cards("4111 1111 1111 1111 737"),
            vec!["4111 1111 1111 1111"]
        );
        // Ambiguous: a valid 19-digit Visa, or a 16-digit one and a CVV. The longer is reported.
        assert_eq!(
            cards("4111 1111 1111 1111 037"),
            vec!["4111 1111 1111 1111 037"]
        );
        // JSON-escaped context.
        assert_eq!(
            cards(r#"{"pan":"4111111111111111","exp":"12/27"}"#),
            vec!["4111111111111111"]
        );
    }

    #[test]
    fn near_misses() {
        for s in [
            "4111111111111112",                     // Luhn fails
            "1234567812345670",                     // Luhn valid, no issuer starts with 1
            "9999999999999995",                     // Luhn valid, unknown prefix
            "7000000000000005",                     // Luhn valid, unknown prefix
            "0000000000000000",                     // zeros
            "41111111111111113",                    // 17 digits, Luhn valid: Visa has 13/16/19
            "378282246310005 ",                     // (valid Amex, checked below for the boundary)
            "ORD-4111111111111111",                 // glued to an id
            "14111111111111111119",                 // inside a longer run
            "94111111111111111",                    // inside a longer run
            "4111111111111111.50",                  // a decimal
            "4111 1111 1111 111",                   // 15 digits, Visa
            "4111-1111 1111-1111",                  // mixed separators
            "4111  1111  1111  1111",               // double spaces
            "4111.1111.1111.1111",                  // dots without card context
            "v4111.1111.1111.1111 build",           // glued to a letter
            "411 111 111 111 1111",                 // first group of 3
            "4111 1111 11 1111 1111",               // a short group in the middle
            "4111-1111-1111-1111-5",                // dash chain goes on: an id
            "a4111111111111111",                    // glued to a letter
            "4111111111111111b",                    // glued to a letter
            "550e8400-e29b-41d4-a716-446655440000", // UUID
            "978-3-16-148410-0",                    // ISBN
            "2026-03-15T14:23:07",                  // timestamp
            "1.2.4111111111111111",                 // version-like
            "5500000000000000",                     // Mastercard prefix, Luhn fails
        ] {
            if s == "378282246310005 " {
                assert_eq!(cards(s), vec!["378282246310005"]);
                continue;
            }
            assert!(cards(s).is_empty(), "{s} -> {:?}", cards(s));
        }
    }

    #[test]
    fn issuer_lengths() {
        use super::{issuer_ok, luhn};
        let digits = |s: &str| s.bytes().map(|c| c - b'0').collect::<Vec<u8>>();
        assert!(issuer_ok(&digits("4111111111111111")));
        assert!(!issuer_ok(&digits("411111111111111"))); // Visa 15
        assert!(!issuer_ok(&digits("37828224631000"))); // Amex 14
        assert!(!issuer_ok(&digits("55555555555544440"))); // Mastercard 17
        assert!(issuer_ok(&digits("2720990000000007")));
        assert!(!issuer_ok(&digits("2721000000000000")));
        assert!(issuer_ok(&digits("3589000000000000")));
        assert!(!issuer_ok(&digits("3590000000000000")));
        assert!(luhn(&digits("79927398713")));
        assert!(!luhn(&digits("79927398710")));
    }
}
