//! Ids in paths and parameters.

/// A canonical positive integer (`7`, not `07`, `+7` or `7.0`): anything else names nothing.
pub fn parse_id(text: &str) -> Option<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && id.to_string() == text)
}

#[cfg(test)]
mod tests {
    use super::parse_id;

    #[test]
    fn only_canonical_positive_integers_are_ids() {
        assert_eq!(parse_id("1"), Some(1));
        assert_eq!(parse_id("9223372036854775807"), Some(i64::MAX));
        for bad in [
            "0",
            "-1",
            "007",
            "+7",
            "1.5",
            "abc",
            "",
            " 1",
            "1 ",
            "99999999999999999999",
            "１",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
