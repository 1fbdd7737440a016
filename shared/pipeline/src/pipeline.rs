//! One request, top to bottom: method → size → decode → family → authenticate → apply → answer,
//! with one log line and one metrics record per request.

use crate::answer::{Answer, AuthFailure, Rejection};
use crate::auth::{authenticate, AuthResult};
use crate::config::Config;
use crate::metrics::{Metrics, RequestMetrics};
use crate::request::{RequestError, WebhookRequest};
use crate::verifier::{InstallVerifier, RefuseTokenChanges};
use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use b24_events::{Event, Family, Limits};
use b24_state::{Applied, Context, MemberId, PortalRegistry, Store, StoreError};
use std::sync::Arc;
use std::time::Instant;

/// The shared request pipeline of one function (one family). `V` verifies installs that
/// change or restore a portal's token; only the app function needs a real one.
pub struct Pipeline<S: Store, V: InstallVerifier = RefuseTokenChanges> {
    family: Family,
    limits: Limits,
    event_ttl_days: i64,
    registry: PortalRegistry<S>,
    verifier: V,
    metrics: Metrics,
}

impl<S: Store, V: InstallVerifier> std::fmt::Debug for Pipeline<S, V> {
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

/// The receive time in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl<S: Store, V: InstallVerifier> Pipeline<S, V> {
    /// A pipeline for `config.family` over `store`, verifying installs with `verifier`;
    /// metrics go to `metrics`.
    pub fn new(config: &Config, store: Arc<S>, verifier: V, metrics: Metrics) -> Self {
        let limits = Limits {
            max_body_bytes: config.max_body_bytes,
            ..Limits::default()
        };
        Pipeline {
            family: config.family,
            limits,
            event_ttl_days: config.event_ttl_days,
            registry: PortalRegistry::new(
                store,
                config.portal_cache_ttl,
                config.portal_cache_entries,
            ),
            verifier,
            metrics,
        }
    }

    /// The family this pipeline serves.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The portal registry (its cache size is observable in tests).
    pub fn registry(&self) -> &PortalRegistry<S> {
        &self.registry
    }

    /// Handles one invocation payload (an API Gateway HTTP API event). Never fails and never
    /// panics on input: every outcome is an HTTP answer.
    pub async fn handle(&self, payload: serde_json::Value) -> ApiGatewayV2httpResponse {
        let started = Instant::now();
        let mut facts = Facts::default();
        let answer = match WebhookRequest::from_payload(payload, self.limits.max_body_bytes) {
            Ok(request) => self.answer(&request, &mut facts).await,
            Err(e) => Answer::Rejected(request_rejection(&e)),
        };
        self.finish(answer, facts, started)
    }

    /// Handles one already converted request (tests and tools).
    pub async fn handle_request(&self, request: &WebhookRequest) -> ApiGatewayV2httpResponse {
        let started = Instant::now();
        let mut facts = Facts::default();
        let answer = self.answer(request, &mut facts).await;
        self.finish(answer, facts, started)
    }

    fn finish(
        &self,
        answer: Answer,
        mut facts: Facts,
        started: Instant,
    ) -> ApiGatewayV2httpResponse {
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
            flags: answer.flags(),
            latency_ms: duration_ms,
        });
        answer.into_response()
    }

    async fn answer(&self, request: &WebhookRequest, facts: &mut Facts) -> Answer {
        if request.method != "POST" {
            return Answer::Rejected(Rejection::MethodNotAllowed);
        }
        let event = match b24_events::decode_with(
            &request.body,
            request.content_type.as_deref(),
            &self.limits,
        ) {
            Ok(e) => e,
            Err(e) => return Answer::Rejected(Rejection::from(&e)),
        };
        facts.event = Some(event.kind().code());
        facts.member_id = Some(event.auth.member_id.clone());
        facts.domain = event.auth.domain.clone();
        facts.line = event.line();
        if event.family() != self.family {
            return Answer::Rejected(Rejection::WrongFamily {
                event: event.kind().code(),
                route: event.family().route(),
            });
        }
        let member = match MemberId::new(&event.auth.member_id) {
            Ok(m) => m,
            Err(e) => return Answer::Rejected(Rejection::Undecodable(e.to_string())),
        };
        match self.authenticate_and_apply(&event, &member, facts).await {
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
        member: &MemberId,
        facts: &mut Facts,
    ) -> Result<Answer, StoreError> {
        let received_at = unix_now();
        // At most two rounds: a portal record that changed between authentication and the
        // write (the transaction's check failed) is read again and the event re-authenticated
        // once, so a rotated token behind a stale cache still lands.
        for _ in 0..2 {
            let (authorization, verified_client_endpoint) =
                match authenticate(event, member, &self.registry, &self.verifier).await? {
                    AuthResult::Refused(why) => {
                        facts.reason = Some(why.as_str().to_string());
                        return Ok(Answer::Rejected(Rejection::Unauthorized(why)));
                    }
                    AuthResult::Accepted {
                        authorization,
                        verified_client_endpoint,
                    } => (authorization, verified_client_endpoint),
                };
            let ctx = Context {
                member: member.clone(),
                authorization,
                received_at,
                event_ttl_days: self.event_ttl_days,
                verified_client_endpoint,
            };
            let applied = self.registry.store().apply(event, &ctx).await;
            if event.family() == Family::App {
                // The portal record changed (or may have): never serve it stale from memory.
                self.registry.invalidate(member);
            }
            match applied? {
                Applied::Outcome(o) => return Ok(Answer::Accepted(o)),
                Applied::Unauthorized => self.registry.invalidate(member),
            }
        }
        facts.reason = Some(AuthFailure::Revoked.as_str().to_string());
        Ok(Answer::Rejected(Rejection::Unauthorized(
            AuthFailure::Revoked,
        )))
    }
}

fn request_rejection(e: &RequestError) -> Rejection {
    match e {
        RequestError::Malformed | RequestError::BadBase64 => Rejection::Undecodable(e.to_string()),
        RequestError::TooLarge { .. } => Rejection::TooLarge(e.to_string()),
    }
}

/// A store error as an answer: DynamoDB refusing the event's own writes as invalid is about
/// this input (422); anything else (unreachable, throttled, misconfigured, contended) is 503.
fn storage_rejection(e: &StoreError) -> Rejection {
    match e {
        StoreError::Invalid { cause, .. } => Rejection::Unstorable(cause.clone()),
        StoreError::Unavailable { .. }
        | StoreError::Misconfigured { .. }
        | StoreError::Contention { .. }
        | StoreError::Corrupt { .. }
        | StoreError::Config(_) => Rejection::StorageUnavailable,
    }
}
