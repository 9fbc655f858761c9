//! The public API: subscriptions and the notifications with their delivery attempts.

use std::rc::Rc;

use chrono::NaiveDateTime;
use event_contract::{ChangeType, EventData, rfc3339_utc};
use http_kit::page::{self, DEFAULT_LIMIT, Page, decode_cursor, encode_cursor, not_a_cursor, parse_limit};
use http_kit::{FieldError, Problem, Reply, Route, json_body, json_response, parse_id, route};
use serde::Serialize;
use spin_sdk::http::{Method, Params, Request, Response};

use crate::model::{
    Attempt, Delivery, DeliveryStatus, Health, Notification, NotificationFilter, Subscription,
};
use crate::store::{Redelivery, Store};
use crate::subscription::NewSubscription;
use crate::{
    Config, ENABLE, NOTIFICATION, NOTIFICATIONS, REDELIVER, ROTATE_SECRET, SUBSCRIPTION, SUBSCRIPTIONS,
};

pub async fn subscriptions(config: Rc<Config>, request: Request, _: Params) -> Reply {
    match request.method() {
        Method::Get => list_subscriptions(&config),
        Method::Post => create_subscription(&config, &request),
        _ => Err(SUBSCRIPTIONS.method_not_allowed()),
    }
}

pub async fn subscription(config: Rc<Config>, request: Request, params: Params) -> Reply {
    let id = route::id(&params, "subscription")?;
    match request.method() {
        Method::Get => get_subscription(&config, id),
        Method::Delete => delete_subscription(&config, id),
        _ => Err(SUBSCRIPTION.method_not_allowed()),
    }
}

pub async fn enable(config: Rc<Config>, request: Request, params: Params) -> Reply {
    enable_subscription(
        &config,
        only(ENABLE, Method::Post, &request, &params, "subscription")?,
    )
}

pub async fn rotate_secret(config: Rc<Config>, request: Request, params: Params) -> Reply {
    let id = only(ROTATE_SECRET, Method::Post, &request, &params, "subscription")?;
    rotate_subscription_secret(&config, id)
}

pub async fn notifications(config: Rc<Config>, request: Request, _: Params) -> Reply {
    match request.method() {
        Method::Get => list_notifications(&config, &request),
        _ => Err(NOTIFICATIONS.method_not_allowed()),
    }
}

pub async fn notification(config: Rc<Config>, request: Request, params: Params) -> Reply {
    get_notification(
        &config,
        only(NOTIFICATION, Method::Get, &request, &params, "notification")?,
    )
}

pub async fn redeliver(config: Rc<Config>, request: Request, params: Params) -> Reply {
    redeliver_notification(
        &config,
        only(REDELIVER, Method::Post, &request, &params, "notification")?,
    )
}

/// The `:id` (of a `thing`) of a resource that allows one method: its 405 for any other.
fn only(
    resource: Route,
    method: Method,
    request: &Request,
    params: &Params,
    thing: &str,
) -> Result<i64, Problem> {
    if *request.method() != method {
        return Err(resource.method_not_allowed());
    }
    route::id(params, thing)
}

fn open(config: &Config) -> Result<Store, Problem> {
    Ok(Store::open(&config.db_url)?)
}

fn list_subscriptions(config: &Config) -> Reply {
    let all = open(config)?.subscriptions()?;
    let body: Vec<SubscriptionBody> = all.iter().map(|s| SubscriptionBody::of(s, None)).collect();
    Ok(json_response(200, &body))
}

fn create_subscription(config: &Config, request: &Request) -> Reply {
    let body = json_body(request, &["application/json"], "application/json")?;
    let new = NewSubscription::parse(&body, config.allow_private_webhooks)
        .map_err(|errors| Problem::invalid("the subscription is not valid", errors))?;
    let (created, secret) = open(config)?.create_subscription(&new.url, new.types.as_deref())?;
    let mut response = json_response(201, &SubscriptionBody::of(&created, Some(&secret)));
    response.set_header("location", format!("/subscriptions/{}", created.id));
    Ok(response)
}

fn get_subscription(config: &Config, id: i64) -> Reply {
    let found = open(config)?
        .subscription(id)?
        .ok_or_else(|| no_subscription(id))?;
    Ok(json_response(200, &SubscriptionBody::of(&found, None)))
}

