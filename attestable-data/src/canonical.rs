//! Canonical JSON, as `docs/PROTOCOL.md` (Evidence) defines it.
//!
//! - object keys sorted by their UTF-8 bytes, at every level;
//! - no whitespace outside strings;
//! - integers only (no fractions, no exponents);
//! - strings escaped minimally: `\"`, `\\`, and `\u00xx` (lowercase hex) for
//!   the control characters U+0000 to U+001F; every other character, `/` and
//!   non-ASCII included, is written as itself in UTF-8.
//!
//! Keys are sorted here explicitly rather than by relying on how
//! `serde_json::Map` happens to be configured: another crate of the workspace
//! turning on serde_json's `preserve_order` feature must not change what the
//! launcher signs.

use serde::Serialize;
use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    /// The value holds a number with a fraction or an exponent.
    #[error("canonical JSON has integers only; found the number {0}")]
    NotAnInteger(String),
    /// The value could not be turned into JSON at all.
    #[error("not representable as JSON: {0}")]
    Serialize(String),
}

/// The canonical JSON bytes of any serializable value.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value =
        serde_json::to_value(value).map_err(|e| CanonicalError::Serialize(e.to_string()))?;
    value_to_vec(&value)
}

/// The canonical JSON bytes of a JSON value.
pub fn value_to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value)?;
    Ok(out)
}

/// True when `bytes` are exactly the canonical form of the JSON they hold:
/// valid UTF-8 JSON, no duplicate keys, and byte-for-byte what [`value_to_vec`]
/// writes for it.
pub fn is_canonical(bytes: &[u8]) -> bool {
    // A duplicate key collapses in `Value`, so re-encoding comes out shorter.
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| value_to_vec(&v).ok())
        .is_some_and(|again| again == bytes)
}

fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(CanonicalError::NotAnInteger(n.to_string()));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // `str` orders by bytes, which for UTF-8 is the order the spec asks for.
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_value(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        String::from_utf8(value_to_vec(&v).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_at_every_level_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"z": [3, {"y": null, "x": true}], "c": false}, "A": "s"});
        assert_eq!(
            canon(v),
            r#"{"A":"s","a":{"c":false,"z":[3,{"x":true,"y":null}]},"b":1}"#
        );
    }

    #[test]
    fn keys_sort_by_utf8_bytes_not_by_utf16_or_locale() {
        // U+00E9 (c3 a9) sorts after "z"; U+1F600 (f0 ..) after U+FB01 (ef ..),
        // although UTF-16 code units would put the emoji (d83d ..) first.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2, "z": 3, "\u{e9}": 4, "Z": 5});
        assert_eq!(
            canon(v),
            "{\"Z\":5,\"z\":3,\"\u{e9}\":4,\"\u{fb01}\":1,\"\u{1f600}\":2}"
        );
    }

    #[test]
    fn escapes_minimally() {
        let v = json!(
            "quote \" backslash \\ slash / nl \n tab \t nul \u{0} us \u{1f} del \u{7f} é 😀 \u{2028}"
        );
        assert_eq!(
            canon(v),
            "\"quote \\\" backslash \\\\ slash / nl \\u000a tab \\u0009 nul \\u0000 us \\u001f del \u{7f} é 😀 \u{2028}\""
        );
    }

    #[test]
    fn integers_only() {
        assert_eq!(
            canon(json!([0, -1, i64::MIN, u64::MAX])),
            format!("[0,-1,{},{}]", i64::MIN, u64::MAX)
        );
        let err = value_to_vec(&json!({"a": 1.5})).unwrap_err();
        assert_eq!(err, CanonicalError::NotAnInteger("1.5".into()));
        assert!(value_to_vec(&json!(1e3)).is_err(), "1e3 parses as a float");
    }

    #[test]
    fn empty_containers() {
        assert_eq!(
            canon(json!({"a": {}, "b": [], "c": ""})),
            r#"{"a":{},"b":[],"c":""}"#
        );
    }

    #[test]
    fn recognises_canonical_bytes() {
        assert!(is_canonical(br#"{"a":1,"b":[true,null]}"#));
        assert!(!is_canonical(br#"{"b":1,"a":1}"#), "unsorted");
        assert!(!is_canonical(br#"{"a": 1}"#), "whitespace");
        assert!(!is_canonical(br#"{"a":1,"a":1}"#), "duplicate key");
        assert!(!is_canonical(br#""\n""#), "short escape");
        assert!(!is_canonical(br#""\u00e9""#), "needless escape");
        assert!(!is_canonical(br#"{"a":1.0}"#), "fraction");
        assert!(!is_canonical(b"{\"a\":1}\n"), "trailing newline");
        assert!(!is_canonical(b"\xff"), "not UTF-8");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_form_parses_back_to_the_same_value_and_is_a_fixed_point(v in arb_json()) {
            let bytes = value_to_vec(&v).unwrap();
            let back: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert!(is_canonical(&bytes));
            // Re-encoding what serde_json prints (any whitespace, escapes, order) converges.
            let pretty = serde_json::to_vec_pretty(&v).unwrap();
            let reparsed: Value = serde_json::from_slice(&pretty).unwrap();
            prop_assert_eq!(value_to_vec(&reparsed).unwrap(), bytes);
        }

        #[test]
        fn strings_hold_no_raw_control_characters(s in any::<String>()) {
            let bytes = value_to_vec(&Value::String(s)).unwrap();
            prop_assert!(bytes.iter().all(|&b| b >= 0x20));
        }
    }
}
