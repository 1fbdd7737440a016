//! Parking: an event that reached us but could not be stored (DynamoDB unreachable, throttled,
//! contended, slow) is put on the SQS queue `parked` and answered `202 parked`, so it is never
//! lost; the redrive function applies it later through the very same transaction.
//!
//! A [`ParkedEvent`] holds what that needs and no secret: the normalized event (tokens are never
//! part of it), the SHA-256 of the presented `application_token`, the receive time (so the
//! redriven transaction writes the same records and TTLs), the authorization decided at the
//! webhook when the portal could be read, and the idempotency key for a consistency check.

use b24_events::Event;
use b24_state::{Authorization, TokenHash};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

/// Version of the parked message layout.
pub const PARKED_VERSION: u32 = 1;
/// Above this size the normalized event is parked gzip-compressed (SQS messages hold at most
/// 1 MiB; a 1 MiB body's normalized JSON can be larger, but never compressed).
pub const COMPRESS_ABOVE_BYTES: usize = 192 * 1024;

/// One parked event, as the message body of the `parked` queue (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParkedEvent {
    /// [`PARKED_VERSION`].
    pub version: u32,
    /// The normalized event (schema v1.1), when small enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
    /// The normalized event, gzip-compressed and base64-encoded, when large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_gzip: Option<String>,
    /// The event code (for logs and metrics without decoding the event).
    pub event_code: String,
    /// The portal.
    pub member_id: String,
    /// SHA-256 of the presented `application_token`.
    pub token_hash: TokenHash,
    /// Receive time (Unix seconds).
    pub received_at: i64,
    /// Why it was parked (`unavailable: ...`, `timeout`, ...).
    pub reason: String,
    /// The authorization decided at the webhook; `None` when the portal could not be read (the
    /// redrive authenticates it then).
    pub authorization: Option<Authorization>,
    /// For an install verified through the OAuth server: the endpoint it named.
    #[serde(default)]
    pub verified_client_endpoint: Option<String>,
}

/// Why a parked message cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParkedError {
    /// Not a parked message of a known version.
    #[error("malformed parked message: {0}")]
    Malformed(String),
}

impl ParkedEvent {
    /// A parked message for `event`.
    pub fn new(
        event: &Event,
        token_hash: TokenHash,
        received_at: i64,
        reason: String,
        authorization: Option<Authorization>,
        verified_client_endpoint: Option<String>,
    ) -> ParkedEvent {
        let json = event.to_json();
        let text = json.to_string();
        let (event_json, event_gzip) = if text.len() > COMPRESS_ABOVE_BYTES {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            // Writing into a Vec cannot fail.
            let _ = gz.write_all(text.as_bytes());
            let bytes = gz.finish().unwrap_or_default();
            (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            )
        } else {
            (Some(json), None)
        };
        ParkedEvent {
            version: PARKED_VERSION,
            event: event_json,
            event_gzip,
            event_code: event.kind().code().to_string(),
            member_id: event.auth.member_id.clone(),
            token_hash,
            received_at,
            reason,
            authorization,
            verified_client_endpoint,
        }
    }

    /// The message body.
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a message body.
    pub fn from_body(body: &str) -> Result<ParkedEvent, ParkedError> {
        let p: ParkedEvent =
            serde_json::from_str(body).map_err(|e| ParkedError::Malformed(e.to_string()))?;
        if p.version != PARKED_VERSION {
            return Err(ParkedError::Malformed(format!("version {}", p.version)));
        }
        Ok(p)
    }

    /// The event (tokens absent: they are never parked).
    pub fn event(&self) -> Result<Event, ParkedError> {
        let json = match (&self.event, &self.event_gzip) {
            (Some(v), _) => v.clone(),
            (None, Some(gz)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(gz)
                    .map_err(|_| ParkedError::Malformed("event_gzip is not base64".into()))?;
                let mut text = String::new();
                // Bounded: a parked message is at most 1 MiB, its event at most a few MB.
                flate2::read::GzDecoder::new(&bytes[..])
                    .take(16 * 1024 * 1024)
                    .read_to_string(&mut text)
                    .map_err(|_| ParkedError::Malformed("event_gzip is not gzip".into()))?;
                serde_json::from_str(&text)
                    .map_err(|_| ParkedError::Malformed("event_gzip is not JSON".into()))?
            }
            (None, None) => return Err(ParkedError::Malformed("no event".into())),
        };
        let event =
            Event::from_normalized(&json).map_err(|e| ParkedError::Malformed(e.to_string()))?;
        if event.auth.member_id != self.member_id || event.kind().code() != self.event_code {
            return Err(ParkedError::Malformed(
                "member_id or event code differ from the event".into(),
            ));
        }
        Ok(event)
    }
}

/// Why parking failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParkError {
    /// No queue is configured (`PARKED_QUEUE_URL`).
    #[error("no parked queue configured")]
    NotConfigured,
    /// SQS did not take the message.
    #[error("SQS SendMessage failed: {0}")]
    Send(String),
}

/// Where parked events go.
pub trait Parker: Send + Sync + 'static {
    /// Puts `event` on the queue.
    fn park(
        &self,
        event: &ParkedEvent,
    ) -> impl std::future::Future<Output = Result<(), ParkError>> + Send;
}

/// No queue: parking always fails (the answer is then 503). For functions and tests without
/// a `PARKED_QUEUE_URL`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoParking;

impl Parker for NoParking {
    async fn park(&self, _: &ParkedEvent) -> Result<(), ParkError> {
        Err(ParkError::NotConfigured)
    }
}

