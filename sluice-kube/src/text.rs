//! Untrusted text inside messages about objects.

/// Quotes untrusted text for a log line or an Event, cut to 64 bytes (on a
/// character boundary) so a huge field cannot flood either.
pub fn quote(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        format!("{s:?}")
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{:?}...", &s[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quotes_are_cut() {
        let q = quote(&"é".repeat(100));
        assert!(q.len() < 80 && q.ends_with("..."));
        assert_eq!(quote("a\"b"), r#""a\"b""#);
    }
}
