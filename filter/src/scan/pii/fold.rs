//! Unicode folding before the PII detectors: the digits of every script, full-width forms,
//! Unicode dashes and spaces and invisible characters are read as the ASCII the detectors know,
//! so `５３６-２２-１２３４`, `536–22–1234` (en dashes) and `4111 1111 1111 1111` with no-break
//! spaces are found like their ASCII spelling.
//!
//! [`fold`] returns an ASCII-folded copy of the text and, for every byte of it, the byte of
//! the original it came from, so matches in the copy map back to spans of the original (which
//! cover the original characters, so a mask hides the full-width digits too).
//!
//! | read as | characters | recorded as |
//! |---|---|---|
//! | `0`–`9` | `０`–`９` | `fullwidth_digits` |
//! | `0`–`9` | every other decimal digit (Unicode category Nd: `٣`, `३`, `𝟑`, …) | `unicode_digits` |
//! | `-` | U+2010–2015 (hyphen, non-breaking hyphen, figure dash, en/em dash, bar), U+2212 minus, U+FE58, U+FE63, U+FF0D | `unicode_separators` |
//! | ` ` | U+00A0, U+2000–200A, U+202F, U+205F, U+3000 (no-break, fixed-width and ideographic spaces) | `unicode_separators` |
//! | `.` `(` `)` `+` `/` | their full-width forms | `unicode_separators` |
//! | ASCII | other full-width forms U+FF01–FF5E (`ＳＳＮ`, `＠`) | `fullwidth_letters` |
//! | (dropped) | U+00AD soft hyphen, U+200B–200D zero-width space/joiners, U+2060 word joiner, U+FEFF | `invisible_characters` |
//!
//! Other characters are copied as they are (and still count as separators for the boundary
//! rules).

use crate::scan::Normalized;

/// The folded text and where each of its bytes came from.
pub(super) struct Folded {
    pub text: String,
    /// `origin[i]`: the original byte offset of folded byte `i`; one more entry maps the end.
    origin: Vec<usize>,
    /// Folded byte offsets of the characters that were changed, with what was done.
    changes: Vec<(usize, Normalized)>,
}

impl Folded {
    /// The original span of folded `start..end`.
    pub fn span(&self, start: usize, end: usize) -> (usize, usize) {
        let at = |i: usize| self.origin.get(i).copied().unwrap_or_default();
        (at(start), at(end))
    }

    /// What was normalised in folded `start..end`.
    pub fn normalized(&self, start: usize, end: usize) -> Normalized {
        let from = self.changes.partition_point(|&(at, _)| at < start);
        self.changes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&(at, _)| at < end)
            .fold(Normalized::NONE, |n, &(_, k)| n.union(k))
    }
}

/// The folded text, or `None` when nothing in `text` folds (so the text is scanned as is).
pub(super) fn fold(text: &str) -> Option<Folded> {
    // ASCII text folds to itself: one look at each byte.
    let first = text.bytes().position(|b| !b.is_ascii())?;
    let rest = text.get(first..)?;
    let mut changes = Vec::new();
    let mut out = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    out.push_str(text.get(..first)?);
    origin.extend(0..first);
    for (k, c) in rest.char_indices() {
        let at = first + k;
        match fold_char(c) {
            Some((ascii, kind)) => {
                if !kind.is_empty() {
                    changes.push((out.len(), kind));
                }
                if let Some(a) = ascii {
                    out.push(a);
                    origin.push(at);
                }
            }
            None => {
                out.push(c);
                origin.extend(at..at + c.len_utf8());
            }
        }
    }
    if changes.is_empty() {
        return None;
    }
    origin.push(text.len());
    Some(Folded {
        text: out,
        origin,
        changes,
    })
}

