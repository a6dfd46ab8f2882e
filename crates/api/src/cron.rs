//! CronJob schedules as Kubernetes reads them (robfig/cron's standard
//! parser): five fields `minute hour day-of-month month day-of-week` with
//! `*`, `?`, ranges, steps, lists and month/day names, or a descriptor
//! (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
//! `@hourly`, `@every <duration>`). Errors read as Kubernetes' validation
//! prints them (`expected exactly 5 fields, found 1: [bad]`). Times are
//! found in a time zone (IANA names from chrono-tz). A cron crate would
//! accept more than Kubernetes does (`L`, `W`, `#`, seconds) and word its
//! errors differently, hence this small parser.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A set bit marks a field given as `*` or `?` (without a step above one),
/// which changes how day-of-month and day-of-week combine.
const STAR: u64 = 1 << 63;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Bits per field: minute, hour, day of month, month, day of week.
    Fields {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
    },
    /// `@every <duration>`: a fixed delay between runs.
    Every(Duration),
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn parse_uint(s: &str) -> Result<u32, String> {
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {s}")),
        Ok(n) => Ok(n.min(i64::from(u32::MAX)) as u32),
        Err(_) => Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"
        )),
    }
}

fn int_or_name(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        // Months are named from 1, days from 0.
        return Ok(i as u32 + b.min);
    }
    parse_uint(s)
}

fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let mut extra = 0;
    let (start, mut end) = if low_high[0] == "*" || low_high[0] == "?" {
        extra = STAR;
        (b.min, b.max)
    } else {
        let start = int_or_name(low_high[0], b)?;
        let end = match low_high.len() {
            1 => start,
            2 => int_or_name(low_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_uint(range_and_step[1])?;
            // `N/step` means `N-max/step`.
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok(bits | extra)
}

fn field(f: &str, b: &Bounds) -> Result<u64, String> {
    f.split(',').try_fold(0, |acc, e| Ok(acc | range(e, b)?))
}

/// Go's `time.ParseDuration` for what `@every` takes: `1h30m`, `90s`,
/// `1.5h`.
fn go_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::zero());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * nanos;
    }
    Some(Duration::nanoseconds(total as i64))
}

