//! Collections in pages: the page size, the opaque keyset cursor, the `Link` to the next page,
//! and fetching one row more than a page to know whether another follows.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const DEFAULT_LIMIT: u8 = 50;
pub const MAX_LIMIT: u8 = 200;

/// `limit`: a whole number from 1 to `MAX_LIMIT`.
pub fn parse_limit(text: &str) -> Result<u8, String> {
    match text.parse::<u8>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(format!("must be a whole number from 1 to {MAX_LIMIT}")),
    }
}

/// A position in a walk as clients see it: opaque (unpadded base64url of the position's text).
pub fn encode_cursor(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

/// The position's text of a cursor this API issued.
pub fn decode_cursor(cursor: &str) -> Result<String, String> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(not_a_cursor)
}

/// Why a cursor is refused, whatever is wrong with it.
pub fn not_a_cursor() -> String {
    "is not a cursor this API issued".to_owned()
}

/// One page: at most `limit` items, and whether more follow.
#[derive(Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

impl<T> Page<T> {
    /// How many rows to fetch for a page of `limit`: one more tells whether another follows.
    pub fn fetch_size(limit: u8) -> i64 {
        i64::from(limit) + 1
    }

    /// The page of `fetched` (up to `fetch_size(limit)` rows).
    pub fn of(mut fetched: Vec<T>, limit: u8) -> Self {
        let more = fetched.len() > usize::from(limit);
        fetched.truncate(usize::from(limit));
        Self { items: fetched, more }
    }
}

/// The `Link` header value of the next page of `collection`: the same filters, `limit` and the
/// cursor after the last item.
pub fn next_link(collection: &str, filters: &[(&str, String)], limit: u8, cursor: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in filters {
        query.append_pair(name, value);
    }
    query.append_pair("limit", &limit.to_string());
    query.append_pair("cursor", cursor);
    format!("<{collection}?{}>; rel=\"next\"", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("1"), Ok(1));
        assert_eq!(parse_limit("200"), Ok(200));
        for bad in ["0", "201", "-1", "abc", "", "1.5", "+5x"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let cursor = encode_cursor("2024-11-15|42");
        assert_eq!(cursor, "MjAyNC0xMS0xNXw0Mg");
        assert_eq!(decode_cursor(&cursor).as_deref(), Ok("2024-11-15|42"));
        for forged in ["%%%", "not a cursor!", "MjAyNC0xMS0xNXw0Mg==", "_-8"] {
            assert_eq!(decode_cursor(forged), Err(not_a_cursor()), "{forged}");
        }
    }

    #[test]
    fn pages_fetch_one_more() {
        assert_eq!(Page::<u8>::fetch_size(50), 51);
        assert_eq!(
            Page::of(vec![1, 2, 3], 2),
            Page {
                items: vec![1, 2],
                more: true
            }
        );
        assert_eq!(
            Page::of(vec![1, 2], 2),
            Page {
                items: vec![1, 2],
                more: false
            }
        );
        assert_eq!(
            Page::of(Vec::<u8>::new(), 2),
            Page {
                items: vec![],
                more: false
            }
        );
    }

    #[test]
    fn links_keep_the_filters() {
        assert_eq!(
            next_link("/events", &[("q", "a b&c".to_owned())], 10, "Mw"),
            "</events?q=a+b%26c&limit=10&cursor=Mw>; rel=\"next\""
        );
        assert_eq!(
            next_link("/notifications", &[], 50, "NA"),
            "</notifications?limit=50&cursor=NA>; rel=\"next\""
        );
    }
}
