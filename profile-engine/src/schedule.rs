//! When a profile runs by itself: "manual", "every 30m", "daily 02:00" or
//! "weekly mon 03:00", in the local time of a zone the caller chooses (generic over
//! `chrono::TimeZone`, so tests can use any zone and production uses `chrono::Local`).
//!
//! Local times that do not exist (spring forward) fire at the first minute after
//! the gap; local times that exist twice (fall back) fire once, at the first
//! occurrence. After downtime, [`Schedule::next_due`] asks for one catch-up run and
//! then returns to the regular slots: never a burst of missed runs.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};

use crate::error::EngineError;

/// A profile's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// Only when started by hand.
    #[default]
    Manual,
    /// At every multiple of this many minutes since the Unix epoch (UTC-aligned, so
    /// DST changes neither skip nor double a slot).
    Every {
        /// Interval in minutes (1 to 10080).
        minutes: u32,
    },
    /// Every day at this local time.
    Daily {
        /// Local wall-clock time.
        at: NaiveTime,
    },
    /// Every week on this day at this local time.
    Weekly {
        /// Day of the week.
        day: Weekday,
        /// Local wall-clock time.
        at: NaiveTime,
    },
}

/// Longest interval of `every`: one week.
const MAX_EVERY_MINUTES: u32 = 7 * 24 * 60;

impl Schedule {
    /// Whether the schedule never fires by itself.
    pub fn is_manual(&self) -> bool {
        matches!(self, Schedule::Manual)
    }

    /// The first firing time strictly after `after`, in the zone `tz`.
    /// `None` for a manual schedule.
    pub fn next_fire<Tz: TimeZone>(&self, after: DateTime<Utc>, tz: &Tz) -> Option<DateTime<Utc>> {
        match *self {
            Schedule::Manual => None,
            Schedule::Every { minutes } => {
                let step = i64::from(minutes.max(1)) * 60;
                let now = after.timestamp();
                let next = (now.div_euclid(step) + 1) * step;
                DateTime::from_timestamp(next, 0)
            }
            Schedule::Daily { at } => {
                let start = after.with_timezone(tz).date_naive();
                (-1..=2)
                    .filter_map(|offset| start.checked_add_signed(Duration::days(offset)))
                    .filter_map(|date| local_instant(tz, date, at))
                    .find(|fire| *fire > after)
            }
            Schedule::Weekly { day, at } => {
                let start = after.with_timezone(tz).date_naive();
                (-1..=8)
                    .filter_map(|offset| start.checked_add_signed(Duration::days(offset)))
                    .filter(|date| date.weekday() == day)
                    .filter_map(|date| local_instant(tz, date, at))
                    .find(|fire| *fire > after)
            }
        }
    }

    /// When the next run is due, given the start of the last run (`None` if it never
    /// ran) and the current time. A slot missed during downtime gives a single
    /// catch-up run now; after it (the caller records its start as the last run)
    /// the next regular slot follows. `None` for a manual schedule.
    pub fn next_due<Tz: TimeZone>(
        &self,
        last_run: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        tz: &Tz,
    ) -> Option<DateTime<Utc>> {
        match last_run {
            None => self.next_fire(now, tz),
            Some(last) => {
                let next = self.next_fire(last, tz)?;
                Some(if next <= now { now } else { next })
            }
        }
    }
}

/// The instant a local wall-clock time happens on `date`: the earlier one when
/// ambiguous, the first valid minute after the gap when it does not exist.
fn local_instant<Tz: TimeZone>(tz: &Tz, date: NaiveDate, at: NaiveTime) -> Option<DateTime<Utc>> {
    let wanted = NaiveDateTime::new(date, at);
    match tz.from_local_datetime(&wanted) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => {
            Some(first.with_timezone(&Utc).min(second.with_timezone(&Utc)))
        }
        LocalResult::None => {
            // In a gap: walk forward minute by minute (gaps last at most a day).
            let mut probe = wanted;
            for _ in 0..(26 * 60) {
                probe += Duration::minutes(1);
                match tz.from_local_datetime(&probe) {
                    LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
                    LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
                    LocalResult::None => {}
                }
            }
            None
        }
    }
}

impl FromStr for Schedule {
    type Err = EngineError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| EngineError::InvalidSchedule {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let lower = input.trim().to_ascii_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        match words.as_slice() {
            ["manual"] => Ok(Schedule::Manual),
            ["every", interval] => parse_interval(interval).map_err(|r| fail(&r)),
            ["every", number, unit] => {
                parse_interval(&format!("{number}{unit}")).map_err(|r| fail(&r))
            }
            ["daily", time] => Ok(Schedule::Daily {
                at: parse_time(time).map_err(|r| fail(&r))?,
            }),
            ["weekly", day, time] => Ok(Schedule::Weekly {
                day: parse_weekday(day).map_err(|r| fail(&r))?,
                at: parse_time(time).map_err(|r| fail(&r))?,
            }),
            [] => Err(fail("it is empty")),
            _ => Err(fail("unknown form")),
        }
    }
}

fn parse_interval(text: &str) -> Result<Schedule, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (m or h)"))?;
    let (number, unit) = text.split_at(split);
    let count: u32 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a whole number"))?;
    let per_unit = match unit {
        "m" | "min" | "mins" | "minute" | "minutes" => 1,
        "h" | "hour" | "hours" => 60,
        _ => return Err(format!("unknown unit {unit:?} (use m or h)")),
    };
    let minutes = count
        .checked_mul(per_unit)
        .filter(|m| (1..=MAX_EVERY_MINUTES).contains(m))
        .ok_or_else(|| "the interval must be between 1 minute and 7 days".to_owned())?;
    Ok(Schedule::Every { minutes })
}

fn parse_time(text: &str) -> Result<NaiveTime, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("time {text:?} is not HH:MM"))?;
    let hour: u32 = h
        .parse()
        .map_err(|_| format!("hour {h:?} is not a number"))?;
    let minute: u32 = m
        .parse()
        .map_err(|_| format!("minute {m:?} is not a number"))?;
    if m.len() != 2 {
        return Err(format!("time {text:?} is not HH:MM"));
    }
    NaiveTime::from_hms_opt(hour, minute, 0).ok_or_else(|| format!("time {text:?} does not exist"))
}

fn parse_weekday(text: &str) -> Result<Weekday, String> {
    let day = match text {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tues" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thur" | "thurs" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return Err(format!("{text:?} is not a day of the week (mon..sun)")),
    };
    Ok(day)
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Manual => f.write_str("manual"),
            Schedule::Every { minutes } if minutes % 60 == 0 => {
                write!(f, "every {}h", minutes / 60)
            }
            Schedule::Every { minutes } => write!(f, "every {minutes}m"),
            Schedule::Daily { at } => write!(f, "daily {}", at.format("%H:%M")),
            Schedule::Weekly { day, at } => {
                let name = match day {
                    Weekday::Mon => "mon",
                    Weekday::Tue => "tue",
                    Weekday::Wed => "wed",
                    Weekday::Thu => "thu",
                    Weekday::Fri => "fri",
                    Weekday::Sat => "sat",
                    Weekday::Sun => "sun",
                };
                write!(f, "weekly {name} {}", at.format("%H:%M"))
            }
        }
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
