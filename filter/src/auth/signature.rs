//! JWS signature verification for RS256 (RSASSA-PKCS1-v1_5 with SHA-256) and ES256 (ECDSA
//! P-256 with SHA-256), over keys prepared once when the JWKS is loaded.
//!
//! RSA uses crypto-bigint's Montgomery arithmetic: the Montgomery parameters of the modulus are
//! computed once per key, and a verification is `s^e mod n` by square-and-multiply over the
//! public exponent (17 squarings and 1 multiplication for e = 65537), with 32-bit limbs on
//! wasm32 so that every product is a native 64-bit multiplication in the Wasm VM. The result is
//! compared with the one valid encoding of the message (RFC 8017 section 8.2.2, no ASN.1
//! parsing). ECDSA is the p256 crate's verifier.

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, Odd};
use p256::ecdsa::signature::Verifier as _;
use sha2::{Digest as _, Sha256};

/// DER of the SHA-256 `DigestInfo` prefix (RFC 8017 section 9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// An RSA public key ready for verification.
pub struct RsaKey {
    params: BoxedMontyParams,
    /// The public exponent's bits, most significant first (variable time is fine: it is public).
    exponent_bits: Vec<bool>,
    /// The modulus length in bytes: a signature must have exactly this length.
    size: usize,
    modulus_bits: u32,
}

impl RsaKey {
    /// A key from its big-endian modulus and exponent. Only the arithmetic is checked here (odd
    /// modulus, odd exponent with 1 < e < n); which keys a JWKS may carry is `jwks`'s policy.
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, String> {
        let n = BoxedUint::from_be_slice_vartime(trim_leading_zeros(n));
        let e = BoxedUint::from_be_slice_vartime(trim_leading_zeros(e));
        let modulus_bits = n.bit_width();
        // A public exponent shorter than the modulus is below it.
        if e.bit_width() < 2 || e.bit_width() >= modulus_bits || !bool::from(e.bit(0)) {
            return Err("invalid RSA public exponent".into());
        }
        let n = Option::<Odd<BoxedUint>>::from(Odd::new(n)).ok_or("invalid RSA modulus: even")?;
        Ok(RsaKey {
            params: BoxedMontyParams::new_vartime(n),
            exponent_bits: bits_msb_first(&e),
            size: usize::try_from(modulus_bits.div_ceil(8)).map_err(|e| e.to_string())?,
            modulus_bits,
        })
    }

    pub fn modulus_bits(&self) -> u32 {
        self.modulus_bits
    }

    /// True when `exponent` is the public exponent.
    pub fn has_exponent(&self, exponent: u64) -> bool {
        self.exponent_bits == bits_msb_first(&BoxedUint::from(exponent))
    }

    /// RSASSA-PKCS1-v1_5 verification with SHA-256 (RFC 8017 section 8.2.2).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        // A modulus too short for SHA-256's `DigestInfo` plus 11 bytes of padding verifies nothing.
        if signature.len() != self.size || self.size < SHA256_DIGEST_INFO.len() + 32 + 11 {
            return false;
        }
        let precision = self.params.bits_precision();
        let Ok(s) = BoxedUint::from_be_slice(signature, precision) else {
            return false;
        };
        if s.cmp_vartime(self.params.modulus().as_ref()).is_ge() {
            return false;
        }
        let base = BoxedMontyForm::new(s, &self.params);
        let mut m = base.clone();
        for &bit in self.exponent_bits.iter().skip(1) {
            m = m.square();
            if bit {
                m = m.mul(&base);
            }
        }
        let m = m.retrieve().to_be_bytes();
        // `m` has the limb-aligned width; the encoded message is its last `size` bytes.
        let Some((high, em)) = m.len().checked_sub(self.size).map(|cut| m.split_at(cut)) else {
            return false;
        };
        high.iter().all(|&b| b == 0) && em == expected_encoding(message, self.size)
    }
}

fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn bits_msb_first(x: &BoxedUint) -> Vec<bool> {
    (0..x.bit_width())
        .rev()
        .map(|i| bool::from(x.bit(i)))
        .collect()
}

/// `EM = 0x00 || 0x01 || 0xff.. || 0x00 || DigestInfo(SHA-256(message))`, `size` bytes long.
fn expected_encoding(message: &[u8], size: usize) -> Vec<u8> {
    let t_len = SHA256_DIGEST_INFO.len() + 32;
    let mut em = vec![0xff; size];
    em[0] = 0x00;
    em[1] = 0x01;
    let t = size - t_len;
    em[t - 1] = 0x00;
    em[t..t + SHA256_DIGEST_INFO.len()].copy_from_slice(&SHA256_DIGEST_INFO);
    em[t + SHA256_DIGEST_INFO.len()..].copy_from_slice(&Sha256::digest(message));
    em
}

/// A P-256 public key.
pub struct EcKey(p256::ecdsa::VerifyingKey);

impl EcKey {
    /// A key from its 32-byte affine coordinates; the point must be on the curve.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Result<Self, String> {
        if x.len() != 32 || y.len() != 32 {
            return Err("P-256 coordinates must be 32 bytes".into());
        }
        let point = [&[0x04][..], x, y].concat();
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map(EcKey)
            .map_err(|_| "invalid P-256 key: not a point on the curve".into())
    }

    /// ECDSA verification of a JWS signature: `r || s`, 32 bytes each (RFC 7518 section 3.4).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|sig| self.0.verify(message, &sig).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_rsa_keys_are_refused() {
        let odd_modulus = [0xffu8; 256];
        let mut even_modulus = odd_modulus;
        even_modulus[255] = 0xfe;
        assert!(RsaKey::from_components(&odd_modulus, &[1, 0, 1]).is_ok());
        assert!(RsaKey::from_components(&even_modulus, &[1, 0, 1]).is_err());
        for e in [&[][..], &[1], &[0, 1], &[1, 0, 0]] {
            assert!(
                RsaKey::from_components(&odd_modulus, e).is_err(),
                "e = {e:?}"
            );
        }
        assert!(RsaKey::from_components(&[], &[3]).is_err());
        assert!(
            RsaKey::from_components(&[0x0f], &[1, 0, 1]).is_err(),
            "e above n"
        );
    }

    #[test]
    fn a_modulus_too_short_for_the_encoding_verifies_nothing() {
        let key = RsaKey::from_components(&[0xff, 0xff, 0xff, 0xfd], &[3]).unwrap();
        assert!(!key.verify(b"message", &[0, 0, 0, 2]));
        assert!(!key.verify(b"message", &[]));
    }

    #[test]
    fn signatures_of_the_wrong_length_or_not_below_the_modulus_are_refused() {
        let key = RsaKey::from_components(&[0xffu8; 256], &[1, 0, 1]).unwrap();
        assert!(!key.verify(b"m", &[0x01; 255]));
        assert!(!key.verify(b"m", &[0x01; 257]));
        assert!(!key.verify(b"m", &[0xff; 256]), "s = n");
    }
}
