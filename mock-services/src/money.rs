//! Money as the case study writes it: a decimal string with exactly two
//! decimals (`"189.90"`), held and compared in integer cents.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest amount accepted: 9,999,999,999.99.
const MAX_CENTS: i64 = 999_999_999_999;

/// An amount in cents, never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cents(pub i64);

/// The booking threshold of the case study: a ride is paid above this.
pub const RIDE_THRESHOLD: Cents = Cents(150 * 100);

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl FromStr for Cents {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let err = || {
            format!(
                "expected an amount with exactly two decimals like \"189.90\" (at most \
                 9999999999.99), found {} characters that are not one",
                s.chars().count()
            )
        };
        let (units, decimals) = s.split_once('.').ok_or_else(err)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(units) || units.len() > 10 || decimals.len() != 2 || !digits(decimals) {
            return Err(err());
        }
        let cents = units.parse::<i64>().map_err(|_| err())? * 100
            + decimals.parse::<i64>().map_err(|_| err())?;
        if cents > MAX_CENTS {
            return Err(err());
        }
        Ok(Cents(cents))
    }
}

impl Serialize for Cents {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_two_decimals() {
        for (text, cents) in [("189.90", 18_990), ("0.05", 5), ("150.00", 15_000)] {
            let c: Cents = text.parse().unwrap();
            assert_eq!(c, Cents(cents));
            assert_eq!(c.to_string(), text);
        }
        for bad in [
            "189.9",
            "189",
            ".90",
            "1e3.00",
            "-1.00",
            "1.000",
            "",
            "12345678901.00",
            " 1.00",
        ] {
            assert!(bad.parse::<Cents>().is_err(), "{bad:?}");
        }
        assert!("150.01".parse::<Cents>().unwrap() > RIDE_THRESHOLD);
        assert!("150.00".parse::<Cents>().unwrap() <= RIDE_THRESHOLD);
    }
}
