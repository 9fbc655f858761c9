//! What notify-fn keeps and decides: subscriptions with their health, notifications with their
//! deliveries and attempts, the states they are in, what an attempt came to, and when a
//! failing subscription is disabled.

use std::time::Duration;

use chrono::NaiveDateTime;
use event_contract::{ChangeType, EventData};
use serde::Serialize;

pub struct Subscription {
    pub id: i64,
    pub url: String,
    /// `None`: every type.
    pub types: Option<Vec<ChangeType>>,
    pub created_at: NaiveDateTime,
    pub health: Health,
    /// Set when it failed for too long: nothing is delivered to it until it is enabled again.
    pub disabled: Option<Disabled>,
    /// After a rotation, until when the replaced secret also signs every delivery.
    pub previous_secret_expires_at: Option<NaiveDateTime>,
}

/// How a subscription's endpoint has been answering.
pub struct Health {
    pub last_success_at: Option<NaiveDateTime>,
    /// When the attempts started failing, every one since (`None` while the last succeeded).
    pub failing_since: Option<NaiveDateTime>,
    /// Failed attempts since the last success.
    pub failed_attempts: i32,
    /// Deliveries that failed (their retry schedule spent) since the last success.
    pub failed_deliveries: i32,
}

pub struct Disabled {
    pub at: NaiveDateTime,
    pub reason: String,
}

pub struct Notification {
    pub id: i64,
    pub kind: ChangeType,
    pub status: NotificationStatus,
    pub created_at: NaiveDateTime,
    pub event_id: i64,
    /// The event as the change left it; `None` once erased (the event is deleted and every
    /// notification of it settled: retention keeps no title or description of it).
    pub event: Option<EventData>,
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
    /// The first `MAX_KEPT_BODY` bytes of the answer's body.
    pub response_body: Option<String>,
    pub duration_ms: Option<i32>,
    pub next_attempt_at: Option<NaiveDateTime>,
}

/// A delivery claimed for one attempt.
pub struct Job {
    pub delivery_id: i64,
    /// The claim's fencing token: the attempt's result is recorded only while the delivery
    /// still carries it.
    pub claim: i64,
    /// Attempts made before this one: the position in the retry schedule.
    pub failures: i32,
    pub url: String,
    /// The signing secrets: the current one, then the one a rotation replaced while it is
    /// still honoured.
    pub secrets: Vec<String>,
    pub notification: Notification,
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

/// At most this much of a response body is read, and kept in the attempt log; the rest is
/// never read.
pub const MAX_KEPT_BODY: usize = 4096;

/// What one webhook attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered with this status, and this start of a body.
    Answered { status: u16, body: String },
    /// No (complete) answer: why (refused, timed out, not sent).
    NoAnswer(String),
}

impl AttemptOutcome {
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            Self::NoAnswer(_) => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Answered { status, .. } if (300..400).contains(status) => {
                Some("redirects are not followed: a 3xx answer is a failed attempt")
            }
            Self::Answered { .. } => None,
            Self::NoAnswer(why) => Some(why),
        }
    }

    pub fn body(&self) -> Option<&str> {
        match self {
            Self::Answered { body, .. } => Some(body),
            Self::NoAnswer(_) => None,
        }
    }

    /// What the delivery becomes after this attempt, the `failures` before it: a `2xx` is
    /// delivered; anything else (a redirect too) is retried as the schedule says, or fails
    /// when the schedule is spent.
    pub fn verdict(&self, failures: i32, schedule: &[Duration]) -> Verdict {
        match self.status_code() {
            Some(code) if (200..300).contains(&code) => Verdict::Delivered,
            _ if usize::try_from(failures).is_ok_and(|i| i < schedule.len()) => Verdict::Retry,
            _ => Verdict::Failed,
        }
    }
}

/// What a delivery becomes after an attempt. When a retry is due was decided when the attempt
/// was claimed (so that a dispatcher that stops mid-attempt still moves the delivery along its
/// schedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry,
    Failed,
}

