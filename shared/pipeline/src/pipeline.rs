//! One request, top to bottom: method → size → decode → family → authenticate → apply → answer,
//! with one log line and one metrics record per request.

use crate::answer::{Answer, Rejection};
use crate::auth::{authenticate, AuthResult};
use crate::config::Config;
use crate::metrics::{Metrics, RequestMetrics};
use crate::verifier::{RefuseTokenChanges, TokenChangeVerifier};
use b24_events::{DecodeError, Event, Family, Limits};
use b24_state::{PortalRegistry, Store, StoreError};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use std::sync::Arc;
use std::time::Instant;

/// The shared request pipeline of one function (one family). `V` confirms token changes on
/// install/update; only the app function needs a real one.
pub struct Pipeline<S: Store, V: TokenChangeVerifier = RefuseTokenChanges> {
    family: Family,
    limits: Limits,
    registry: PortalRegistry<S>,
    verifier: V,
    metrics: Metrics,
}

impl<S: Store, V: TokenChangeVerifier> std::fmt::Debug for Pipeline<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("family", &self.family)
            .finish()
    }
}

/// What the pipeline learned about a request, for the log line.
#[derive(Default)]
struct Facts {
    event: Option<&'static str>,
    member_id: Option<String>,
    domain: Option<String>,
    line: Option<i64>,
    reason: Option<String>,
}

impl<S: Store, V: TokenChangeVerifier> Pipeline<S, V> {
    /// A pipeline for `config.family` over `store`, confirming token changes with `verifier`;
    /// metrics go to `metrics`.
    pub fn new(config: &Config, store: Arc<S>, verifier: V, metrics: Metrics) -> Self {
        let limits = Limits {
            max_body_bytes: config.max_body_bytes,
            ..Limits::default()
        };
        Pipeline {
            family: config.family,
            limits,
            registry: PortalRegistry::new(store, config.portal_cache_ttl),
            verifier,
            metrics,
        }
    }

    /// The family this pipeline serves.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The portal registry (and through it the store).
    pub fn registry(&self) -> &PortalRegistry<S> {
        &self.registry
    }

    /// Handles one API Gateway request. Never fails and never panics on input: every outcome is
    /// an HTTP answer.
    pub async fn handle(
        &self,
        request: Request,
    ) -> Result<Response<Body>, std::convert::Infallible> {
        let started = Instant::now();
        let mut facts = Facts::default();
        let answer = self.answer(&request, &mut facts).await;
        let status = answer.status();
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let outcome = answer.outcome_label();
        if let Answer::Rejected(r) = &answer {
            facts.reason.get_or_insert_with(|| r.reason());
        }
        tracing::info!(
            event = facts.event.unwrap_or("unknown"),
            family = self.family.as_str(),
            member_id = facts.member_id.as_deref(),
            domain = facts.domain.as_deref(),
            line = facts.line,
            outcome,
            status,
            duration_ms,
            reason = facts.reason.as_deref(),
            "request"
        );
        self.metrics.emit(&RequestMetrics {
            family: self.family.as_str(),
            event: facts.event.unwrap_or("unknown").to_string(),
            outcome,
            status,
            latency_ms: duration_ms,
        });
        Ok(answer.into_response())
    }

    async fn answer(&self, request: &Request, facts: &mut Facts) -> Answer {
        if request.method() != Method::POST {
            return Answer::Rejected(Rejection::MethodNotAllowed);
        }
        let body: &[u8] = request.body().as_ref();
        if body.len() > self.limits.max_body_bytes {
            return Answer::Rejected(Rejection::TooLarge {
                limit: self.limits.max_body_bytes,
            });
        }
        let content_type = request
            .headers()
            .get(lambda_http::http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let event = match b24_events::decode_with(body, content_type.as_deref(), &self.limits) {
            Ok(e) => e,
            Err(e) => return Answer::Rejected(decode_rejection(&e, self.limits.max_body_bytes)),
        };
        facts.event = Some(event.kind.code());
        facts.member_id = Some(event.auth.member_id.clone());
        facts.domain = event.auth.domain.clone();
        facts.line = event.line();
        if event.family() != self.family {
            return Answer::Rejected(Rejection::WrongFamily {
                event: event.kind.code(),
                route: event.family().route(),
            });
        }
        match self.authenticate_and_apply(&event, facts).await {
            Ok(answer) => answer,
            Err(e) => {
                facts.reason = Some(e.to_string());
                Answer::Rejected(storage_rejection(&e))
            }
        }
    }

    async fn authenticate_and_apply(
        &self,
        event: &Event,
        facts: &mut Facts,
    ) -> Result<Answer, StoreError> {
        match authenticate(event, &self.registry, &self.verifier).await? {
            AuthResult::Refused(why) => {
                facts.reason = Some(why.as_str().to_string());
                Ok(Answer::Rejected(Rejection::Unauthorized(why)))
            }
            AuthResult::Accepted => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let outcome = self.registry.store().apply(event, now).await;
                if event.family() == Family::App {
                    // The portal record changed (or may have): never serve it stale from memory.
                    self.registry.invalidate(&event.auth.member_id);
                }
                Ok(Answer::Accepted(outcome?))
            }
        }
    }
}

/// A store error as an answer: DynamoDB refusing the event's own writes as invalid is about
/// this input (422, and logged at error level: the limits should have prevented it); anything
/// else (unreachable, throttled, misconfigured, contended) is 503.
fn storage_rejection(e: &StoreError) -> Rejection {
    match e {
        StoreError::Rejected { cause, .. } if cause.starts_with("ValidationException") => {
            tracing::error!(cause = %cause, "DynamoDB refused an event's writes");
            Rejection::Unstorable(cause.clone())
        }
        _ => Rejection::StorageUnavailable,
    }
}

fn decode_rejection(e: &DecodeError, limit: usize) -> Rejection {
    let reason = e.to_string();
    match e.status() {
        413 => Rejection::TooLarge { limit },
        415 => Rejection::UnsupportedContentType(reason),
        422 => Rejection::UnsupportedEvent(reason),
        _ => Rejection::Undecodable(reason),
    }
}
