//! The fake's clock: wall time (or a frozen instant) plus an offset that tests move forward
//! instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time shifted by [`Clock::advance`]; drives token expiry and the rate limit. A
/// frozen clock stands still at the instant it was made: only [`Clock::advance`] moves it, so
/// what a test sees does not depend on how fast the machine runs it.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    /// The instant a frozen clock stands at (µs since the epoch); `None`: wall time.
    frozen_at: Option<i64>,
    offset_micros: AtomicI64,
}

fn wall_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as i64
}

impl Clock {
    /// A clock on wall time, or (`frozen`) one standing at the current instant.
    pub(crate) fn new(frozen: bool) -> Self {
        Clock {
            frozen_at: frozen.then(wall_micros),
            offset_micros: AtomicI64::new(0),
        }
    }

    /// Seconds since the Unix epoch, with microseconds.
    pub(crate) fn now(&self) -> f64 {
        let base = self.frozen_at.unwrap_or_else(wall_micros);
        (base + self.offset_micros.load(Ordering::Relaxed)) as f64 / 1e6
    }

    /// Whole seconds since the Unix epoch.
    pub(crate) fn now_secs(&self) -> i64 {
        self.now().floor() as i64
    }

    /// Moves the clock forward.
    pub(crate) fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX / 2);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Back to wall time (a frozen clock: back to the instant it was frozen at).
    pub(crate) fn reset(&self) {
        self.offset_micros.store(0, Ordering::Relaxed);
    }
}

/// `2024-08-29T10:34:19+00:00`, the format of Bitrix24's `time.date_start` (always UTC here).
pub(crate) fn iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_bitrix24() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso8601(1_724_916_859), "2024-08-29T07:34:19+00:00");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00+00:00");
    }

    #[test]
    fn advance_moves_time_forward() {
        let clock = Clock::default();
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now() - before >= 3599.0);
        clock.reset();
        assert!(clock.now() - before < 60.0);
    }

    #[test]
    fn a_frozen_clock_moves_only_when_advanced() {
        let clock = Clock::new(true);
        let start = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(1500));
        assert!((clock.now() - start - 1.5).abs() < 1e-6);
        clock.reset();
        assert_eq!(clock.now(), start);
        let wall = Clock::new(false);
        let before = wall.now();
        std::thread::sleep(Duration::from_millis(20));
        assert!(wall.now() > before);
    }
}
