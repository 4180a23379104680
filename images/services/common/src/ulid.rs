//! ULIDs (https://github.com/ulid/spec) for session ids: 48 bits of Unix time
//! in milliseconds and 80 random bits, as 26 Crockford base32 characters.
//! Sortable by creation time, unguessable (80 bits from the host's CSPRNG via
//! `wasi:random`), and fixed-size, which lets us reject a malformed
//! `Session-Id` header before touching the database.

use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

pub const LEN: usize = 26;

/// A new ULID for the current time.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut random = [0u8; 10];
    getrandom::fill(&mut random)?;
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    Ok(encode(millis, random))
}

/// Encodes a 48-bit millisecond timestamp and 80 random bits.
pub fn encode(millis: u64, random: [u8; 10]) -> String {
    let mut value: u128 = u128::from(millis & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    // 26 characters of 5 bits = 130 bits; the top character holds 3 bits.
    (0..LEN).rev().map(|i| ALPHABET[((value >> (5 * i)) & 0x1F) as usize] as char).collect()
}

/// True for a canonical (upper-case) ULID string. Lower case is refused on
/// purpose: ids are compared as stored, so only one spelling is valid.
pub fn is_valid(s: &str) -> bool {
    s.len() == LEN && s.as_bytes()[0] <= b'7' && s.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_spec_example_timestamp() {
        // The spec's example ULID 01ARZ3NDEKTSV4RRFFQ69G5FAV starts with the
        // timestamp 1469922850259.
        let s = encode(1_469_922_850_259, [0; 10]);
        assert_eq!(&s[..10], "01ARZ3NDEK");
        assert_eq!(&s[10..], "0000000000000000");
    }

    #[test]
    fn encodes_random_bits_last() {
        let s = encode(0, [0xFF; 10]);
        assert_eq!(s, "0000000000ZZZZZZZZZZZZZZZZ");
        let s = encode(0xFFFF_FFFF_FFFF, [0; 10]);
        assert_eq!(s, "7ZZZZZZZZZ0000000000000000");
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert!(is_valid(&a), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn validation() {
        assert!(is_valid("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert!(!is_valid("01arz3ndektsv4rrffq69g5fav"));
        assert!(!is_valid("01ARZ3NDEKTSV4RRFFQ69G5FA"));
        assert!(!is_valid("01ARZ3NDEKTSV4RRFFQ69G5FAVX"));
        assert!(!is_valid("81ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert!(!is_valid("01ARZ3NDEKTSV4RRFFQ69G5FAU")); // U is not Crockford
        assert!(!is_valid("01ARZ3NDEKTSV4RRFFQ69G5FA\u{e9}"));
        assert!(!is_valid(""));
    }
}
