//! The public API: subscriptions and the notifications with their delivery attempts.

use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDateTime;
use event_contract::rfc3339_utc;
use serde_json::{Value, json};
use spin_sdk::http::{Method, Params, Request, Response, Router};

use crate::Config;
use crate::problem::{FieldError, Problem};
use crate::store::{Delivery, Notification, NotificationFilter, Store, Subscription, Unavailable};
use crate::subscription::NewSubscription;

const MAX_BODY_BYTES: usize = 64 * 1024;
const DEFAULT_LIMIT: u8 = 50;
const MAX_LIMIT: u8 = 200;

type Reply = Result<Response, Problem>;

/// Checks `Authorization: Bearer <expected>` in constant time.
pub fn authenticate(request: &Request, expected: &str) -> Result<(), Problem> {
    let Some(header) = request.header("authorization").and_then(|h| h.as_str()) else {
        return Err(Problem::unauthorized("send Authorization: Bearer <token>", false));
    };
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim().as_bytes(),
        _ => {
            return Err(Problem::unauthorized(
                "the Authorization scheme must be Bearer",
                true,
            ));
        }
    };
    let expected = expected.as_bytes();
    let equal = token.len() == expected.len()
        && token.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if equal {
        Ok(())
    } else {
        Err(Problem::unauthorized("the bearer token is not valid", true))
    }
}

pub async fn route(config: Config, request: Request) -> Response {
    let config = Rc::new(config);
    let mut router = Router::new();
    let shared = config.clone();
    router.any("/subscriptions", move |request: Request, _: Params| {
        respond(subscriptions(&shared, &request))
    });
    let shared = config.clone();
    router.any("/subscriptions/:id", move |request: Request, params: Params| {
        respond(subscription(
            &shared,
            &request,
            params.get("id").unwrap_or_default(),
        ))
    });
    let shared = config.clone();
    router.any("/notifications", move |request: Request, _: Params| {
        respond(notifications(&shared, &request))
    });
    let shared = config.clone();
    router.any("/notifications/:id", move |request: Request, params: Params| {
        respond(notification(
            &shared,
            &request,
            params.get("id").unwrap_or_default(),
        ))
    });
    router.any(
        "/notifications/:id/redeliver",
        move |request: Request, params: Params| {
            respond(redeliver(&config, &request, params.get("id").unwrap_or_default()))
        },
    );
    router.any("/*", |request: Request, _: Params| {
        Response::from(Problem::not_found(format!(
            "{} is not a resource of this API",
            request.path()
        )))
    });
    router.handle_async(request).await
}

fn respond(reply: Reply) -> Response {
    reply.unwrap_or_else(Response::from)
}

impl From<Unavailable> for Problem {
    fn from(_: Unavailable) -> Self {
        Problem::unavailable()
    }
}

fn open(config: &Config) -> Result<Store, Problem> {
    Ok(Store::open(&config.db_url)?)
}

fn subscriptions(config: &Config, request: &Request) -> Reply {
    match request.method() {
        Method::Get => {
            let all: Vec<Value> = open(config)?
                .subscriptions()?
                .iter()
                .map(|s| subscription_json(s, false))
                .collect();
            Ok(json_response(200, &Value::Array(all)))
        }
        Method::Post => {
            let body = json_body(request)?;
            let new = NewSubscription::parse(&body, config.allow_private_webhooks)
                .map_err(|errors| Problem::invalid("the subscription is not valid", errors))?;
            let created = open(config)?.create_subscription(&new.url, new.types.as_deref())?;
            let mut response = json_response(201, &subscription_json(&created, true));
            response.set_header("location", format!("/subscriptions/{}", created.id));
            Ok(response)
        }
        _ => Err(Problem::method_not_allowed("GET, POST")),
    }
}

fn subscription(config: &Config, request: &Request, id: &str) -> Reply {
    let id = parse_id(id).ok_or_else(|| Problem::not_found(format!("there is no subscription {id:?}")))?;
    let missing = || Problem::not_found(format!("there is no subscription {id}"));
    match request.method() {
        Method::Get => {
            let found = open(config)?.subscription(id)?.ok_or_else(missing)?;
            Ok(json_response(200, &subscription_json(&found, false)))
        }
        Method::Delete => match open(config)?.delete_subscription(id)? {
            true => Ok(Response::builder().status(204).build()),
            false => Err(missing()),
        },
        _ => Err(Problem::method_not_allowed("GET, DELETE")),
    }
}

