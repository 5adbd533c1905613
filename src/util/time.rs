//! Wall-clock times as text (the access log's combined and ISO 8601 forms,
//! certificate dates in the admin API) and Unix milliseconds, written by hand
//! into a buffer so a log line allocates nothing for its timestamp.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds (0 before 1970).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day, hour, minute, second, millisecond) of `t`, UTC.
fn split_time(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, mo, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        y,
        mo,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis(),
    )
}

/// `10/Oct/2000:13:55:36 +0000` (UTC), the combined log format's `%t`.
pub(crate) fn clf_time(out: &mut Vec<u8>, t: SystemTime) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = split_time(t);
    let _ = write!(
        out,
        "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000",
        MONTHS[(mo - 1) as usize]
    );
}

/// `2000-10-10T13:55:36.123Z`.
pub(crate) fn iso_time(out: &mut Vec<u8>, t: SystemTime) {
    let (y, mo, d, h, mi, s, ms) = split_time(t);
    let _ = write!(out, "{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
}

/// [`iso_time`] as a `String`, for the control plane.
pub(crate) fn iso_string(t: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    iso_time(&mut out, t);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_format() {
        let t = UNIX_EPOCH + Duration::from_millis(971_186_136_123);
        let mut s = Vec::new();
        clf_time(&mut s, t);
        assert_eq!(s, b"10/Oct/2000:13:55:36 +0000");
        s.clear();
        iso_time(&mut s, t);
        assert_eq!(s, b"2000-10-10T13:55:36.123Z");
        s.clear();
        iso_time(&mut s, UNIX_EPOCH + Duration::from_secs(951_782_400)); // leap day
        assert_eq!(s, b"2000-02-29T00:00:00.000Z");
        assert_eq!(iso_string(t), "2000-10-10T13:55:36.123Z");
    }
}
