//! One request, top to bottom: method → size → decode → family → authenticate → apply → answer,
//! with one log line and one metrics record per request.

use crate::answer::{Answer, AuthFailure, Rejection};
use crate::auth::{authenticate, AuthResult};
use crate::config::Config;
use crate::metrics::{Metrics, RequestMetrics};
use crate::park::{NoParking, ParkedEvent, Parker};
use crate::request::{RequestError, WebhookRequest};
use crate::verifier::{InstallVerifier, RefuseTokenChanges};
use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use b24_events::{Event, Family, Limits};
use b24_state::{
    Applied, Authorization, Context, MemberId, PortalRegistry, Store, StoreError, TokenHash,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long authenticating and applying one event may take before the event is parked. The
/// SDK calls have their own, shorter timeouts (`b24_state::Timeouts::WEBHOOK`); this bounds
/// everything together (conflict retries included), so an answer comes back in about 3 s at
/// worst even while DynamoDB hangs.
pub const STORAGE_BUDGET: Duration = Duration::from_millis(1500);

/// The shared request pipeline of one function (one family). `V` verifies installs that
/// change or restore a portal's token (only the app function needs a real one); `P` parks
/// events storage cannot take.
pub struct Pipeline<S: Store, V: InstallVerifier = RefuseTokenChanges, P: Parker = NoParking> {
    family: Family,
    limits: Limits,
    event_ttl_days: i64,
    storage_budget: Duration,
    verifier_timeout: Duration,
    registry: PortalRegistry<S>,
    verifier: V,
    parker: P,
    metrics: Metrics,
}

impl<S: Store, V: InstallVerifier, P: Parker> std::fmt::Debug for Pipeline<S, V, P> {
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

impl<S: Store, V: InstallVerifier> Pipeline<S, V, NoParking> {
    /// A pipeline for `config.family` over `store`, verifying installs with `verifier`, that
    /// cannot park (a storage failure is a 503); metrics go to `metrics`.
    pub fn new(config: &Config, store: Arc<S>, verifier: V, metrics: Metrics) -> Self {
        Pipeline::with_parker(config, store, verifier, NoParking, metrics)
    }
}

impl<S: Store, V: InstallVerifier, P: Parker> Pipeline<S, V, P> {
    /// A pipeline that parks what storage cannot take with `parker`.
    pub fn with_parker(
        config: &Config,
        store: Arc<S>,
        verifier: V,
        parker: P,
        metrics: Metrics,
    ) -> Self {
        let limits = Limits {
            max_body_bytes: config.max_body_bytes,
            ..Limits::default()
        };
        Pipeline {
            family: config.family,
            limits,
            event_ttl_days: config.event_ttl_days,
            storage_budget: STORAGE_BUDGET,
            verifier_timeout: config.verifier.timeout,
            registry: PortalRegistry::new(
                store,
                config.portal_cache_ttl,
                config.portal_cache_entries,
            ),
            verifier,
            parker,
            metrics,
        }
    }

    /// Changes the storage budget (tests).
    pub fn with_storage_budget(mut self, budget: Duration) -> Self {
        self.storage_budget = budget;
        self
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
        let Some(token_hash) = TokenHash::of(event.auth.application_token.as_ref()) else {
            facts.reason = Some(AuthFailure::MissingToken.as_str().to_string());
            return Answer::Rejected(Rejection::Unauthorized(AuthFailure::MissingToken));
        };
        let received_at = unix_now();
        // The authorization the transaction runs under, once known: parked with the event so
        // the redrive produces the very same transaction.
        let mut decided: Option<(Authorization, Option<String>)> = None;
        let work = self.authenticate_and_apply(&event, &member, received_at, facts, &mut decided);
        // An install may call app.info first: its own timeout is not storage time.
        let budget = if event.kind().is_install() {
            self.storage_budget + self.verifier_timeout
        } else {
            self.storage_budget
        };
        let failure = match tokio::time::timeout(budget, work).await {
            Ok(Ok(answer)) => return answer,
            Ok(Err(e)) if e.is_invalid_input() => {
                facts.reason = Some(e.to_string());
                return Answer::Rejected(storage_rejection(&e));
            }
            Ok(Err(e)) => e.to_string(),
            // The write may have committed after all: the redrive then finds a duplicate.
            Err(_) => format!("storage budget of {budget:?} exceeded"),
        };
        let (authorization, verified_client_endpoint) = decided.unzip();
        let parked = ParkedEvent::new(
            &event,
            token_hash,
            received_at,
            failure.clone(),
            authorization,
            verified_client_endpoint.flatten(),
        );
        match self.parker.park(&parked).await {
            Ok(()) => {
                tracing::warn!(
                    event = event.kind().code(),
                    member_id = %event.auth.member_id,
                    reason = %failure,
                    "storage unavailable: event parked for the redrive"
                );
                facts.reason = Some(failure);
                Answer::Parked
            }
            Err(e) => {
                tracing::error!(
                    event = event.kind().code(),
                    member_id = %event.auth.member_id,
                    line = event.line(),
                    connector = event.connector(),
                    item_ids = ?event.item_ids(),
                    handler_id = event.handler_id,
                    ts = event.ts,
                    storage = %failure,
                    parking = %e,
                    "event could not be stored or parked: lost"
                );
                facts.reason = Some(format!("{failure}; parking failed: {e}"));
                Answer::Rejected(Rejection::StorageUnavailable)
            }
        }
    }

    async fn authenticate_and_apply(
        &self,
        event: &Event,
        member: &MemberId,
        received_at: i64,
        facts: &mut Facts,
        decided: &mut Option<(Authorization, Option<String>)>,
    ) -> Result<Answer, StoreError> {
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
            *decided = Some((authorization.clone(), verified_client_endpoint.clone()));
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
/// this input (422); anything else (unreachable, throttled, misconfigured, contended) is parked,
/// and only when that fails too, a 503.
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
