//! IBANs (ISO 13616).
//!
//! Shape: two capital letters (a country in the IBAN registry), two check digits, then the
//! BBAN of capital letters and digits, either in one run or in groups of four separated by
//! single spaces (the last group may be shorter): `DE89370400440532013000`,
//! `GB82 WEST 1234 5698 7654 32`. The total length must be the registry's length for that
//! country and the whole must pass the mod-97 check (remainder 1). Lower-case IBANs and other
//! groupings are not recognised.

use super::bytes::{at, before, is_word, right_ok};

/// The end of an IBAN whose country code starts at `s`.
pub(super) fn detect(b: &[u8], s: usize) -> Option<usize> {
    let (c0, c1) = (at(b, s), at(b, s + 1));
    if !c0.is_ascii_uppercase() || !c1.is_ascii_uppercase() || is_word(before(b, s)) {
        return None;
    }
    let len = usize::from(length(c0, c1)?);
    let (k0, k1) = (at(b, s + 2), at(b, s + 3));
    if !k0.is_ascii_digit() || !k1.is_ascii_digit() {
        return None;
    }
    let grouped = at(b, s + 4) == b' ';
    let mut p = s + 4;
    let mut count = 4;
    let mut r = 0u32;
    while count < len {
        if grouped && count % 4 == 0 {
            if at(b, p) != b' ' {
                return None;
            }
            p += 1;
        }
        r = add(r, at(b, p))?;
        p += 1;
        count += 1;
    }
    for c in [c0, c1, k0, k1] {
        r = add(r, c)?;
    }
    (r == 1 && right_ok(b, p)).then_some(p)
}

/// The mod-97 remainder after appending character `c` (digits as themselves, letters as 10–35).
fn add(r: u32, c: u8) -> Option<u32> {
    if c.is_ascii_digit() {
        Some((r * 10 + u32::from(c - b'0')) % 97)
    } else if c.is_ascii_uppercase() {
        Some((r * 100 + u32::from(c - b'A') + 10) % 97)
    } else {
        None
    }
}

