//! Schedules: parsing, and next-fire times property-tested across DST changes in
//! Europe/Berlin and America/New_York, and the no-burst catch-up after downtime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::{America::New_York, Europe::Berlin, Tz};
use profile_engine::Schedule;
use proptest::prelude::*;

fn check_parse(input: &str, expected: Schedule) {
    assert_eq!(input.parse::<Schedule>().unwrap(), expected, "{input}");
    let canonical = expected.to_string();
    assert_eq!(
        canonical.parse::<Schedule>().unwrap(),
        expected,
        "{canonical}"
    );
}

#[test]
fn parses_every_documented_form() {
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
    for (input, expected) in [
        ("manual", Schedule::Manual),
        ("every 30m", Schedule::Every { minutes: 30 }),
        ("every 2h", Schedule::Every { minutes: 120 }),
        ("every 1m", Schedule::Every { minutes: 1 }),
        ("Every 15 min", Schedule::Every { minutes: 15 }),
        ("daily 02:00", Schedule::Daily { at: t(2, 0) }),
        (
            "weekly mon 03:00",
            Schedule::Weekly {
                day: Weekday::Mon,
                at: t(3, 0),
            },
        ),
        (
            "weekly Sunday 23:59",
            Schedule::Weekly {
                day: Weekday::Sun,
                at: t(23, 59),
            },
        ),
    ] {
        check_parse(input, expected);
    }
}

