//! What notify-fn keeps and decides: subscriptions, notifications with their deliveries and
//! attempts, the states they are in, and what an attempt came to.

use std::time::Duration;

use chrono::NaiveDateTime;
use event_contract::{ChangeType, EventData};
use serde::Serialize;

pub struct Subscription {
    pub id: i64,
    pub url: String,
    /// `None`: every type.
    pub types: Option<Vec<ChangeType>>,
    pub secret: String,
    pub created_at: NaiveDateTime,
}

pub struct Notification {
    pub id: i64,
    pub kind: ChangeType,
    pub status: NotificationStatus,
    pub created_at: NaiveDateTime,
    pub event: EventData,
}

pub struct Delivery {
    pub subscription_id: i64,
    pub url: String,
    pub status: DeliveryStatus,
    /// When the next attempt is due, while the delivery is pending.
    pub next_attempt_at: Option<NaiveDateTime>,
    pub attempts: Vec<Attempt>,
}

pub struct Attempt {
    pub attempted_at: NaiveDateTime,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
}

/// A delivery claimed for one attempt.
pub struct Job {
    pub delivery_id: i64,
    /// Failed attempts so far: the position in the retry schedule.
    pub failures: i32,
    pub notification: Notification,
    pub url: String,
    pub secret: String,
}

/// Where a delivery stands: `pending` until an attempt succeeds (`delivered`) or the retry
/// schedule is spent (`failed`, until redelivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

/// A notification's status sums up its deliveries' in the same three words: pending while one
/// is (or before fan-out), else failed if one failed, else delivered.
pub type NotificationStatus = DeliveryStatus;

impl DeliveryStatus {
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    /// As the `status` columns (and the API) write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// What one webhook attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered with this status code.
    Answered(u16),
    /// No answer: why (refused, timed out, not sent).
    NoAnswer(String),
}

impl AttemptOutcome {
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Answered(code) => Some(*code),
            Self::NoAnswer(_) => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Answered(_) => None,
            Self::NoAnswer(why) => Some(why),
        }
    }

    /// What the delivery becomes after this attempt, the `failures` before it: a `2xx` is
    /// delivered; anything else is retried after the schedule's next delay, or fails when the
    /// schedule is spent.
    pub fn verdict(&self, failures: i32, schedule: &[Duration]) -> Verdict {
        match self.status_code() {
            Some(code) if (200..300).contains(&code) => Verdict::Delivered,
            _ => match usize::try_from(failures).ok().and_then(|i| schedule.get(i)) {
                Some(delay) => Verdict::RetryAfter(*delay),
                None => Verdict::Failed,
            },
        }
    }
}

/// What a delivery becomes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    RetryAfter(Duration),
    Failed,
}

impl Verdict {
    pub fn status(self) -> DeliveryStatus {
        match self {
            Self::Delivered => DeliveryStatus::Delivered,
            Self::RetryAfter(_) => DeliveryStatus::Pending,
            Self::Failed => DeliveryStatus::Failed,
        }
    }
}

/// Filters of `GET /notifications`.
pub struct NotificationFilter {
    pub event_id: Option<i64>,
    pub status: Option<NotificationStatus>,
    pub after_id: Option<i64>,
    pub limit: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        assert_eq!(DeliveryStatus::parse("lost"), None);
    }

    #[test]
    fn verdicts_follow_the_schedule() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(60)];
        assert_eq!(
            AttemptOutcome::Answered(204).verdict(1, &schedule),
            Verdict::Delivered
        );
        assert_eq!(
            AttemptOutcome::Answered(500).verdict(0, &schedule),
            Verdict::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(
            AttemptOutcome::NoAnswer("timeout".into()).verdict(1, &schedule),
            Verdict::RetryAfter(Duration::from_secs(60))
        );
        assert_eq!(
            AttemptOutcome::Answered(301).verdict(2, &schedule),
            Verdict::Failed
        );
        assert_eq!(
            AttemptOutcome::Answered(500).verdict(-1, &schedule),
            Verdict::Failed
        );
        assert_eq!(
            Verdict::RetryAfter(Duration::ZERO).status(),
            DeliveryStatus::Pending
        );
    }
}
