//! Wall-clock time for records that are about when something happened: the certification
//! log's entries and checkpoints, the attestation's window, the dashboard's "as of". It is
//! the one place outside `seedcore_sim::run::timed` that reads the clock, and nothing it
//! returns goes into an event log or a certificate (docs/harness.md 2.1).

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};

/// Now, UTC, RFC 3339 to the second (`2026-12-06T11:02:03Z`).
pub fn now() -> String {
    #[allow(clippy::disallowed_methods, reason = "the log records when a certification happened; see the module")]
    let now = Utc::now();
    format(now.timestamp())
}

/// Unix seconds as RFC 3339 UTC to the second.
pub fn format(unix_seconds: i64) -> String {
    match Utc.timestamp_opt(unix_seconds, 0).single() {
        Some(time) => time.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => format!("@{unix_seconds}"),
    }
}

/// RFC 3339 (any offset) to Unix seconds.
pub fn parse(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp())
}

/// A date (`2026-12-06`) or an RFC 3339 time to Unix seconds; a date is its 00:00 UTC.
pub fn parse_date_or_time(text: &str) -> Option<i64> {
    if let Some(seconds) = parse(text) {
        return Some(seconds);
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_dates() {
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse("2026-12-06T11:02:03Z"), Some(1_796_554_923));
        assert_eq!(format(1_796_554_923), "2026-12-06T11:02:03Z");
        assert_eq!(parse_date_or_time("2026-12-06"), Some(1_796_515_200));
        assert_eq!(parse_date_or_time("2026-12-06T01:00:00+01:00"), Some(1_796_515_200));
        assert_eq!(parse_date_or_time("06/12/2026"), None);
        assert!(parse(&now()).is_some());
    }
}
