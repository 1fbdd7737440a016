//! Per-portal authentication of a decoded event.
//!
//! - `ONAPPINSTALL` / `ONAPPUPDATE` for an unknown portal register it.
//! - `ONAPPINSTALL` / `ONAPPUPDATE` that would replace a known portal's token are accepted only
//!   after the event's `access_token` is confirmed by `app.info` on the portal's **stored**
//!   `client_endpoint` (never the one in the event: the sender controls that).
//! - Every other event, `ONAPPUNINSTALL` included (it carries no usable OAuth token): the
//!   stored token must match, compared in constant time by the state crate.

use crate::answer::AuthFailure;
use crate::verifier::TokenChangeVerifier;
use b24_events::{Event, EventKind};
use b24_state::{AuthCheck, PortalRegistry, Store, StoreError};

/// The result of authenticating one event.
#[derive(Debug)]
pub enum AuthResult {
    /// Go ahead and apply the event.
    Accepted,
    /// Answer 401; the failure is logged.
    Refused(AuthFailure),
}

/// Authenticates `event` against the portal registry; `verifier` is asked only about token
/// changes on install/update.
pub async fn authenticate<S: Store, V: TokenChangeVerifier>(
    event: &Event,
    registry: &PortalRegistry<S>,
    verifier: &V,
) -> Result<AuthResult, StoreError> {
    let token = match event
        .auth
        .application_token
        .as_ref()
        .filter(|t| !t.is_empty())
    {
        Some(t) => t,
        None => return Ok(AuthResult::Refused(AuthFailure::MissingToken)),
    };
    let member_id = event.auth.member_id.as_str();
    let check = registry.check(member_id, Some(token)).await?;
    let installs = matches!(event.kind, EventKind::AppInstall | EventKind::AppUpdate);
    Ok(match check {
        AuthCheck::Verified(_) => AuthResult::Accepted,
        AuthCheck::UnknownPortal if installs => AuthResult::Accepted,
        AuthCheck::UnknownPortal => AuthResult::Refused(AuthFailure::UnknownPortal),
        AuthCheck::Uninstalled(portal) if installs => {
            if portal.token_matches(token) {
                AuthResult::Accepted
            } else {
                verify_change(event, &portal, verifier).await
            }
        }
        AuthCheck::Uninstalled(_) => AuthResult::Refused(AuthFailure::Uninstalled),
        AuthCheck::TokenMismatch(portal) if installs => {
            verify_change(event, &portal, verifier).await
        }
        AuthCheck::TokenMismatch(_) => AuthResult::Refused(AuthFailure::TokenMismatch),
    })
}

async fn verify_change<V: TokenChangeVerifier>(
    event: &Event,
    portal: &b24_state::Portal,
    verifier: &V,
) -> AuthResult {
    let Some(access_token) = event.auth.access_token.as_ref() else {
        return AuthResult::Refused(AuthFailure::VerificationFailed);
    };
    match verifier.verify(portal, access_token).await {
        Ok(()) => AuthResult::Accepted,
        Err(e) => {
            tracing::warn!(member_id = %portal.member_id, reason = %e, "token change not verified");
            AuthResult::Refused(AuthFailure::VerificationFailed)
        }
    }
}
