//! Byte helpers shared by the detectors. They never panic: out of range reads as 0.

/// The byte at `i`, or 0 past the end.
#[inline]
pub(super) fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 at the start.
#[inline]
pub(super) fn before(b: &[u8], i: usize) -> u8 {
    match i.checked_sub(1) {
        Some(p) => at(b, p),
        None => 0,
    }
}

/// The end of the run of ASCII digits starting at `i`.
#[inline]
pub(super) fn digits_end(b: &[u8], mut i: usize) -> usize {
    while at(b, i).is_ascii_digit() {
        i += 1;
    }
    i
}

/// Whether `i..i + n` holds exactly `n` digits (with no digit right after).
#[inline]
pub(super) fn digits_exactly(b: &[u8], i: usize, n: usize) -> bool {
    digits_end(b, i) == i + n
}

/// The value of the digit at `i` (0 for a non-digit).
#[inline]
pub(super) fn digit(b: &[u8], i: usize) -> u32 {
    u32::from(at(b, i).wrapping_sub(b'0')).min(9)
}

#[inline]
pub(super) fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// A value may start at `s`: not glued to a word, nor to one by `-`, `.` or `/`.
pub(super) fn left_ok(b: &[u8], s: usize) -> bool {
    let p = before(b, s);
    if is_word(p) {
        return false;
    }
    !(matches!(p, b'-' | b'.' | b'/') && s >= 2 && is_word(at(b, s - 2)))
}

/// A value may end at `e`: not glued to a word, nor to one by `-`, `.` or `/`.
pub(super) fn right_ok(b: &[u8], e: usize) -> bool {
    let n = at(b, e);
    if is_word(n) {
        return false;
    }
    !(matches!(n, b'-' | b'.' | b'/') && is_word(at(b, e + 1)))
}

/// Whether one of `words` stands within `window` bytes before `start` or after `end` (the
/// value `b[start..end]`): "SSN 536221234" and "gave 536221234 as their SSN". See
/// [`context_before`] for how a word matches.
pub(super) fn context_near(
    b: &[u8],
    start: usize,
    end: usize,
    window: usize,
    words: &[&[u8]],
) -> bool {
    context_before(b, start, window, words)
        || context_in(b, end, (end + window).min(b.len()), b.len(), words)
}

/// Whether one of `words` starts within `window` bytes before `start`, as a word of its own
/// (not inside a longer word; a trailing `s` is allowed), ASCII case-insensitively. A space
/// in a word matches one or two of ` _-.:` (`social_security`, `soc. sec`) or a camelCase hump
/// (`socialSecurityNumber`, `customerSsn`).
pub(super) fn context_before(b: &[u8], start: usize, window: usize, words: &[&[u8]]) -> bool {
    context_in(b, start.saturating_sub(window), start, start, words)
}

/// Whether one of `words` starts in `from..to` and ends by `limit`.
fn context_in(b: &[u8], from: usize, to: usize, limit: usize, words: &[&[u8]]) -> bool {
    let mut p = from;
    while p < to {
        let c = at(b, p);
        if c.is_ascii_alphabetic() && word_start(before(b, p), c) {
            let c = c.to_ascii_lowercase();
            for w in words {
                if w.first() == Some(&c) && word_at(b, p, w, limit) {
                    return true;
                }
            }
        }
        p += 1;
    }
    false
}

/// A word starts at a letter `c` after `prev`: after a non-letter, or at a camelCase hump.
fn word_start(prev: u8, c: u8) -> bool {
    !prev.is_ascii_alphabetic() || (prev.is_ascii_lowercase() && c.is_ascii_uppercase())
}

fn word_at(b: &[u8], p: usize, w: &[u8], limit: usize) -> bool {
    let is_sep = |c: u8| matches!(c, b' ' | b'_' | b'-' | b'.' | b':');
    let mut q = p;
    for &wc in w {
        if wc == b' ' {
            if is_sep(at(b, q)) {
                q += 1;
                if is_sep(at(b, q)) {
                    q += 1;
                }
            } else if !word_start(before(b, q), at(b, q)) {
                return false;
            }
        } else if at(b, q).to_ascii_lowercase() != wc {
            return false;
        } else {
            q += 1;
        }
    }
    if q > limit {
        return false;
    }
    if at(b, q) == b's' || at(b, q) == b'S' {
        q += 1;
    }
    !at(b, q).is_ascii_alphabetic() || word_start(before(b, q), at(b, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_words_are_whole_words() {
        let b = b"my SSN: 123";
        assert!(context_before(b, 8, 40, &[b"ssn"]));
        let b = b"classname 123";
        assert!(!context_before(b, 10, 40, &[b"ssn"]));
        let b = b"social_security_number=1";
        assert!(context_before(b, 23, 40, &[b"social security"]));
        let b = b"soc. sec. #1";
        assert!(context_before(b, 11, 40, &[b"soc sec"]));
        let b = b"the SSNs: 1";
        assert!(context_before(b, 10, 40, &[b"ssn"]));
        let b = b"hotel 1";
        assert!(!context_before(b, 6, 40, &[b"tel"]));
        let b = b"socialSecurityNumber 1";
        assert!(context_before(b, 21, 40, &[b"social security"]));
        let b = b"customerSsn 1";
        assert!(context_before(b, 12, 40, &[b"ssn"]));
        let b = b"SSNumber 1";
        assert!(!context_before(b, 9, 40, &[b"ssn"]));
    }

    #[test]
    fn context_words_after_the_value() {
        let b = b"gave 536221234 as their SSN";
        assert!(context_near(b, 5, 14, 40, &[b"ssn"]));
        assert!(!context_before(b, 5, 40, &[b"ssn"]));
        let b = b"536221234 (social security number)";
        assert!(context_near(b, 0, 9, 40, &[b"social security"]));
        let b = b"536221234 classname";
        assert!(!context_near(b, 0, 9, 40, &[b"ssn"]));
        let b = b"536221234 and a long sentence that goes on before ssn";
        assert!(!context_near(b, 0, 9, 40, &[b"ssn"]), "too far after");
    }
}
