//! Resource quantities ("100m", "1Gi", "1e3") parsed to an exact integer
//! number of nano-units, enough to compare and sum them as Kubernetes does.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// Kubernetes' own wording for a malformed quantity.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    #[error("quantity is too large")]
    TooLarge,
}

/// Parses a quantity into nano-units (1 = 1_000_000_000), rounding any finer
/// fraction up, as Kubernetes rounds quantities up to its smallest scale.
pub fn parse_nanos(s: &str) -> Result<i128, QuantityError> {
    let s = s.trim();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(QuantityError::Format);
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // value = digits * 10^(dec_exp) * 2^(bin_exp)
    let digits: String = format!("{int_part}{frac_part}");
    let mut dec_exp: i32 = -(frac_part.len() as i32);
    let mut bin_exp: u32 = 0;
    match suffix {
        "" => {}
        "n" => dec_exp -= 9,
        "u" => dec_exp -= 6,
        "m" => dec_exp -= 3,
        "k" => dec_exp += 3,
        "M" => dec_exp += 6,
        "G" => dec_exp += 9,
        "T" => dec_exp += 12,
        "P" => dec_exp += 15,
        "E" => dec_exp += 18,
        "Ki" => bin_exp = 10,
        "Mi" => bin_exp = 20,
        "Gi" => bin_exp = 30,
        "Ti" => bin_exp = 40,
        "Pi" => bin_exp = 50,
        "Ei" => bin_exp = 60,
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or(QuantityError::Format)?;
            let exp: i32 = exp.parse().map_err(|_| QuantityError::Format)?;
            if exp.abs() > 40 {
                return Err(QuantityError::TooLarge);
            }
            dec_exp += exp;
        }
    }
    let mut value: i128 = 0;
    for d in digits.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(d - b'0')))
            .ok_or(QuantityError::TooLarge)?;
    }
    value = value
        .checked_mul(1i128 << bin_exp)
        .ok_or(QuantityError::TooLarge)?;
    let exp = dec_exp + 9; // to nano-units
    if exp >= 0 {
        value = 10i128
            .checked_pow(exp as u32)
            .and_then(|p| value.checked_mul(p))
            .ok_or(QuantityError::TooLarge)?;
    } else {
        let div = 10i128.checked_pow((-exp) as u32).unwrap_or(i128::MAX);
        value = value / div + i128::from(value % div != 0);
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_exactly() {
        assert_eq!(parse_nanos("100m"), Ok(100_000_000));
        assert_eq!(parse_nanos("0.1"), Ok(100_000_000));
        assert_eq!(parse_nanos("1"), Ok(1_000_000_000));
        assert_eq!(parse_nanos("1Ki"), Ok(1024 * 1_000_000_000));
        assert_eq!(parse_nanos("1e3"), parse_nanos("1k"));
        assert_eq!(parse_nanos("1Gi"), parse_nanos("1024Mi"));
        assert_eq!(parse_nanos("-2"), Ok(-2_000_000_000));
        assert_eq!(parse_nanos("1.5n"), Ok(2));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_nanos("abc"), Err(QuantityError::Format));
        assert_eq!(parse_nanos("1Xi"), Err(QuantityError::Format));
        assert_eq!(parse_nanos("1.2.3"), Err(QuantityError::Format));
        assert_eq!(parse_nanos(""), Err(QuantityError::Format));
    }
}
