//! Subscription requests parsed into a `NewSubscription`: an http(s) URL with a host that is a
//! webhook destination (`destination`), and an optional set of known event types.

use event_contract::ChangeType;
use serde_json::Value;

use http_kit::FieldError;

use crate::destination;

const MAX_URL_LENGTH: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub url: String,
    /// `None`: every type.
    pub types: Option<Vec<ChangeType>>,
}

impl NewSubscription {
    pub fn parse(body: &Value, allow_private: bool) -> Result<Self, Vec<FieldError>> {
        let Some(object) = body.as_object() else {
            return Err(vec![FieldError::new("", "the body must be a JSON object")]);
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|key| !["url", "types"].contains(&key.as_str()))
            .map(|key| FieldError::new(key, "is not a field of a subscription"))
            .collect();
        let url = match object.get("url") {
            None | Some(Value::Null) => Err("is required".to_owned()),
            Some(Value::String(url)) => parse_url(url, allow_private),
            Some(_) => Err("must be a string".to_owned()),
        }
        .map_err(|detail| errors.push(FieldError::new("url", &detail)))
        .ok();
        let types = match object.get("types") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => parse_types(items).map(Some),
            Some(_) => Err("must be an array of event types".to_owned()),
        }
        .map_err(|detail| errors.push(FieldError::new("types", &detail)))
        .ok();
        match (url, types) {
            (Some(url), Some(types)) if errors.is_empty() => Ok(Self { url, types }),
            _ => Err(errors),
        }
    }
}

fn parse_types(items: &[Value]) -> Result<Vec<ChangeType>, String> {
    let known = ChangeType::ALL.map(ChangeType::as_str).join(", ");
    if items.is_empty() {
        return Err(format!(
            "must name at least one of {known} (or be left out for all)"
        ));
    }
    let mut types = Vec::new();
    for item in items {
        let change = item
            .as_str()
            .and_then(ChangeType::parse)
            .ok_or_else(|| format!("{item} is not an event type: use {known}"))?;
        if !types.contains(&change) {
            types.push(change);
        }
    }
    Ok(types)
}

fn parse_url(text: &str, allow_private: bool) -> Result<String, String> {
    if text.len() > MAX_URL_LENGTH {
        return Err(format!("must be at most {MAX_URL_LENGTH} characters"));
    }
    let url = url::Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    if url.host().is_none() {
        return Err("must have a host".into());
    }
    if let Some(refusal) = destination::refusal(&url, allow_private) {
        return Err(refusal.into());
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(body: Value, allow_private: bool) -> Vec<String> {
        NewSubscription::parse(&body, allow_private)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn valid_subscriptions() {
        let s = NewSubscription::parse(&json!({"url": "https://hooks.example.com/in"}), false).unwrap();
        assert_eq!(s.url, "https://hooks.example.com/in");
        assert_eq!(s.types, None);
        let s = NewSubscription::parse(
            &json!({"url": "http://127.0.0.1:9000/x", "types": ["event.created", "event.created", "event.deleted"]}),
            true,
        )
        .unwrap();
        assert_eq!(s.types, Some(vec![ChangeType::Created, ChangeType::Deleted]));
    }

    #[test]
    fn bad_urls() {
        for url in [
            "not a url",
            "ftp://example.com/x",
            "http://",
            "mailto:a@b.c",
            "https://u:p@example.com/",
        ] {
            assert_eq!(fields(json!({ "url": url }), true), ["url"], "{url}");
        }
        assert_eq!(fields(json!({}), false), ["url"]);
        assert_eq!(fields(json!({"url": 5}), false), ["url"]);
    }

    #[test]
    fn private_addresses_need_permission() {
        for url in [
            "http://127.0.0.1/x",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
        ] {
            assert_eq!(fields(json!({ "url": url }), false), ["url"], "{url}");
            assert!(
                NewSubscription::parse(&json!({ "url": url }), true).is_ok(),
                "{url}"
            );
        }
        assert!(NewSubscription::parse(&json!({"url": "http://8.8.8.8/"}), false).is_ok());
    }

    #[test]
    fn bad_types() {
        assert_eq!(
            fields(
                json!({"url": "https://e.com", "types": ["event.exploded"]}),
                false
            ),
            ["types"]
        );
        assert_eq!(
            fields(json!({"url": "https://e.com", "types": []}), false),
            ["types"]
        );
        assert_eq!(
            fields(json!({"url": "https://e.com", "types": "event.created"}), false),
            ["types"]
        );
        assert_eq!(
            fields(json!({"url": "https://e.com", "secret": "x"}), false),
            ["secret"]
        );
    }
}
