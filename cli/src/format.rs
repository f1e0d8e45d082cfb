//! Small helpers for text output.

use std::io::Write;

use serde_json::Value;

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// The first 8 hex digits and an ellipsis; `-` for none.
pub fn short(hash: Option<&str>) -> String {
    match hash {
        Some(h) if h.len() > 8 => format!("{}…", &h[..8]),
        Some(h) => h.to_owned(),
        None => "-".to_owned(),
    }
}

/// `512 bytes`, `1.5 KiB`, `8.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Arguments as a shell would need them typed.
pub fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `12 ms`, `3.4 s`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(short(Some("0123456789abcdef")), "01234567…");
        assert_eq!(short(None), "-");
        assert_eq!(bytes(100), "100 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(8 << 30), "8.0 GiB");
        assert_eq!(
            shell_words(&["a".into(), "two words".into(), "".into(), "it's".into()]),
            r"a 'two words' '' 'it'\''s'"
        );
        assert_eq!(duration_ms(12), "12 ms");
        assert_eq!(duration_ms(3400), "3.4 s");
    }
}
