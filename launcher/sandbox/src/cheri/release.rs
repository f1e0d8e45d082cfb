//! Which CheriBSD release a machine runs. CheriBSD reports its FreeBSD base
//! in `kern.osrelease` (`uname -r`, e.g. `15.0-CURRENT`), which says nothing
//! about the CheriBSD release; the release shows up, when at all, as the
//! source branch in `kern.version` (`uname -v`, e.g. `… releng/24.05-…`).
//! So detection looks for a release marker in both strings and otherwise
//! asks for the operator's explicit setting.

use std::fmt;
use std::str::FromStr;

/// A CheriBSD release, `YY.MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheriBsdRelease {
    pub year: u8,
    pub month: u8,
}

impl CheriBsdRelease {
    pub const R22_12: CheriBsdRelease = CheriBsdRelease {
        year: 22,
        month: 12,
    };
    pub const R23_11: CheriBsdRelease = CheriBsdRelease {
        year: 23,
        month: 11,
    };
    pub const R24_05: CheriBsdRelease = CheriBsdRelease { year: 24, month: 5 };
    pub const R25_03: CheriBsdRelease = CheriBsdRelease { year: 25, month: 3 };
    pub const R26_07: CheriBsdRelease = CheriBsdRelease { year: 26, month: 7 };
}

impl fmt::Display for CheriBsdRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}.{:02}", self.year, self.month)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0:?} is not a CheriBSD release (expected YY.MM, e.g. 24.05)")]
    Malformed(String),
    #[error(
        "cannot tell the CheriBSD release from kern.osrelease {osrelease:?} and kern.version {version:?} (no releng/YY.MM, release/YY.MM or CheriBSD YY.MM marker); set the release explicitly in the configuration"
    )]
    Unknown { osrelease: String, version: String },
}

impl FromStr for CheriBsdRelease {
    type Err = ReleaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || ReleaseError::Malformed(s.to_owned());
        let (y, m) = s.trim().split_once('.').ok_or_else(malformed)?;
        if y.len() != 2 || m.len() != 2 || !(y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()))
        {
            return Err(malformed());
        }
        let year: u8 = y.parse().map_err(|_| malformed())?;
        let month: u8 = m.parse().map_err(|_| malformed())?;
        if !(1..=12).contains(&month) {
            return Err(malformed());
        }
        Ok(CheriBsdRelease { year, month })
    }
}

/// Words after which a release number may follow, as in `releng/24.05`,
/// `release-26.07` or `CheriBSD 23.11`.
const MARKERS: [&str; 3] = ["releng", "release", "cheribsd"];

/// Finds a release marker in `text`.
fn find_marker(text: &str) -> Option<CheriBsdRelease> {
    let lower = text.to_ascii_lowercase();
    for marker in MARKERS {
        let mut from = 0;
        while let Some(i) = lower[from..].find(marker) {
            let start = from + i + marker.len();
            from = start;
            let rest = &lower[start..];
            let Some(sep) = rest.chars().next() else {
                break;
            };
            if !matches!(sep, '/' | '-' | '_' | ' ') {
                continue;
            }
            let candidate = rest.get(1..6).unwrap_or("");
            // The number must end there: "24.05" but not "24.055".
            let after = rest[1..].chars().nth(5);
            if after.is_some_and(|c| c.is_ascii_digit()) {
                continue;
            }
            if let Ok(r) = candidate.parse() {
                return Some(r);
            }
        }
    }
    None
}

/// The release: `configured` when given (the operator knows best), else a
/// marker found in `kern.version` or `kern.osrelease`.
pub fn detect(
    osrelease: &str,
    version: &str,
    configured: Option<&str>,
) -> Result<CheriBsdRelease, ReleaseError> {
    if let Some(c) = configured {
        return c.parse();
    }
    find_marker(version)
        .or_else(|| find_marker(osrelease))
        .ok_or_else(|| ReleaseError::Unknown {
            osrelease: osrelease.to_owned(),
            version: version.lines().next().unwrap_or("").to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_releases() {
        let r: CheriBsdRelease = "24.05".parse().unwrap();
        assert_eq!(r, CheriBsdRelease::R24_05);
        assert_eq!(r.to_string(), "24.05");
        assert!(CheriBsdRelease::R23_11 < CheriBsdRelease::R24_05);
        assert!(CheriBsdRelease::R22_12 < CheriBsdRelease::R23_11);
        assert!(CheriBsdRelease::R26_07 > CheriBsdRelease::R25_03);
        for bad in [
            "24.5", "2405", "24.13", "24.00", "aa.bb", "", "124.05", "24.05.1",
        ] {
            assert!(bad.parse::<CheriBsdRelease>().is_err(), "{bad}");
        }
    }

    #[test]
    fn detects_the_branch_in_kern_version() {
        let version = "FreeBSD 15.0-CURRENT #0 releng/24.05-6d3c3ad1b7a9: Mon Jun 17 12:00:00 UTC 2024\n    \
                       jenkins@cheribsd:/usr/obj/arm64.aarch64c/sys/GENERIC-MORELLO-PURECAP\n";
        assert_eq!(
            detect("15.0-CURRENT", version, None).unwrap(),
            CheriBsdRelease::R24_05
        );
        let version = "FreeBSD 14.0-CURRENT #0 c0ffee(releng/22.12): Tue Dec 13 2022";
        assert_eq!(
            detect("14.0-CURRENT", version, None).unwrap(),
            CheriBsdRelease::R22_12
        );
        assert_eq!(
            detect("15.0-RELEASE", "CheriBSD 26.07 GENERIC-MORELLO", None).unwrap(),
            CheriBsdRelease::R26_07
        );
        assert_eq!(
            detect("15.0-RELEASE-CHERIBSD-25.03", "", None).unwrap(),
            CheriBsdRelease::R25_03
        );
    }

    #[test]
    fn development_builds_need_the_configured_release() {
        // A main-branch build (as the CI's uname shows) names no release.
        let version = "FreeBSD 15.0-CURRENT #0 main-b2ad856aac65: Fri Jul 19 19:54:25 UTC 2024";
        let err = detect("15.0-CURRENT", version, None).unwrap_err();
        assert!(matches!(err, ReleaseError::Unknown { .. }));
        assert!(
            err.to_string().contains("set the release explicitly"),
            "{err}"
        );
        assert_eq!(
            detect("15.0-CURRENT", version, Some("23.11")).unwrap(),
            CheriBsdRelease::R23_11
        );
        // The configured value wins over what the kernel says.
        assert_eq!(
            detect("x", "releng/24.05", Some("22.12")).unwrap(),
            CheriBsdRelease::R22_12
        );
        assert!(detect("x", "y", Some("latest")).is_err());
    }

    #[test]
    fn ignores_lookalikes() {
        assert!(find_marker("release 24.055").is_none());
        assert!(find_marker("prerelease:24.05").is_none());
        assert!(find_marker("releng/").is_none());
        assert!(find_marker("releng").is_none());
        assert_eq!(
            find_marker("release notes; releng/23.11").unwrap(),
            CheriBsdRelease::R23_11
        );
    }
}