fn notifications(config: &Config, request: &Request) -> Reply {
    if *request.method() != Method::Get {
        return Err(Problem::method_not_allowed("GET"));
    }
    let filter = parse_filter(request.query())
        .map_err(|errors| Problem::invalid("the query parameters are not valid", errors))?;
    let (found, more) = open(config)?.notifications(&filter)?;
    let mut response = json_response(200, &Value::Array(found.iter().map(notification_json).collect()));
    if let (true, Some(last)) = (more, found.last()) {
        let mut next = form_urlencoded::Serializer::new(String::new());
        if let Some(event_id) = filter.event_id {
            next.append_pair("event_id", &event_id.to_string());
        }
        if let Some(status) = &filter.status {
            next.append_pair("status", status);
        }
        next.append_pair("limit", &filter.limit.to_string());
        next.append_pair("cursor", &URL_SAFE_NO_PAD.encode(last.id.to_string()));
        response.set_header(
            "link",
            format!("</notifications?{}>; rel=\"next\"", next.finish()),
        );
    }
    Ok(response)
}

fn notification(config: &Config, request: &Request, id: &str) -> Reply {
    if *request.method() != Method::Get {
        return Err(Problem::method_not_allowed("GET"));
    }
    let id = parse_id(id).ok_or_else(|| Problem::not_found(format!("there is no notification {id:?}")))?;
    let (notification, deliveries) = open(config)?
        .notification(id)?
        .ok_or_else(|| Problem::not_found(format!("there is no notification {id}")))?;
    let mut body = notification_json(&notification);
    body["deliveries"] = Value::Array(deliveries.iter().map(delivery_json).collect());
    Ok(json_response(200, &body))
}

fn redeliver(config: &Config, request: &Request, id: &str) -> Reply {
    if *request.method() != Method::Post {
        return Err(Problem::method_not_allowed("POST"));
    }
    let id = parse_id(id).ok_or_else(|| Problem::not_found(format!("there is no notification {id:?}")))?;
    match open(config)?.redeliver(id)? {
        true => Ok(Response::builder().status(202).build()),
        false => Err(Problem::not_found(format!("there is no notification {id}"))),
    }
}

fn parse_id(text: &str) -> Option<i64> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && id.to_string() == text)
}

fn parse_filter(query: &str) -> Result<NotificationFilter, Vec<FieldError>> {
    let mut filter = NotificationFilter {
        event_id: None,
        status: None,
        after_id: None,
        limit: DEFAULT_LIMIT,
    };
    let mut errors = Vec::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "event_id" => match parse_id(&value) {
                Some(id) => filter.event_id = Some(id),
                None => errors.push(FieldError::new("event_id", "must be a positive integer")),
            },
            "status" => match value.as_ref() {
                "pending" | "delivered" | "failed" => filter.status = Some(value.into_owned()),
                _ => errors.push(FieldError::new("status", "must be pending, delivered or failed")),
            },
            "limit" => match value.parse::<u8>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => filter.limit = limit,
                _ => errors.push(FieldError::new(
                    "limit",
                    &format!("must be a whole number from 1 to {MAX_LIMIT}"),
                )),
            },
            "cursor" => match URL_SAFE_NO_PAD
                .decode(value.as_bytes())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| parse_id(&text))
            {
                Some(id) => filter.after_id = Some(id),
                None => errors.push(FieldError::new("cursor", "is not a cursor this API issued")),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(filter)
    } else {
        Err(errors)
    }
}

fn json_body(request: &Request) -> Result<Value, Problem> {
    if request.body().len() > MAX_BODY_BYTES {
        return Err(Problem::payload_too_large(MAX_BODY_BYTES));
    }
    if request.body().iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::invalid_field("", "a JSON body is required"));
    }
    let media_type = request.header("content-type").and_then(|h| h.as_str()).map(|h| {
        h.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    });
    if media_type.as_deref() != Some("application/json") {
        return Err(Problem::unsupported_media_type());
    }
    serde_json::from_slice(request.body())
        .map_err(|e| Problem::invalid_field("", &format!("the body is not valid JSON: {e}")))
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
        .build()
}

fn timestamp(at: Option<NaiveDateTime>) -> Value {
    at.map_or(Value::Null, |at| Value::String(rfc3339_utc(at)))
}

/// A subscription; its signing secret only when it is created.
fn subscription_json(subscription: &Subscription, with_secret: bool) -> Value {
    let mut body = json!({
        "id": subscription.id,
        "url": subscription.url,
        "types": subscription.types,
        "created_at": rfc3339_utc(subscription.created_at),
    });
    if with_secret {
        body["secret"] = Value::String(subscription.secret.clone());
    }
    body
}

fn notification_json(notification: &Notification) -> Value {
    json!({
        "id": notification.id,
        "type": notification.kind,
        "event_id": notification.event.id,
        "status": notification.status,
        "created_at": rfc3339_utc(notification.created_at),
        "data": notification.event,
    })
}

fn delivery_json(delivery: &Delivery) -> Value {
    json!({
        "subscription_id": delivery.subscription_id,
        "url": delivery.url,
        "status": delivery.status,
        "next_attempt_at": timestamp(delivery.next_attempt_at),
        "attempts": delivery.attempts.iter().map(|a| json!({
            "attempted_at": rfc3339_utc(a.attempted_at),
            "status_code": a.status_code,
            "error": a.error,
            "next_attempt_at": timestamp(a.next_attempt_at),
        })).collect::<Vec<_>>(),
    })
}
