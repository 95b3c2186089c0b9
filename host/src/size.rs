//! Parsing of memory sizes given on the command line (`--memory 256M`).

/// Smallest guest RAM the host accepts: room for the low-memory boot structures.
pub const MIN_MEMORY: u64 = 2 << 20;
/// Largest guest RAM the host accepts.
pub const MAX_MEMORY: u64 = 1 << 40;

/// Parses `256M`, `1G`, `512K`, `1048576` or `0x100000` into bytes.
///
/// Suffixes are binary (K = 1024) and case-insensitive; an optional trailing
/// `B`/`iB` is accepted (`256MiB`). The result must be a multiple of 4 KiB and
/// within [`MIN_MEMORY`]..=[`MAX_MEMORY`].
pub fn parse_memory_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty size".into());
    }
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let n = if let Some(h) = digits.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
    } else {
        digits.parse::<u64>()
    }
    .map_err(|_| format!("'{s}' is not a size (examples: 256M, 1G, 65536K)"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))?;
    if !bytes.is_multiple_of(4096) {
        return Err(format!("'{s}' is not a multiple of 4 KiB"));
    }
    if bytes < MIN_MEMORY {
        return Err(format!(
            "'{s}' is below the minimum of {} MiB",
            MIN_MEMORY >> 20
        ));
    }
    if bytes > MAX_MEMORY {
        return Err(format!(
            "'{s}' is above the maximum of {} GiB",
            MAX_MEMORY >> 30
        ));
    }
    Ok(bytes)
}

/// Formats a byte count as the largest exact binary unit (`256 MiB`).
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sizes() {
        let cases = [
            ("256M", 256 << 20),
            ("256m", 256 << 20),
            ("256MiB", 256 << 20),
            ("1G", 1 << 30),
            ("4096K", 4 << 20),
            ("2097152", 2 << 20),
            ("0x200000", 2 << 20),
        ];
        for (s, want) in cases {
            assert_eq!(parse_memory_size(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn refused_sizes() {
        for s in [
            "",
            "banana",
            "12Q",
            "1M",
            "3000",
            "4097K",
            "99999999999999999999G",
            "2T",
            "-5M",
        ] {
            assert!(parse_memory_size(s).is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(256 << 20), "256 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1536 << 10), "1536 KiB");
        assert_eq!(format_size(100), "100 bytes");
    }
}
