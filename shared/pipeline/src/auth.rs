//! Per-portal authentication of a decoded event: which [`Authorization`] it may be applied
//! under. The state crate checks that authorization again inside the transaction that applies
//! the event, so what is decided here from a (possibly cached) portal record can never let a
//! revoked token land.
//!
//! - `ONAPPINSTALL` / `ONAPPUPDATE` for an unknown portal register it
//!   ([`Authorization::Register`]).
//! - Every event whose token matches an installed portal is applied under
//!   [`Authorization::Installed`].
//! - `ONAPPINSTALL` / `ONAPPUPDATE` that would replace a known portal's token, or reinstall an
//!   uninstalled portal (whatever token it presents), need proof that the event belongs to this
//!   application ([`InstallVerifier`]); then [`Authorization::Replace`].
//! - Anything else is refused with the cause logged.

use crate::answer::AuthFailure;
use crate::verifier::InstallVerifier;
use b24_events::Event;
use b24_state::{
    AuthCheck, Authorization, MemberId, Portal, PortalRegistry, PortalState, Store, StoreError,
    TokenHash,
};

/// The result of authenticating one event.
#[derive(Debug)]
pub enum AuthResult {
    /// Apply the event under this authorization.
    Accepted {
        /// What the transaction must find on the portal record.
        authorization: Authorization,
        /// For installs verified through Bitrix24's OAuth server: the portal's REST endpoint as
        /// that server named it.
        verified_client_endpoint: Option<String>,
    },
    /// Answer 401; the failure is logged.
    Refused(AuthFailure),
}

/// Authenticates `event` of portal `member`; `verifier` is asked only about installs and
/// updates that change or restore a token.
pub async fn authenticate<S: Store, V: InstallVerifier>(
    event: &Event,
    member: &MemberId,
    registry: &PortalRegistry<S>,
    verifier: &V,
) -> Result<AuthResult, StoreError> {
    let Some(token_hash) = TokenHash::of(event.auth.application_token.as_ref()) else {
        return Ok(AuthResult::Refused(AuthFailure::MissingToken));
    };
    let installs = event.kind().is_install();
    let accepted = |authorization| AuthResult::Accepted {
        authorization,
        verified_client_endpoint: None,
    };
    Ok(match registry.check(member, Some(&token_hash)).await? {
        AuthCheck::Verified(p) if installs && verifier.verifies_every_install() => {
            match verify(event, Some(&p), verifier, token_hash.clone()).await {
                // The token stays: applied as an installed portal's event, with the endpoint
                // the OAuth server named.
                AuthResult::Accepted {
                    verified_client_endpoint,
                    ..
                } => AuthResult::Accepted {
                    authorization: Authorization::Installed {
                        token_hash,
                        epoch: p.epoch,
                    },
                    verified_client_endpoint,
                },
                refused => refused,
            }
        }
        AuthCheck::Verified(p) => accepted(Authorization::Installed {
            token_hash,
            epoch: p.epoch,
        }),
        AuthCheck::UnknownPortal if installs => {
            if verifier.verifies_first_installs() {
                verify(event, None, verifier, token_hash).await
            } else {
                accepted(Authorization::Register { token_hash })
            }
        }
        AuthCheck::UnknownPortal => AuthResult::Refused(AuthFailure::UnknownPortal),
        AuthCheck::Uninstalled(p) | AuthCheck::TokenMismatch(p) if installs => {
            verify(event, Some(&p), verifier, token_hash).await
        }
        AuthCheck::Uninstalled(_) => AuthResult::Refused(AuthFailure::Uninstalled),
        AuthCheck::TokenMismatch(_) => AuthResult::Refused(AuthFailure::TokenMismatch),
    })
}

async fn verify<V: InstallVerifier>(
    event: &Event,
    portal: Option<&Portal>,
    verifier: &V,
    token_hash: TokenHash,
) -> AuthResult {
    match verifier.verify(event, portal).await {
        Ok(verified) => AuthResult::Accepted {
            authorization: match portal {
                None => Authorization::Register { token_hash },
                Some(p) => Authorization::Replace {
                    token_hash,
                    from: PortalState {
                        token_hash: p.token_hash.clone(),
                        installed: p.installed,
                        epoch: p.epoch,
                    },
                },
            },
            verified_client_endpoint: verified.client_endpoint,
        },
        Err(e) => {
            tracing::warn!(
                member_id = %event.auth.member_id,
                reason = %e,
                "install not verified"
            );
            AuthResult::Refused(AuthFailure::VerificationFailed)
        }
    }
}
