//! Recognisers for values that are secrets or personal data, shared by
//! everything that masks before data leaves a process: label values in the
//! edge's inventory and log examples in template mining.
//!
//! They recognise shapes only (no dictionaries, no network), and lean
//! towards letting ids through: detectors downstream need to see that a
//! value is an id, and a masked id is lost evidence.

/// The Luhn checksum over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d.wrapping_sub(b'0'));
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A payment card number: 13–19 digits passing the Luhn check, printed as
/// one run or in groups of at most 6 separated by spaces or dashes; its
/// digit count. A run must also carry a known issuer prefix and length:
/// one numeric id in ten passes Luhn, and ids must stay visible.
pub fn card_digits(value: &str) -> Option<usize> {
    if !value
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b' ' || b == b'-')
    {
        return None;
    }
    let digits: Vec<u8> = value.bytes().filter(u8::is_ascii_digit).collect();
    if !(13..=19).contains(&digits.len()) || !luhn(&digits) {
        return None;
    }
    if digits.len() != value.len() {
        let grouped = value
            .split([' ', '-'])
            .all(|g| !g.is_empty() && g.len() <= 6);
        return grouped.then_some(digits.len());
    }
    let prefix = |p: &str| value.starts_with(p);
    let two: u32 = value.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let four: u32 = value.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    let known = match digits.len() {
        15 => prefix("34") || prefix("37"),
        16 => {
            prefix("4")
                || (51..=55).contains(&two)
                || (2221..=2720).contains(&four)
                || prefix("6011")
                || prefix("65")
        }
        13 | 19 => prefix("4"),
        _ => false,
    };
    known.then_some(digits.len())
}

/// Whether a long token reads like a key: all hex digits, or base64-ish
/// characters mixing upper case, lower case and digits with few `-`/`_`.
/// Names and paths rarely mix all three without separators; keys almost
/// always do. Callers decide the minimum length and the character set.
pub fn is_key_like(bytes: &[u8]) -> bool {
    if bytes.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    let upper = bytes.iter().any(u8::is_ascii_uppercase);
    let lower = bytes.iter().any(u8::is_ascii_lowercase);
    let digit = bytes.iter().any(u8::is_ascii_digit);
    let separators = bytes.iter().filter(|b| matches!(b, b'-' | b'_')).count();
    upper && lower && digit && separators * 8 <= bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_need_luhn_and_a_printed_or_issuer_shape() {
        assert_eq!(card_digits("4111111111111111"), Some(16));
        assert_eq!(card_digits("4111 1111 1111 1111"), Some(16));
        assert_eq!(card_digits("4111-1111-1111-1112"), None, "Luhn");
        assert_eq!(card_digits("9111111111111111"), None, "no issuer");
        assert_eq!(card_digits("4111x1111111111111"), None);
        assert_eq!(card_digits("41111111111111111111111"), None, "too long");
    }

    #[test]
    fn keys_mix_cases_and_digits_or_are_hex() {
        assert!(is_key_like(b"0123456789abcdef0123456789abcdef"));
        assert!(is_key_like(b"sk_live_51HxYzAbCdEfGh1234567890"));
        assert!(!is_key_like(b"very_long_snake_case_identifier_name"));
        assert!(!is_key_like(b"AllLettersNoDigitsAtAllInThisOneHere"));
    }
}