fn enable_subscription(config: &Config, id: i64) -> Reply {
    let enabled = open(config)?
        .enable_subscription(id)?
        .ok_or_else(|| no_subscription(id))?;
    Ok(json_response(200, &SubscriptionBody::of(&enabled, None)))
}

fn rotate_subscription_secret(config: &Config, id: i64) -> Reply {
    let (rotated, secret) = open(config)?
        .rotate_secret(id, config.secret_rotation_grace)?
        .ok_or_else(|| no_subscription(id))?;
    Ok(json_response(200, &SubscriptionBody::of(&rotated, Some(&secret))))
}

fn delete_subscription(config: &Config, id: i64) -> Reply {
    match open(config)?.delete_subscription(id)? {
        true => Ok(Response::builder().status(204).build()),
        false => Err(no_subscription(id)),
    }
}

fn list_notifications(config: &Config, request: &Request) -> Reply {
    let filter = parse_filter(request.query())
        .map_err(|errors| Problem::invalid("the query parameters are not valid", errors))?;
    let Page { items, more } = open(config)?.notifications(&filter)?;
    let body: Vec<NotificationBody> = items.iter().map(NotificationBody::of).collect();
    let mut response = json_response(200, &body);
    if let (true, Some(last)) = (more, items.last()) {
        let mut filters = Vec::new();
        if let Some(event_id) = filter.event_id {
            filters.push(("event_id", event_id.to_string()));
        }
        if let Some(status) = filter.status {
            filters.push(("status", status.as_str().to_owned()));
        }
        let cursor = encode_cursor(&last.id.to_string());
        response.set_header(
            "link",
            page::next_link(NOTIFICATIONS.path, &filters, filter.limit, &cursor),
        );
    }
    Ok(response)
}

fn get_notification(config: &Config, id: i64) -> Reply {
    let (notification, deliveries) = open(config)?
        .notification(id)?
        .ok_or_else(|| no_notification(id))?;
    Ok(json_response(
        200,
        &NotificationDetail {
            notification: NotificationBody::of(&notification),
            deliveries: deliveries.iter().map(DeliveryBody::of).collect(),
        },
    ))
}

fn redeliver_notification(config: &Config, id: i64) -> Reply {
    match open(config)?.redeliver(id)? {
        Redelivery::Restarted => Ok(Response::builder().status(202).build()),
        Redelivery::NotFound => Err(no_notification(id)),
        Redelivery::Erased => Err(Problem::new(
            409,
            "Conflict",
            format!(
                "notification {id} cannot be delivered again: its event was deleted and its content erased"
            ),
        )),
    }
}

fn no_subscription(id: i64) -> Problem {
    Problem::not_found(format!("there is no subscription {id}"))
}

