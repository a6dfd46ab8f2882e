//! Kubernetes resource quantities ("100m", "1.5", "256Mi", "1e3") as exact
//! integers: CPU in millicores, everything else in base units (bytes, pods).
//! Exact decimal arithmetic, because "0.1" must be 100m, not 101m.

/// The quantity in thousandths of its unit, rounded up (CPU millicores).
pub fn parse_milli(q: &str) -> Option<i64> {
    scaled(q, 1000)
}

/// The quantity in whole units, rounded up (bytes, pod counts).
pub fn parse_units(q: &str) -> Option<i64> {
    scaled(q, 1)
}

fn scaled(q: &str, scale: i128) -> Option<i64> {
    let q = q.trim();
    let (number, suffix) = split_suffix(q);
    let (mut num, mut den) = parse_decimal(number)?;
    let (mul_num, mul_den) = suffix_factor(suffix)?;
    num = num.checked_mul(mul_num)?.checked_mul(scale)?;
    den = den.checked_mul(mul_den)?;
    let value = if num >= 0 {
        (num + den - 1) / den
    } else {
        num / den
    };
    i64::try_from(value).ok()
}

/// Splits "1.5Gi" into ("1.5", "Gi") and "1e3" into ("1e3", "").
fn split_suffix(q: &str) -> (&str, &str) {
    let bytes = q.as_bytes();
    let mut end = 0;
    while end < bytes.len() {
        let c = bytes[end];
        let exponent = (c == b'e' || c == b'E')
            && end + 1 < bytes.len()
            && (bytes[end + 1].is_ascii_digit()
                || bytes[end + 1] == b'-'
                || bytes[end + 1] == b'+');
        if c.is_ascii_digit() || c == b'.' || c == b'+' || c == b'-' || exponent {
            end += if exponent { 2 } else { 1 };
        } else {
            break;
        }
    }
    q.split_at(end)
}

/// An optionally signed decimal with an optional exponent, as num/den.
fn parse_decimal(s: &str) -> Option<(i128, i128)> {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
        None => (s, 0),
    };
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut num: i128 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        num = num.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    let mut den: i128 = 10i128.checked_pow(u32::try_from(frac_part.len()).ok()?)?;
    if exponent >= 0 {
        num = num.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?;
    } else {
        den = den.checked_mul(10i128.checked_pow(exponent.unsigned_abs())?)?;
    }
    Some((if negative { -num } else { num }, den))
}

fn suffix_factor(suffix: &str) -> Option<(i128, i128)> {
    Some(match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1000),
        "k" => (1000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("0.1"), Some(100));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("1e3m"), Some(1000));
        // Kubernetes rounds sub-millicore requests up.
        assert_eq!(parse_milli("100u"), Some(1));
        assert_eq!(parse_milli("32"), Some(32_000));
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(parse_units("256Mi"), Some(256 << 20));
        assert_eq!(parse_units("256Gi"), Some(256 << 30));
        assert_eq!(parse_units("1G"), Some(1_000_000_000));
        assert_eq!(parse_units("24581684Ki"), Some(24_581_684 * 1024));
        assert_eq!(parse_units("1.5Ki"), Some(1536));
        assert_eq!(parse_units("110"), Some(110));
        assert_eq!(parse_units("1E"), Some(1_000_000_000_000_000_000));
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse_units(""), None);
        assert_eq!(parse_units("abc"), None);
        assert_eq!(parse_units("1Xi"), None);
        assert_eq!(parse_units("."), None);
        assert_eq!(parse_units("1e999"), None);
    }
}