/// The IBAN length of a country in the ISO 13616 registry (SWIFT, 2024 edition).
fn length(c0: u8, c1: u8) -> Option<u8> {
    Some(match &[c0, c1] {
        b"AD" => 24, // Andorra
        b"AE" => 23, // United Arab Emirates
        b"AL" => 28, // Albania
        b"AT" => 20, // Austria
        b"AZ" => 28, // Azerbaijan
        b"BA" => 20, // Bosnia and Herzegovina
        b"BE" => 16, // Belgium
        b"BG" => 22, // Bulgaria
        b"BH" => 22, // Bahrain
        b"BI" => 27, // Burundi
        b"BR" => 29, // Brazil
        b"BY" => 28, // Belarus
        b"CH" => 21, // Switzerland
        b"CR" => 22, // Costa Rica
        b"CY" => 28, // Cyprus
        b"CZ" => 24, // Czechia
        b"DE" => 22, // Germany
        b"DJ" => 27, // Djibouti
        b"DK" => 18, // Denmark
        b"DO" => 28, // Dominican Republic
        b"EE" => 20, // Estonia
        b"EG" => 29, // Egypt
        b"ES" => 24, // Spain
        b"FI" => 18, // Finland
        b"FK" => 18, // Falkland Islands
        b"FO" => 18, // Faroe Islands
        b"FR" => 27, // France (and its overseas territories)
        b"GB" => 22, // United Kingdom
        b"GE" => 22, // Georgia
        b"GI" => 23, // Gibraltar
        b"GL" => 18, // Greenland
        b"GR" => 27, // Greece
        b"GT" => 28, // Guatemala
        b"HN" => 28, // Honduras
        b"HR" => 21, // Croatia
        b"HU" => 28, // Hungary
        b"IE" => 22, // Ireland
        b"IL" => 23, // Israel
        b"IQ" => 23, // Iraq
        b"IS" => 26, // Iceland
        b"IT" => 27, // Italy
        b"JO" => 30, // Jordan
        b"KW" => 30, // Kuwait
        b"KZ" => 20, // Kazakhstan
        b"LB" => 28, // Lebanon
        b"LC" => 32, // Saint Lucia
        b"LI" => 21, // Liechtenstein
        b"LT" => 20, // Lithuania
        b"LU" => 20, // Luxembourg
        b"LV" => 21, // Latvia
        b"LY" => 25, // Libya
        b"MC" => 27, // Monaco
        b"MD" => 24, // Moldova
        b"ME" => 22, // Montenegro
        b"MK" => 19, // North Macedonia
        b"MN" => 20, // Mongolia
        b"MR" => 27, // Mauritania
        b"MT" => 31, // Malta
        b"MU" => 30, // Mauritius
        b"NI" => 28, // Nicaragua
        b"NL" => 18, // Netherlands
        b"NO" => 15, // Norway
        b"OM" => 23, // Oman
        b"PK" => 24, // Pakistan
        b"PL" => 28, // Poland
        b"PS" => 29, // Palestine
        b"PT" => 25, // Portugal
        b"QA" => 29, // Qatar
        b"RO" => 24, // Romania
        b"RS" => 22, // Serbia
        b"RU" => 33, // Russia
        b"SA" => 24, // Saudi Arabia
        b"SC" => 31, // Seychelles
        b"SD" => 18, // Sudan
        b"SE" => 24, // Sweden
        b"SI" => 19, // Slovenia
        b"SK" => 24, // Slovakia
        b"SM" => 27, // San Marino
        b"SO" => 23, // Somalia
        b"ST" => 25, // Sao Tome and Principe
        b"SV" => 28, // El Salvador
        b"TL" => 23, // Timor-Leste
        b"TN" => 24, // Tunisia
        b"TR" => 26, // Turkey
        b"UA" => 29, // Ukraine
        b"VA" => 22, // Vatican City
        b"VG" => 24, // British Virgin Islands
        b"XK" => 20, // Kosovo
        b"YE" => 30, // Yemen
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::only;
    use crate::scan::Detector::Iban;

    fn ibans(s: &str) -> Vec<&str> {
        only(s, Iban)
    }

    #[test]
    fn registry_examples() {
        for s in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB82WEST12345698765432",
            "GB82 WEST 1234 5698 7654 32",
            "FR1420041010050500013M02606",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "BE68539007547034",
            "NO9386011117947",
            "CH9300762011623852957",
            "ES9121000418450200051332",
            "IT60X0542811101000000123456",
            "PL61109010140000071219812874",
            "MT84MALT011000012345MTLCAST001S",
            "LC55HEMM000100010012001200023015",
            "RU0204452560040702810412345678901",
            "SA0380000000608010167519",
            "BR1800360305000010009795493C1",
        ] {
            assert_eq!(ibans(&format!("IBAN: {s}.")), vec![s], "{s}");
        }
        assert_eq!(
            ibans(r#"{"iban":"DE89370400440532013000"}"#),
            vec!["DE89370400440532013000"]
        );
    }

    #[test]
    fn near_misses() {
        for s in [
            "DE89370400440532013001",      // checksum
            "DE88370400440532013000",      // check digits
            "DE8937040044053201300",       // one short
            "DE893704004405320130000",     // one long
            "XX89370400440532013000",      // unknown country
            "de89370400440532013000",      // lower case
            "DE89 3704 0044 0532 013000",  // broken grouping
            "DE89-3704-0044-0532-0130-00", // dashes
            "ADE89370400440532013000",     // glued to a letter
            "DE89370400440532013000X",     // glued to a letter
            "US12345678901234567890",      // no US IBANs
            "ABC123",
        ] {
            assert!(ibans(s).is_empty(), "{s} -> {:?}", ibans(s));
        }
    }
}