fn no_notification(id: i64) -> Problem {
    Problem::not_found(format!("there is no notification {id}"))
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
        let mut reject = |detail: &str| errors.push(FieldError::new(&name, detail));
        match name.as_ref() {
            "event_id" => match parse_id(&value) {
                Some(id) => filter.event_id = Some(id),
                None => reject("must be a positive integer"),
            },
            "status" => match DeliveryStatus::parse(&value) {
                Some(status) => filter.status = Some(status),
                None => reject("must be pending, delivered or failed"),
            },
            "limit" => match parse_limit(&value) {
                Ok(limit) => filter.limit = limit,
                Err(detail) => reject(&detail),
            },
            "cursor" => match decode_cursor(&value).ok().and_then(|id| parse_id(&id)) {
                Some(id) => filter.after_id = Some(id),
                None => reject(&not_a_cursor()),
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

/// A subscription with its health; its signing secret only when it is created or rotated.
#[derive(Serialize)]
struct SubscriptionBody<'a> {
    id: i64,
    url: &'a str,
    types: Option<&'a [ChangeType]>,
    created_at: String,
    disabled_at: Option<String>,
    disabled_reason: Option<&'a str>,
    previous_secret_expires_at: Option<String>,
    health: HealthBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

impl<'a> SubscriptionBody<'a> {
    fn of(subscription: &'a Subscription, secret: Option<&'a str>) -> Self {
        Self {
            id: subscription.id,
            url: &subscription.url,
            types: subscription.types.as_deref(),
            created_at: rfc3339_utc(subscription.created_at),
            disabled_at: timestamp(subscription.disabled.as_ref().map(|d| d.at)),
            disabled_reason: subscription.disabled.as_ref().map(|d| d.reason.as_str()),
            previous_secret_expires_at: timestamp(subscription.previous_secret_expires_at),
            health: HealthBody::of(&subscription.health),
            secret,
        }
    }
}

#[derive(Serialize)]
struct HealthBody {
    last_success_at: Option<String>,
    failing_since: Option<String>,
    consecutive_failed_attempts: i32,
    consecutive_failed_deliveries: i32,
}

impl HealthBody {
    fn of(health: &Health) -> Self {
        Self {
            last_success_at: timestamp(health.last_success_at),
            failing_since: timestamp(health.failing_since),
            consecutive_failed_attempts: health.failed_attempts,
            consecutive_failed_deliveries: health.failed_deliveries,
        }
    }
}

#[derive(Serialize)]
struct NotificationBody<'a> {
    id: i64,
    #[serde(rename = "type")]
    kind: ChangeType,
    event_id: i64,
    status: DeliveryStatus,
    created_at: String,
    /// `None` once erased.
    data: Option<&'a EventData>,
}

impl<'a> NotificationBody<'a> {
    fn of(notification: &'a Notification) -> Self {
        Self {
            id: notification.id,
            kind: notification.kind,
            event_id: notification.event_id,
            status: notification.status,
            created_at: rfc3339_utc(notification.created_at),
            data: notification.event.as_ref(),
        }
    }
}

/// A notification with every delivery and attempt.
#[derive(Serialize)]
struct NotificationDetail<'a> {
    #[serde(flatten)]
    notification: NotificationBody<'a>,
    deliveries: Vec<DeliveryBody<'a>>,
}

#[derive(Serialize)]
struct DeliveryBody<'a> {
    subscription_id: i64,
    url: &'a str,
    status: DeliveryStatus,
    next_attempt_at: Option<String>,
    attempts: Vec<AttemptBody<'a>>,
}

impl<'a> DeliveryBody<'a> {
    fn of(delivery: &'a Delivery) -> Self {
        Self {
            subscription_id: delivery.subscription_id,
            url: &delivery.url,
            status: delivery.status,
            next_attempt_at: timestamp(delivery.next_attempt_at),
            attempts: delivery.attempts.iter().map(AttemptBody::of).collect(),
        }
    }
}

#[derive(Serialize)]
struct AttemptBody<'a> {
    attempted_at: String,
    status_code: Option<i32>,
    error: Option<&'a str>,
    response_body: Option<&'a str>,
    duration_ms: Option<i32>,
    next_attempt_at: Option<String>,
}

impl<'a> AttemptBody<'a> {
    fn of(attempt: &'a Attempt) -> Self {
        Self {
            attempted_at: rfc3339_utc(attempt.attempted_at),
            status_code: attempt.status_code,
            error: attempt.error.as_deref(),
            response_body: attempt.response_body.as_deref(),
            duration_ms: attempt.duration_ms,
            next_attempt_at: timestamp(attempt.next_attempt_at),
        }
    }
}

fn timestamp(at: Option<NaiveDateTime>) -> Option<String> {
    at.map(rfc3339_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(query: &str) -> Vec<String> {
        parse_filter(query)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn notification_filters() {
        let filter = parse_filter("event_id=4&status=failed&limit=2&cursor=Nw").unwrap();
        assert_eq!(filter.event_id, Some(4));
        assert_eq!(filter.status, Some(DeliveryStatus::Failed));
        assert_eq!((filter.limit, filter.after_id), (2, Some(7)));
        assert_eq!(parse_filter("").unwrap().limit, DEFAULT_LIMIT);
        for (query, field) in [
            ("status=lost", "status"),
            ("event_id=x", "event_id"),
            ("event_id=07", "event_id"),
            ("limit=0", "limit"),
            ("cursor=%%%", "cursor"),
            ("cursor=LTE", "cursor"),
        ] {
            assert_eq!(fields(query), [field], "{query}");
        }
    }
}