#[test]
fn rejects_bad_schedules_naming_the_problem() {
    for (input, needle) in [
        ("", "empty"),
        ("hourly", "unknown form"),
        ("every 0m", "between"),
        ("every 30", "unit"),
        ("every 5d", "unknown unit"),
        ("daily 25:00", "does not exist"),
        ("daily 2", "HH:MM"),
        ("weekly xyz 03:00", "day of the week"),
        ("every 99999h", "between"),
    ] {
        let err = input.parse::<Schedule>().unwrap_err().to_string();
        assert!(err.contains(needle), "{input:?}: {err}");
        assert!(err.contains(&format!("{input:?}")), "{err}");
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

#[test]
fn daily_run_in_a_spring_gap_fires_when_the_gap_ends_and_once_on_fall_back() {
    let s: Schedule = "daily 02:30".parse().unwrap();
    // Berlin springs forward on 2025-03-30 at 02:00 -> 03:00 local (01:00 UTC).
    let next = s.next_fire(utc(2025, 3, 29, 12, 0), &Berlin).unwrap();
    assert_eq!(next, utc(2025, 3, 30, 1, 0));
    assert_eq!(
        next.with_timezone(&Berlin).time(),
        NaiveTime::from_hms_opt(3, 0, 0).unwrap()
    );
    // Berlin falls back on 2025-10-26: 02:30 happens twice; fire at the first (00:30 UTC) only.
    let first = s.next_fire(utc(2025, 10, 25, 12, 0), &Berlin).unwrap();
    assert_eq!(first, utc(2025, 10, 26, 0, 30));
    let after = s.next_fire(first, &Berlin).unwrap();
    assert_eq!(after, utc(2025, 10, 27, 1, 30));
}

#[test]
fn catch_up_after_downtime_is_one_run_then_the_next_slot() {
    let s: Schedule = "daily 02:00".parse().unwrap();
    let last = utc(2025, 6, 1, 0, 0); // 02:00 Berlin
    let now = utc(2025, 6, 5, 9, 0); // three slots missed
    assert_eq!(
        s.next_due(Some(last), now, &Berlin),
        Some(now),
        "one catch-up run now"
    );
    // The catch-up run started at `now`: next is the regular slot, not the missed ones.
    assert_eq!(
        s.next_due(Some(now), now, &Berlin),
        Some(utc(2025, 6, 6, 0, 0))
    );
    assert_eq!(s.next_due(None, now, &Berlin), Some(utc(2025, 6, 6, 0, 0)));
    assert_eq!(Schedule::Manual.next_due(Some(last), now, &Berlin), None);
}

fn zone() -> impl Strategy<Value = Tz> {
    prop_oneof![Just(Berlin), Just(New_York)]
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2020..2030, minute resolution, dense around DST changes by sheer count.
    (1_577_836_800i64..1_893_456_000i64)
        .prop_map(|s| DateTime::from_timestamp(s - s % 60, 0).unwrap())
}

fn weekday() -> impl Strategy<Value = Weekday> {
    (0u8..7).prop_map(|d| Weekday::try_from(d).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn daily_fires_once_per_local_day_at_the_time_or_right_after_a_gap(
        tz in zone(), start in instant(), h in 0u32..24, m in 0u32..60,
    ) {
        let at = NaiveTime::from_hms_opt(h, m, 0).unwrap();
        let s = Schedule::Daily { at };
        let mut t = start;
        let mut previous_day = None;
        for _ in 0..40 {
            let next = s.next_fire(t, &tz).unwrap();
            prop_assert!(next > t);
            let local = next.with_timezone(&tz);
            if local.time() != at {
                // Only when `at` does not exist that day: right after the gap, within 2 hours.
                let wanted = local.date_naive().and_time(at);
                prop_assert!(tz.from_local_datetime(&wanted).single().is_none());
                prop_assert!(local.time() > at && local.time().hour() <= h + 2);
            }
            if let Some(prev) = previous_day {
                prop_assert_eq!(local.date_naive(), prev + Duration::days(1), "one per day, none skipped");
            }
            // Nothing fires in between: one minute earlier, the next fire is still `next`.
            prop_assert_eq!(s.next_fire(next - Duration::minutes(1), &tz), Some(next));
            previous_day = Some(local.date_naive());
            t = next;
        }
    }

    #[test]
    fn weekly_fires_on_its_day_every_week(
        tz in zone(), start in instant(), day in weekday(), h in 0u32..24, m in 0u32..60,
    ) {
        let s = Schedule::Weekly { day, at: NaiveTime::from_hms_opt(h, m, 0).unwrap() };
        let mut t = start;
        let mut previous = None;
        for _ in 0..12 {
            let next = s.next_fire(t, &tz).unwrap();
            prop_assert!(next > t);
            let local = next.with_timezone(&tz);
            prop_assert_eq!(local.weekday(), day);
            if let Some(prev) = previous {
                let gap = next - prev;
                prop_assert!(gap >= Duration::hours(167) && gap <= Duration::hours(169), "{gap}");
            }
            previous = Some(next);
            t = next;
        }
    }

    #[test]
    fn every_fires_at_exact_intervals_across_dst(
        tz in zone(), start in instant(), minutes in 1u32..=1440,
    ) {
        let s = Schedule::Every { minutes };
        let first = s.next_fire(start, &tz).unwrap();
        prop_assert!(first > start && first - start <= Duration::minutes(i64::from(minutes)));
        let second = s.next_fire(first, &tz).unwrap();
        prop_assert_eq!(second - first, Duration::minutes(i64::from(minutes)));
    }

    #[test]
    fn catch_up_never_bursts(
        tz in zone(), last in instant(), down_hours in 0i64..2000, text in prop_oneof![
            Just("every 30m"), Just("every 2h"), Just("daily 02:30"), Just("weekly sun 02:30")],
    ) {
        let s: Schedule = text.parse().unwrap();
        let now = last + Duration::hours(down_hours);
        let due = s.next_due(Some(last), now, &tz).unwrap();
        prop_assert!(due >= now || due == s.next_fire(last, &tz).unwrap());
        // After running at `due`, the following run is strictly later than `due`.
        let following = s.next_due(Some(due), due, &tz).unwrap();
        prop_assert!(following > due);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in ".{0,40}") {
        let _ = text.parse::<Schedule>();
    }
}
