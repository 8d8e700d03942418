//! Word-at-a-time tests (SWAR) for the scanner: eight bytes of the text in one `u64`, the first
//! byte lowest (`u64::from_le_bytes`), tested together with integer arithmetic (the crate has
//! no `unsafe`, so no SIMD intrinsics).

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of the result is set exactly where `word` has a byte that is `"`, `\\` or
/// a control character (every byte judged, not only the lowest: the scanner reuses the mask for
/// the next string when it starts in the same word).
///
/// No borrow or carry crosses a byte. `"` or a control character: `byte ^ 0x02` is below
/// `0x21` (the controls map onto themselves, `"` onto the space); with bit 7 forced on, the
/// subtraction of `0x21` clears bit 7 exactly then, and bit 7 of the byte itself must be clear.
/// `\\`: `v = byte ^ 0x5c` is zero exactly when `(v & 0x7f) + 0x7f` and `v` both lack bit 7.
#[inline]
pub(super) fn specials_exact(word: u64) -> u64 {
    const LOW7: u64 = ONES * 0x7f;
    let below = (word ^ (ONES * 0x02) | HIGHS).wrapping_sub(ONES * 0x21) | word;
    let v = word ^ (ONES * u64::from(b'\\'));
    let nonzero = (v & LOW7).wrapping_add(LOW7) | v;
    !(below & nonzero) & HIGHS
}

/// Bit 7 of each byte of the result is set where `word`'s byte is not an ASCII digit; exact
/// up to and including the lowest such byte (higher bytes may be marked wrongly, which the
/// callers never look at: they want the length of the leading run of digits).
///
/// A byte is a digit when its high nibble is 3 and stays 3 after adding 6 (`'9' + 6` is `?`,
/// `':' + 6` is `@`). The sum carries into the next byte only from a byte of 0xFA or more,
/// itself no digit, so the bytes below the first non-digit are judged exactly. `v` is then zero
/// exactly at the digits, and `((v & 0x7f) + 0x7f) | v` sets bit 7 of every non-zero byte
/// without carrying between bytes.
#[inline]
pub(super) fn non_digits(word: u64) -> u64 {
    const NIBBLES: u64 = 0xf0f0_f0f0_f0f0_f0f0;
    const THREES: u64 = ONES * 0x30;
    const LOW7: u64 = ONES * 0x7f;
    let high = word & NIBBLES;
    let carried = word.wrapping_add(ONES * 6) & NIBBLES;
    let v = (high ^ THREES) | (carried ^ THREES);
    ((v & LOW7).wrapping_add(LOW7) | v) & HIGHS
}

/// The value of eight ASCII digits in one word (the first, most significant digit in the lowest
/// byte): pairs of digits are joined into bytes, pairs of pairs into 16-bit lanes, then the two
/// halves into one number (no lane overflows: 99, 9999, 99999999).
#[inline]
pub(super) fn eight_digits(word: u64) -> u64 {
    let w = word.wrapping_sub(ONES * u64::from(b'0'));
    let w = (w.wrapping_mul(10) + (w >> 8)) & 0x00ff_00ff_00ff_00ff;
    let w = (w.wrapping_mul(100) + (w >> 16)) & 0x0000_ffff_0000_ffff;
    (w.wrapping_mul(10_000) + (w >> 32)) & 0xffff_ffff
}

/// The value of a run of ASCII digits that cannot overflow a `u64` (at most 19), eight at a time.
#[inline]
pub(super) fn small_digits_value(mut digits: &[u8]) -> u64 {
    let mut v: u64 = 0;
    while let Some(word) = word_at(digits, 0) {
        v = v * 100_000_000 + eight_digits(word);
        digits = &digits[8..];
    }
    for &d in digits {
        v = v * 10 + u64::from(d - b'0');
    }
    v
}

/// The eight bytes of `b` at `i` as a little-endian word (the first byte lowest), or `None`
/// past the end.
#[inline(always)]
pub(super) fn word_at(b: &[u8], i: usize) -> Option<u64> {
    let chunk = b.get(i..i + 8)?;
    let mut word = [0u8; 8];
    word.copy_from_slice(chunk);
    Some(u64::from_le_bytes(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words built from bytes that matter (digits, their neighbours, quotes, controls, high
    /// bytes that carry) in every position.
    fn words() -> impl Iterator<Item = [u8; 8]> {
        const BYTES: &[u8] = b"0123456789/:\"\\ \x00\x1f\x7f\x80\xfa\xffa.-";
        (0..20_000u64).map(|n| {
            let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            std::array::from_fn(|_| {
                x = x.rotate_left(7) ^ (x >> 3);
                BYTES[(x % BYTES.len() as u64) as usize]
            })
        })
    }

    #[test]
    fn non_digits_finds_the_first_byte_that_is_no_digit() {
        for w in words() {
            let expected = w.iter().position(|b| !b.is_ascii_digit());
            let hit = non_digits(u64::from_le_bytes(w));
            let got = (hit != 0).then(|| (hit.trailing_zeros() / 8) as usize);
            assert_eq!(got, expected, "{w:?}");
        }
    }

    #[test]
    fn specials_exact_marks_every_quote_backslash_or_control_character() {
        for w in words().chain((0..=255u8).map(|b| [b, b'"', b, 0x5d, b, 0x23, b, 0x20])) {
            let hit = specials_exact(u64::from_le_bytes(w));
            for (k, &b) in w.iter().enumerate() {
                let marked = hit >> (8 * k) & 0xff;
                let special = b == b'"' || b == b'\\' || b < 0x20;
                assert_eq!(marked, if special { 0x80 } else { 0 }, "{w:?} byte {k}");
            }
        }
    }

    #[test]
    fn digit_values_match_str_parse() {
        for text in [
            "0",
            "7",
            "12345678",
            "00000001",
            "99999999",
            "1758841135824",
        ] {
            assert_eq!(
                small_digits_value(text.as_bytes()),
                text.parse::<u64>().unwrap()
            );
        }
        assert_eq!(
            small_digits_value(b"9999999999999999999"),
            9_999_999_999_999_999_999
        );
        for n in (0..100_000_000u64).step_by(9_973) {
            let text = format!("{n:08}");
            let word = u64::from_le_bytes(text.as_bytes().try_into().unwrap());
            assert_eq!(eight_digits(word), n, "{text}");
        }
    }
}