/// What `c` folds to (`None` inside: dropped) and the kind of normalisation; `None` when it
/// is kept as it is.
fn fold_char(c: char) -> Option<(Option<char>, Normalized)> {
    let code = u32::from(c);
    let kind = match code {
        0..=0x7F => return None,
        0xFF10..=0xFF19 => Normalized::FULLWIDTH_DIGITS,
        0xFF08 | 0xFF09 | 0xFF0B | 0xFF0D | 0xFF0E | 0xFF0F => Normalized::UNICODE_SEPARATORS,
        0xFF01..=0xFF5E => Normalized::FULLWIDTH_LETTERS,
        0x2010..=0x2015 | 0x2212 | 0xFE58 | 0xFE63 => {
            return Some((Some('-'), Normalized::UNICODE_SEPARATORS))
        }
        0xA0 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => {
            return Some((Some(' '), Normalized::UNICODE_SEPARATORS))
        }
        0xAD | 0x200B..=0x200D | 0x2060 | 0xFEFF => {
            return Some((None, Normalized::INVISIBLE_CHARACTERS))
        }
        _ => {
            return decimal_digit(c).map(|d| (char::from_digit(d, 10), Normalized::UNICODE_DIGITS))
        }
    };
    Some((char::from_u32(code - 0xFEE0), kind))
}

/// The code points of the zeros of the decimal digits (Unicode category Nd, Unicode 17). Every
/// Nd character is one of ten consecutive code points from one of these, so this list is the
/// whole category: 77 numbers, where the `unicode-properties` crate's general-category table
/// (tens of KiB in the module) would serve the same 770 characters and still not give their
/// value. `nd_table_is_the_unicode_category` checks it against that crate.
const ZEROS: [u32; 77] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x10D40, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x116D0, 0x116DA, 0x11730, 0x118E0, 0x11950, 0x11BF0, 0x11C50, 0x11D50,
    0x11DA0, 0x11DE0, 0x11F50, 0x16130, 0x16A60, 0x16AC0, 0x16B50, 0x16D70, 0x1CCF0, 0x1D7CE,
    0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E5F1, 0x1E950, 0x1FBF0,
];

/// The value of a decimal digit of any script.
fn decimal_digit(c: char) -> Option<u32> {
    let code = u32::from(c);
    let k = ZEROS.partition_point(|&z| z <= code).checked_sub(1)?;
    let d = code - ZEROS.get(k)?;
    (d < 10).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

    #[test]
    fn nd_table_is_the_unicode_category() {
        for code in 0..=0x10FFFF {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let nd = c.general_category() == GeneralCategory::DecimalNumber;
            assert_eq!(decimal_digit(c).is_some(), nd, "U+{code:04X}");
        }
        for z in ZEROS {
            for d in 0..10 {
                assert_eq!(char::from_u32(z + d).and_then(decimal_digit), Some(d));
            }
        }
    }

    fn folded(s: &str) -> (String, Vec<&'static str>) {
        let f = fold(s).unwrap();
        let names = f.normalized(0, f.text.len()).names().collect();
        (f.text, names)
    }

    #[test]
    fn folds_digits_separators_and_invisibles() {
        assert_eq!(
            folded("SSN ５３６－２２－１２３４"),
            (
                "SSN 536-22-1234".into(),
                vec!["fullwidth_digits", "unicode_separators"]
            )
        );
        assert_eq!(
            folded("٥٣٦ ٢٢ ١٢٣٤"),
            ("536 22 1234".into(), vec!["unicode_digits"])
        );
        assert_eq!(
            folded("𝟒𝟏𝟏𝟏\u{a0}1111\u{2013}1111\u{3000}1111"),
            (
                "4111 1111-1111 1111".into(),
                vec!["unicode_digits", "unicode_separators"]
            )
        );
        assert_eq!(
            folded("ＳＳＮ 5\u{200b}36"),
            (
                "SSN 536".into(),
                vec!["fullwidth_letters", "invisible_characters"]
            )
        );
        assert!(fold("plain ASCII 123").is_none());
        assert!(fold("café 電話 ☎").is_none(), "nothing to fold");
    }

    #[test]
    fn spans_map_back_to_the_original_characters() {
        let s = "é ５３６-22";
        let f = fold(s).unwrap();
        assert_eq!(f.text, "é 536-22");
        let (a, b) = f.span(3, 6); // "536"
        assert_eq!(&s[a..b], "５３６");
        assert_eq!(f.normalized(3, 6), Normalized::FULLWIDTH_DIGITS);
        assert_eq!(f.normalized(6, 9), Normalized::NONE);
        let (a, b) = f.span(0, f.text.len());
        assert_eq!((a, b), (0, s.len()));
    }
}
