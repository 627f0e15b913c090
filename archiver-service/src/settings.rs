//! `settings.toml` of a data directory: options that concern the whole installation
//! rather than one profile. Today only the free-space reserve of the archive's
//! filesystem: a run does not start when less than the reserve is free, so a full
//! disk stops at a clean boundary instead of in the middle of a write.
//!
//! ```toml
//! [archive]
//! reserve = "1 GiB"      # bytes, or a size with a unit (KB, MB, GB, KiB, MiB, GiB, TiB)
//! reserve_percent = 5    # of the filesystem's size; the smaller of the two applies
//! ```
//!
//! A missing file means the defaults; unknown fields are refused with the file and
//! field named.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::datadir::DataDir;
use crate::error::ServiceError;

type Result<T> = std::result::Result<T, ServiceError>;

/// Default absolute reserve: 1 GiB.
pub const DEFAULT_RESERVE_BYTES: u64 = 1 << 30;
/// Default relative reserve: 5 % of the filesystem.
pub const DEFAULT_RESERVE_PERCENT: u8 = 5;

/// The free space a run needs on the archive's filesystem before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// Absolute reserve in bytes.
    pub bytes: u64,
    /// Relative reserve, in percent of the filesystem's size.
    pub percent: u8,
}

impl Default for Reserve {
    fn default() -> Self {
        Self {
            bytes: DEFAULT_RESERVE_BYTES,
            percent: DEFAULT_RESERVE_PERCENT,
        }
    }
}

impl Reserve {
    /// The bytes that must stay free on a filesystem of `total_bytes`: the smaller of
    /// the absolute and the relative reserve (so a small disk is not blocked by 1 GiB,
    /// and a large one does not keep 5 % idle).
    pub fn required(&self, total_bytes: u64) -> u64 {
        let relative = u64::try_from(u128::from(total_bytes) * u128::from(self.percent) / 100)
            .unwrap_or(u64::MAX);
        self.bytes.min(relative)
    }
}

/// Settings of a data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Free-space reserve of the archive's filesystem.
    pub reserve: Reserve,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    archive: Option<RawArchive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArchive {
    #[serde(default)]
    reserve: Option<toml::Value>,
    #[serde(default)]
    reserve_percent: Option<i64>,
}

impl Settings {
    /// The settings file of `dir`.
    pub fn path(dir: &DataDir) -> PathBuf {
        dir.settings_file()
    }

    /// Reads `settings.toml` of `dir` (the defaults when it does not exist).
    pub fn load(dir: &DataDir) -> Result<Self> {
        let path = Self::path(dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ServiceError::io("cannot read", path, e)),
        }
    }

    /// Parses the text of a settings file (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let raw: RawSettings = toml::from_str(text).map_err(|e| {
            ServiceError::invalid(format!("{}: not valid settings: {e}", path.display()))
        })?;
        let mut settings = Self::default();
        let Some(archive) = raw.archive else {
            return Ok(settings);
        };
        if let Some(value) = archive.reserve {
            settings.reserve.bytes = match &value {
                toml::Value::Integer(n) if *n >= 0 => n.unsigned_abs(),
                toml::Value::String(s) => parse_size(s).map_err(|e| {
                    e.context(format!("{}: field `archive.reserve`", path.display()))
                })?,
                _ => {
                    return Err(ServiceError::invalid(format!(
                        "{}: field `archive.reserve` must be a number of bytes or a size such as \"1 GiB\"",
                        path.display()
                    )));
                }
            };
        }
        if let Some(percent) = archive.reserve_percent {
            settings.reserve.percent = u8::try_from(percent)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| {
                    ServiceError::invalid(format!(
                        "{}: field `archive.reserve_percent` must be between 0 and 100, not {percent}",
                        path.display()
                    ))
                })?;
        }
        Ok(settings)
    }
}

/// Parses `"1 GiB"`, `"500MB"`, `"1024"` into bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        ServiceError::invalid(format!(
            "{text:?} is not a size (e.g. \"1 GiB\", \"500 MB\")"
        ))
    })?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        other => {
            return Err(ServiceError::invalid(format!(
                "unknown size unit {other:?} in {text:?} (use KB, MB, GB, KiB, MiB, GiB)"
            )));
        }
    };
    let bytes = number * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(ServiceError::invalid(format!("{text:?} is out of range")));
    }
    Ok(bytes as u64)
}

/// Bytes for people (`1.5 GiB`), as the reserve's messages name them.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: std::result::Result<Reserve, &str>) {
        let got = Settings::parse(text, Path::new("settings.toml"));
        match (got, expected) {
            (Ok(settings), Ok(reserve)) => assert_eq!(settings.reserve, reserve, "{text}"),
            (Err(e), Err(needle)) => {
                let message = crate::error::chain(&e);
                assert!(message.contains(needle), "{text}: {message}");
                assert!(message.contains("settings.toml"), "{text}: {message}");
            }
            (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn settings_parse_or_name_the_field() {
        let r = |bytes, percent| Ok(Reserve { bytes, percent });
        check("", r(DEFAULT_RESERVE_BYTES, DEFAULT_RESERVE_PERCENT));
        check("[archive]\nreserve = \"2 GiB\"", r(2 << 30, 5));
        check("[archive]\nreserve = 4096\nreserve_percent = 0", r(4096, 0));
        check("[archive]\nreserve = \"500 MB\"", r(500_000_000, 5));
        check(
            "[archive]\nreserve_percent = 101",
            Err("archive.reserve_percent"),
        );
        check("[archive]\nreserve = \"lots\"", Err("archive.reserve"));
        check("[archive]\nreserve = \"3 parsecs\"", Err("archive.reserve"));
        check("[archive]\nreserve = true", Err("archive.reserve"));
        check("[archive]\nreserv = 1", Err("reserv"));
        check("[archve]", Err("archve"));
    }

    #[test]
    fn the_smaller_reserve_applies() {
        let reserve = Reserve::default();
        assert_eq!(reserve.required(30 << 20), (30 << 20) * 5 / 100);
        assert_eq!(reserve.required(1 << 40), 1 << 30);
        assert_eq!(
            Reserve {
                bytes: 10,
                percent: 100
            }
            .required(u64::MAX),
            10
        );
    }
}
