//! Small value types with one textual form each, so that a value parsed from
//! canonical JSON always serializes back to the same bytes.
//!
//! - [`Sha256Hex`]: 64 lowercase hex digits;
//! - [`HexU64`]: `0x` then lowercase hex without leading zeros (`0x0` for zero);
//! - [`UnixTime`]: RFC 3339 UTC with seconds, `2026-11-24T18:54:00Z`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value did not have the expected textual form.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("expected {expected}, found {found:?}")]
pub struct FormatError {
    /// What the text should have looked like.
    pub expected: &'static str,
    /// The text found (cut to 80 characters).
    pub found: String,
}

impl FormatError {
    fn new(expected: &'static str, found: &str) -> Self {
        let found = match found.char_indices().nth(80) {
            Some((i, _)) => format!("{}…", &found[..i]),
            None => found.to_string(),
        };
        Self { expected, found }
    }
}

/// A SHA-256 digest written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Hex([u8; 32]);

impl Sha256Hex {
    /// The digest of `data`.
    pub fn digest(data: &[u8]) -> Self {
        Self(openssl::sha::sha256(data))
    }

    /// Wraps 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first `n` hex digits (at most 64), for proofs and logs.
    pub fn short(&self, n: usize) -> String {
        let mut s = self.to_string();
        s.truncate(n.min(64));
        s
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Hex({self})")
    }
}

impl FromStr for Sha256Hex {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, FormatError> {
        const EXPECTED: &str = "64 lowercase hex digits (a SHA-256)";
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(FormatError::new(EXPECTED, s));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| FormatError::new(EXPECTED, s))?;
        Ok(Self(out))
    }
}

/// An unsigned 64-bit number (an address, a size, a permission mask) written
/// as `0x` and lowercase hex digits without leading zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HexU64(pub u64);

impl fmt::Display for HexU64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for HexU64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl FromStr for HexU64 {
    type Err = FormatError;

    /// Accepts only the canonical form; see [`HexU64::parse_lenient`] for input
    /// from programs.
    fn from_str(s: &str) -> Result<Self, FormatError> {
        const EXPECTED: &str = "0x and lowercase hex digits without leading zeros";
        let value = Self::parse_lenient(s).map_err(|_| FormatError::new(EXPECTED, s))?;
        if value.to_string() != s {
            return Err(FormatError::new(EXPECTED, s));
        }
        Ok(value)
    }
}

impl HexU64 {
    /// Parses `0x` or `0X` and 1 to 16 hex digits of either case, leading
    /// zeros allowed (what C's `%#lx` or `%#018lx` print).
    pub fn parse_lenient(s: &str) -> Result<Self, FormatError> {
        const EXPECTED: &str = "0x and 1 to 16 hex digits";
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or_else(|| FormatError::new(EXPECTED, s))?;
        let significant = digits.trim_start_matches('0');
        if digits.is_empty()
            || significant.len() > 16
            || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(FormatError::new(EXPECTED, s));
        }
        if significant.is_empty() {
            return Ok(Self(0));
        }
        u64::from_str_radix(significant, 16)
            .map(Self)
            .map_err(|_| FormatError::new(EXPECTED, s))
    }
}

/// A point in time with one-second resolution, written as RFC 3339 UTC
/// (`2026-11-24T18:54:00Z`) and held as Unix seconds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnixTime(pub i64);

const RFC3339: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

impl UnixTime {
    /// The current time.
    pub fn now() -> Self {
        Self(crate::pki::unix_now())
    }

    /// Unix seconds.
    pub fn secs(self) -> i64 {
        self.0
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| t.format(RFC3339).ok())
        {
            Some(s) => f.write_str(&s),
            // Outside years 0..=9999: never produced by a clock, still printable.
            None => write!(f, "@{}", self.0),
        }
    }
}

impl fmt::Debug for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnixTime({self})")
    }
}

impl FromStr for UnixTime {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, FormatError> {
        const EXPECTED: &str = "RFC 3339 UTC time with seconds, like 2026-11-24T18:54:00Z";
        let t = time::PrimitiveDateTime::parse(s, RFC3339)
            .map_err(|_| FormatError::new(EXPECTED, s))?
            .assume_utc();
        Ok(Self(t.unix_timestamp()))
    }
}

macro_rules! serde_via_str {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_str!(Sha256Hex);
serde_via_str!(HexU64);
serde_via_str!(UnixTime);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sha256_hex_is_strict() {
        let h = Sha256Hex::digest(b"abc");
        let s = h.to_string();
        assert_eq!(
            s,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(s.parse::<Sha256Hex>().unwrap(), h);
        assert!(s.to_uppercase().parse::<Sha256Hex>().is_err());
        assert!(s[..63].parse::<Sha256Hex>().is_err());
        let err = "xyz".parse::<Sha256Hex>().unwrap_err();
        assert_eq!(err.found, "xyz");
        assert_eq!(h.short(8), "ba7816bf");
    }

    #[test]
    fn hex_u64_canonical_and_lenient() {
        assert_eq!(HexU64(0).to_string(), "0x0");
        assert_eq!(HexU64(0xdead_beef).to_string(), "0xdeadbeef");
        assert_eq!(
            "0xffffffffffffffff".parse::<HexU64>().unwrap(),
            HexU64(u64::MAX)
        );
        for bad in [
            "0x",
            "0x00",
            "0xDEAD",
            "dead",
            "0x1_0",
            "0x10000000000000000",
            "",
            "0x-1",
        ] {
            assert!(bad.parse::<HexU64>().is_err(), "{bad}");
        }
        assert_eq!(HexU64::parse_lenient("0X00DEAD").unwrap(), HexU64(0xdead));
        assert_eq!(
            HexU64::parse_lenient("0x0000000000000000").unwrap(),
            HexU64(0)
        );
        assert_eq!(
            HexU64::parse_lenient("0x00000000ffffffffffffffff").unwrap(),
            HexU64(u64::MAX)
        );
        assert!(HexU64::parse_lenient("0x1ffffffffffffffff").is_err());
        assert!(HexU64::parse_lenient("0x+1").is_err());
    }

    #[test]
    fn unix_time_rfc3339() {
        let t: UnixTime = "2026-11-24T18:54:00Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-24T18:54:00Z");
        assert_eq!(UnixTime(0).to_string(), "1970-01-01T00:00:00Z");
        for bad in [
            "2026-11-24T18:54:00+00:00",
            "2026-11-24T18:54:00.5Z",
            "2026-11-24 18:54:00Z",
            "2026-13-24T18:54:00Z",
            "2026-11-24T18:54Z",
        ] {
            assert!(bad.parse::<UnixTime>().is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-24T18:54:00Z\""
        );
    }

    proptest! {
        #[test]
        fn hex_u64_round_trips(v in any::<u64>()) {
            let s = HexU64(v).to_string();
            prop_assert_eq!(s.parse::<HexU64>().unwrap(), HexU64(v));
            prop_assert_eq!(HexU64::parse_lenient(&format!("{v:#018X}")).unwrap(), HexU64(v));
        }

        #[test]
        fn unix_time_round_trips(secs in 0i64..253_402_300_799) {
            let s = UnixTime(secs).to_string();
            prop_assert_eq!(s.parse::<UnixTime>().unwrap(), UnixTime(secs));
        }

        #[test]
        fn parsers_never_panic(s in any::<String>()) {
            let _ = s.parse::<HexU64>();
            let _ = HexU64::parse_lenient(&s);
            let _ = s.parse::<Sha256Hex>();
            let _ = s.parse::<UnixTime>();
        }
    }
}