/// The SQS queue `parked`.
#[derive(Clone, Debug)]
pub struct SqsParker {
    client: ParkingClient,
    queue_url: String,
}

/// The SQS client, given or built on first use.
#[derive(Clone, Debug)]
enum ParkingClient {
    Ready(aws_sdk_sqs::Client),
    /// Built at the first parked event: a function that never parks (storage answers) never
    /// pays the client's set-up in its cold start (about 1.2 M instructions, BENCHMARKS.md).
    Lazy {
        env: b24_state::AwsEnv,
        cell: std::sync::OnceLock<aws_sdk_sqs::Client>,
    },
}

impl SqsParker {
    /// Parks on `queue_url` with `client`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsParker {
            client: ParkingClient::Ready(client),
            queue_url: queue_url.into(),
        }
    }

    /// Parks on `queue_url` with a client from `env` and [`PARKING_TIMEOUTS`], built when the
    /// first event is parked.
    pub fn lazy(env: b24_state::AwsEnv, queue_url: impl Into<String>) -> Self {
        SqsParker {
            client: ParkingClient::Lazy {
                env,
                cell: std::sync::OnceLock::new(),
            },
            queue_url: queue_url.into(),
        }
    }

    fn client(&self) -> &aws_sdk_sqs::Client {
        match &self.client {
            ParkingClient::Ready(c) => c,
            ParkingClient::Lazy { env, cell } => {
                cell.get_or_init(|| sqs_client(env, PARKING_TIMEOUTS))
            }
        }
    }
}

impl Parker for SqsParker {
    async fn park(&self, event: &ParkedEvent) -> Result<(), ParkError> {
        self.client()
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(event.to_body())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                ParkError::Send(match e.as_service_error() {
                    Some(s) => aws_sdk_sqs::error::ProvideErrorMetadata::code(s)
                        .unwrap_or("service error")
                        .to_string(),
                    None => match e {
                        aws_sdk_sqs::error::SdkError::TimeoutError(_) => "timeout".into(),
                        aws_sdk_sqs::error::SdkError::DispatchFailure(_) => {
                            "connection failed".into()
                        }
                        _ => "unreadable response".into(),
                    },
                })
            })
    }
}

/// Timeouts of `SendMessage` on the webhook path: parking must answer fast too (connect
/// 0.5 s, 1.2 s per attempt and in total), so the worst answer stays under 3 s. As for
/// storage ([`b24_state::Timeouts::WEBHOOK`]), a timed-out attempt is not sent again: it
/// would double the load of a slow queue (and most likely park the event twice).
pub const PARKING_TIMEOUTS: b24_state::Timeouts = b24_state::Timeouts {
    connect: std::time::Duration::from_millis(500),
    attempt: std::time::Duration::from_millis(1200),
    total: std::time::Duration::from_millis(1200),
};

/// An SQS client from `env` with `timeouts` (endpoint `AWS_ENDPOINT_URL_SQS`, else
/// `AWS_ENDPOINT_URL`).
pub fn sqs_client(env: &b24_state::AwsEnv, timeouts: b24_state::Timeouts) -> aws_sdk_sqs::Client {
    b24_state::aws_client!(aws_sdk_sqs, "SQS", env, timeouts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use b24_events::Secret;

    fn event(text_len: usize) -> Event {
        let body = format!(
            "event=ONIMCONNECTORMESSAGEADD&data[CONNECTOR]=c&data[LINE]=1\
             &data[MESSAGES][0][im][chat_id]=1&data[MESSAGES][0][im][message_id]=2\
             &data[MESSAGES][0][message][text]={}&auth[member_id]=m1&auth[application_token]=SECRETTOKEN",
            "%01".repeat(text_len)
        );
        b24_events::decode(body.as_bytes(), None).unwrap()
    }

    #[test]
    fn parked_events_round_trip_without_secrets_small_and_large() {
        for n in [10, 300_000] {
            let e = event(n);
            let hash = TokenHash::of(Some(&Secret::new("SECRETTOKEN"))).unwrap();
            let p = ParkedEvent::new(&e, hash.clone(), 42, "timeout".into(), None, None);
            let body = p.to_body();
            assert!(!body.contains("SECRETTOKEN"));
            assert!(body.len() < 1024 * 1024, "{n}: {} bytes", body.len());
            assert_eq!(p.event.is_none(), n > 1000);
            let back = ParkedEvent::from_body(&body).unwrap();
            assert_eq!(back, p);
            let mut want = e.clone();
            want.auth.access_token = None;
            want.auth.application_token = None;
            assert_eq!(back.event().unwrap(), want);
            assert_eq!(back.token_hash, hash);
        }
    }

    #[test]
    fn malformed_parked_messages_are_errors() {
        for body in [
            "",
            "{}",
            "null",
            r#"{"version":2}"#,
            r#"{"version":1,"event_code":"X","member_id":"m","token_hash":"00","received_at":1,"reason":"r","authorization":null}"#,
        ] {
            assert!(ParkedEvent::from_body(body).is_err(), "{body}");
        }
        let e = event(1);
        let hash = TokenHash::of(Some(&Secret::new("t"))).unwrap();
        let mut p = ParkedEvent::new(&e, hash, 1, "r".into(), None, None);
        p.member_id = "other".into();
        assert!(
            p.event().is_err(),
            "a member_id that differs from the event's"
        );
        p.event = None;
        p.event_gzip = Some("!!!".into());
        assert!(p.event().is_err());
    }
}