impl Schedule {
    /// Parses `spec` as Kubernetes' validation does; the error is its
    /// message.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let mut spec = spec;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            // Refused by validation unless kept from an older object; the
            // zone itself is the timeZone field's job here.
            let i = spec.find(' ').unwrap_or(spec.len());
            let eq = spec.find('=').unwrap_or(0);
            let zone = &spec[eq + 1..i];
            if zone.parse::<Tz>().is_err() && zone != "Local" {
                return Err(format!(
                    "provided bad location {zone}: unknown time zone {zone}"
                ));
            }
            spec = spec[i..].trim();
        }
        if let Some(d) = spec.strip_prefix('@') {
            let fields = |m: &str, h: &str, dom: &str, mon: &str, dow: &str| {
                Schedule::parse(&format!("{m} {h} {dom} {mon} {dow}"))
            };
            return match d {
                "yearly" | "annually" => fields("0", "0", "1", "1", "*"),
                "monthly" => fields("0", "0", "1", "*", "*"),
                "weekly" => fields("0", "0", "*", "*", "0"),
                "daily" | "midnight" => fields("0", "0", "*", "*", "*"),
                "hourly" => fields("0", "*", "*", "*", "*"),
                _ => match d.strip_prefix("every ") {
                    Some(dur) => match go_duration(dur) {
                        Some(delay) => {
                            // At least a second, whole seconds.
                            let secs = delay.num_seconds().max(1);
                            Ok(Schedule::Every(Duration::seconds(secs)))
                        }
                        None => Err(format!(
                            "failed to parse duration {spec}: time: invalid duration {dur:?}"
                        )),
                    },
                    None => Err(format!("unrecognized descriptor: {spec}")),
                },
            };
        }
        let f: Vec<&str> = spec.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                f.len(),
                f.join(" ")
            ));
        }
        Ok(Schedule::Fields {
            minute: field(f[0], &MINUTES)?,
            hour: field(f[1], &HOURS)?,
            dom: field(f[2], &DOM)?,
            month: field(f[3], &MONTHS)?,
            dow: field(f[4], &DOW)?,
        })
    }

    /// The first time strictly after `after` that the schedule names, in
    /// time zone `tz`; None if there is none within five years.
    pub fn next(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let (minute, hour, dom, month, dow) = match *self {
            Schedule::Every(d) => {
                let whole = after - Duration::nanoseconds(after.nanosecond().into());
                return Some(whole + d);
            }
            Schedule::Fields {
                minute,
                hour,
                dom,
                month,
                dow,
            } => (minute, hour, dom, month, dow),
        };
        let has = |bits: u64, v: u32| bits & (1 << v) != 0;
        let day_matches = |d: NaiveDate| {
            let dom_match = has(dom, d.day());
            let dow_match = has(dow, d.weekday().num_days_from_sunday());
            if dom & STAR != 0 || dow & STAR != 0 {
                dom_match && dow_match
            } else {
                dom_match || dow_match
            }
        };
        // Walk local wall-clock minutes, skipping whole months, days and
        // hours that cannot match.
        let local = after.with_timezone(&tz).naive_local();
        let mut t = local.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = t + Duration::days(5 * 366);
        while t < limit {
            if !has(month, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !day_matches(t.date()) {
                t = (t.date() + Duration::days(1)).and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !has(hour, t.hour()) {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if !has(minute, t.minute()) {
                t += Duration::minutes(1);
                continue;
            }
            if let Some(utc) = to_utc(t, tz).filter(|u| *u > after) {
                return Some(utc);
            }
            t += Duration::minutes(1);
        }
        None
    }
}

/// A wall-clock time in `tz` as UTC: the earlier of two in a repeated
/// hour, None for a time a clock change skips.
fn to_utc(t: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&t)
        .earliest()
        .map(|d| d.with_timezone(&Utc))
}

/// Parses an IANA time zone name (`Europe/Paris`, `UTC`); Kubernetes'
/// message when there is none.
pub fn time_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next(at(after), Tz::UTC)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn errors_read_as_kubernetes_prints_them() {
        let err = |s: &str| Schedule::parse(s).unwrap_err();
        assert_eq!(err("bad"), "expected exactly 5 fields, found 1: [bad]");
        assert_eq!(err(""), "empty spec string");
        assert_eq!(
            err("61 * * * *"),
            "end of range (61) above maximum (59): 61"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            err("5-2 * * * *"),
            "beginning of range (5) beyond end of range (2): 5-2"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(
            err("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(err("@often"), "unrecognized descriptor: @often");
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
    }

    #[test]
    fn next_times_follow_the_fields() {
        assert_eq!(
            next("*/1 * * * *", "2026-12-05T07:56:20Z"),
            "2026-12-05T07:57:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-12-05T07:56:20Z"),
            "2026-12-05T08:00:00+00:00"
        );
        assert_eq!(
            next("@hourly", "2026-12-05T07:56:20Z"),
            "2026-12-05T08:00:00+00:00"
        );
        assert_eq!(
            next("0 0 1 jan *", "2026-12-05T07:56:20Z"),
            "2027-01-01T00:00:00+00:00"
        );
        // Day of month OR day of week when neither is `*`: the 6th (a
        // Sunday) or a Friday, whichever is first.
        assert_eq!(
            next("0 12 6 * fri", "2026-12-05T07:56:20Z"),
            "2026-12-06T12:00:00+00:00"
        );
        // AND when one is `*`.
        assert_eq!(
            next("0 12 * * fri", "2026-12-05T07:56:20Z"),
            "2026-12-11T12:00:00+00:00"
        );
        assert_eq!(
            next("@every 90s", "2026-12-05T07:56:20.5Z"),
            "2026-12-05T07:57:50+00:00"
        );
    }

    #[test]
    fn time_zones_move_the_wall_clock() {
        let s = Schedule::parse("0 9 * * *").unwrap();
        let tz = time_zone("Asia/Tokyo").unwrap();
        // 09:00 in Tokyo is 00:00 UTC.
        assert_eq!(
            s.next(at("2026-12-05T07:56:20Z"), tz).unwrap().to_rfc3339(),
            "2026-12-06T00:00:00+00:00"
        );
        assert_eq!(
            time_zone("Mars/Olympus").unwrap_err(),
            "unknown time zone Mars/Olympus"
        );
    }
}