impl Verdict {
    pub fn status(self) -> DeliveryStatus {
        match self {
            Self::Delivered => DeliveryStatus::Delivered,
            Self::Retry => DeliveryStatus::Pending,
            Self::Failed => DeliveryStatus::Failed,
        }
    }
}

/// A subscription's health right after an attempt was recorded.
pub struct AfterAttempt {
    pub subscription_id: i64,
    /// How long every attempt has been failing (`None`: the last one succeeded).
    pub failing_for: Option<Duration>,
    pub failed_deliveries: i32,
    pub disabled: bool,
}

/// When a failing subscription is disabled (like Svix and Stripe do): after its attempts have
/// failed without a success for `failing_for`, or after `failed_deliveries` deliveries in a
/// row have spent their whole retry schedule (0: never for this reason).
pub struct DisablePolicy {
    pub failing_for: Duration,
    pub failed_deliveries: u32,
}

impl DisablePolicy {
    /// Why the subscription should be disabled now, if it should.
    pub fn reason(&self, health: &AfterAttempt) -> Option<String> {
        if health.disabled {
            return None;
        }
        if let Some(failing_for) = health.failing_for
            && failing_for >= self.failing_for
        {
            return Some(format!(
                "every attempt failed for {} s (the limit is {} s)",
                failing_for.as_secs(),
                self.failing_for.as_secs()
            ));
        }
        let failed = u32::try_from(health.failed_deliveries).unwrap_or_default();
        (self.failed_deliveries > 0 && failed >= self.failed_deliveries).then(|| {
            format!(
                "{failed} deliveries in a row failed after every retry (the limit is {})",
                self.failed_deliveries
            )
        })
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

    fn answered(status: u16) -> AttemptOutcome {
        AttemptOutcome::Answered {
            status,
            body: String::new(),
        }
    }

    #[test]
    fn verdicts_follow_the_schedule() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(60)];
        assert_eq!(answered(204).verdict(2, &schedule), Verdict::Delivered);
        assert_eq!(answered(500).verdict(0, &schedule), Verdict::Retry);
        assert_eq!(
            AttemptOutcome::NoAnswer("timeout".into()).verdict(1, &schedule),
            Verdict::Retry
        );
        assert_eq!(answered(301).verdict(2, &schedule), Verdict::Failed);
        assert_eq!(answered(500).verdict(-1, &schedule), Verdict::Failed);
        assert_eq!(Verdict::Retry.status(), DeliveryStatus::Pending);
    }

    #[test]
    fn redirects_are_failures_that_say_so() {
        assert!(answered(302).error().is_some_and(|e| e.contains("redirect")));
        assert_eq!(answered(500).error(), None);
        assert_eq!(answered(200).body(), Some(""));
        assert_eq!(AttemptOutcome::NoAnswer("x".into()).error(), Some("x"));
    }

    #[test]
    fn disabling() {
        let policy = DisablePolicy {
            failing_for: Duration::from_secs(100),
            failed_deliveries: 3,
        };
        let health = |failing_for: Option<u64>, failed_deliveries, disabled| AfterAttempt {
            subscription_id: 1,
            failing_for: failing_for.map(Duration::from_secs),
            failed_deliveries,
            disabled,
        };
        assert!(policy.reason(&health(None, 0, false)).is_none());
        assert!(policy.reason(&health(Some(99), 2, false)).is_none());
        assert!(policy.reason(&health(Some(100), 0, false)).is_some());
        assert!(policy.reason(&health(Some(1), 3, false)).is_some());
        assert!(policy.reason(&health(Some(1000), 9, true)).is_none());
        let never = DisablePolicy {
            failing_for: Duration::from_secs(100),
            failed_deliveries: 0,
        };
        assert!(never.reason(&health(Some(1), 1000, false)).is_none());
    }
}
