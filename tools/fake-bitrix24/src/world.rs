//! The fake's state — applications, portals, tokens, bindings, deliveries, the call log — behind
//! one mutex, so that every operation is atomic: of two refreshes with one refresh token,
//! exactly one finds it unspent.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{json, Value};

use crate::answer::ErrorAnswer;
use crate::call_log::redact;
use crate::config::{AppSpec, PortalSpec};
use crate::error::FakeError;
use crate::rate_limit::{LeakyBucket, RateLimit};
use crate::records::{Binding, CallKind, CallRecord, Delivery, InstallCredentials, PortalInfo};
use crate::tokens::random_token;

/// Call log entries kept (oldest dropped first).
const MAX_CALLS: usize = 20_000;
/// Deliveries kept per portal.
pub(crate) const MAX_DELIVERIES: usize = 10_000;
/// Bindings per portal (Bitrix24 has no documented limit; the fake bounds its memory).
pub(crate) const MAX_BINDINGS: usize = 1_000;
/// Spent or revoked tokens remembered, only so that the call log can still redact them.
const MAX_RETIRED: usize = 20_000;
/// Expired access tokens are forgotten (then answered `invalid_token`) this long after expiry.
const FORGET_EXPIRED_AFTER: i64 = 86_400;

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub token_prefix: String,
    pub access_lifetime: i64,
    pub refresh_lifetime: i64,
    pub oauth_domain: String,
}

impl Settings {
    pub(crate) fn client_endpoint(&self, member_id: &str) -> String {
        format!("{}/portal/{member_id}/rest/", self.base_url)
    }

    pub(crate) fn server_endpoint(&self) -> String {
        format!("{}/rest/", self.base_url)
    }
}

pub(crate) struct App {
    pub id: u64,
    pub spec: AppSpec,
}

pub(crate) struct Portal {
    pub spec: PortalSpec,
    pub application_token: String,
    pub installed: bool,
    pub bindings: Vec<Binding>,
    pub deliveries: VecDeque<Delivery>,
    pub bucket: LeakyBucket,
    /// Whether the rate limit was set for this portal (else it follows the default).
    pub own_limit: bool,
}

/// Who an access or refresh token was issued to.
#[derive(Debug, Clone)]
struct Grant {
    member_id: String,
    client_id: String,
    user_id: u64,
    expires_at: i64,
}

/// The caller of a REST method, once its access token checked out.
#[derive(Debug, Clone)]
pub(crate) struct AuthContext {
    pub member_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
}

pub(crate) struct World {
    pub apps: BTreeMap<String, App>,
    pub portals: BTreeMap<String, Portal>,
    access: HashMap<String, Grant>,
    refresh: HashMap<String, Grant>,
    /// Spent or revoked tokens and their portals (for redaction, and to name the portal when a
    /// spent refresh token comes back).
    retired: VecDeque<(String, String)>,
    calls: VecDeque<CallRecord>,
    next_call: u64,
    next_app_id: u64,
    pub next_binding_id: u64,
    default_limit: Option<RateLimit>,
}

impl World {
    pub(crate) fn new(default_limit: Option<RateLimit>) -> Self {
        World {
            apps: BTreeMap::new(),
            portals: BTreeMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            retired: VecDeque::new(),
            calls: VecDeque::new(),
            next_call: 1,
            next_app_id: 1,
            next_binding_id: 1,
            default_limit,
        }
    }

    pub(crate) fn portal(&self, member_id: &str) -> Result<&Portal, FakeError> {
        self.portals
            .get(member_id)
            .ok_or_else(|| FakeError::UnknownPortal(member_id.to_string()))
    }

    pub(crate) fn portal_mut(&mut self, member_id: &str) -> Result<&mut Portal, FakeError> {
        self.portals
            .get_mut(member_id)
            .ok_or_else(|| FakeError::UnknownPortal(member_id.to_string()))
    }

    pub(crate) fn add_app(&mut self, spec: AppSpec) -> Result<(), FakeError> {
        if spec.client_id.trim().is_empty() || spec.client_secret.is_empty() {
            return Err(FakeError::InvalidInput(
                "client_id and client_secret must not be empty".into(),
            ));
        }
        if spec.status.is_empty() {
            return Err(FakeError::InvalidInput("status must not be empty".into()));
        }
        if self.apps.contains_key(&spec.client_id) {
            return Err(FakeError::Duplicate(format!(
                "application {}",
                spec.client_id
            )));
        }
        let id = self.next_app_id;
        self.next_app_id += 1;
        self.apps.insert(spec.client_id.clone(), App { id, spec });
        Ok(())
    }

    /// Registers a portal with its app installed and issues its first credentials.
    pub(crate) fn add_portal(
        &mut self,
        settings: &Settings,
        now: i64,
        mut spec: PortalSpec,
    ) -> Result<InstallCredentials, FakeError> {
        if spec.member_id.is_empty() {
            spec.member_id = random_token("", 32);
        }
        let id_ok = spec.member_id.len() <= 64
            && spec
                .member_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            return Err(FakeError::InvalidInput(
                "member_id: up to 64 letters, digits, '_' or '-'".into(),
            ));
        }
        if spec.client_id.is_empty() {
            match self.apps.keys().collect::<Vec<_>>().as_slice() {
                [only] => spec.client_id = (*only).clone(),
                _ => {
                    return Err(FakeError::InvalidInput(
                        "client_id: required unless exactly one application is known".into(),
                    ))
                }
            }
        }
        if !self.apps.contains_key(&spec.client_id) {
            return Err(FakeError::UnknownApp(spec.client_id));
        }
        if spec.domain.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return Err(FakeError::InvalidInput("domain must not be empty".into()));
        }
        if spec
            .scope
            .iter()
            .any(|s| s.is_empty() || s.contains([',', ' ']))
        {
            return Err(FakeError::InvalidInput(
                "scope: names without commas or spaces".into(),
            ));
        }
        if self.portals.contains_key(&spec.member_id) {
            return Err(FakeError::Duplicate(format!("portal {}", spec.member_id)));
        }
        let member_id = spec.member_id.clone();
        self.portals.insert(
            member_id.clone(),
            Portal {
                spec,
                application_token: random_token(&settings.token_prefix, 32),
                installed: true,
                bindings: Vec::new(),
                deliveries: VecDeque::new(),
                bucket: LeakyBucket::new(self.default_limit),
                own_limit: false,
            },
        );
        self.issue_credentials(settings, now, &member_id)
    }

    /// A new access + refresh token pair for the portal's user, as credentials.
    pub(crate) fn issue_credentials(
        &mut self,
        settings: &Settings,
        now: i64,
        member_id: &str,
    ) -> Result<InstallCredentials, FakeError> {
        let (access_token, expires) = self.issue_access(settings, now, member_id, None)?;
        let portal = self.portal(member_id)?;
        let grant = Grant {
            member_id: member_id.to_string(),
            client_id: portal.spec.client_id.clone(),
            user_id: portal.spec.user_id,
            expires_at: now + settings.refresh_lifetime,
        };
        let refresh_token = random_token(&settings.token_prefix, 64);
        self.refresh.insert(refresh_token.clone(), grant);
        self.credentials(settings, member_id, access_token, refresh_token, expires)
    }

    /// A new access token for the portal (for `user_id`, default the portal's user).
    pub(crate) fn issue_access(
        &mut self,
        settings: &Settings,
        now: i64,
        member_id: &str,
        user_id: Option<u64>,
    ) -> Result<(String, i64), FakeError> {
        let portal = self.portal(member_id)?;
        let expires = now + settings.access_lifetime;
        let grant = Grant {
            member_id: member_id.to_string(),
            client_id: portal.spec.client_id.clone(),
            user_id: user_id.unwrap_or(portal.spec.user_id),
            expires_at: expires,
        };
        self.access
            .retain(|_, g| g.expires_at + FORGET_EXPIRED_AFTER > now);
        let token = random_token(&settings.token_prefix, 64);
        self.access.insert(token.clone(), grant);
        Ok((token, expires))
    }

    fn credentials(
        &self,
        settings: &Settings,
        member_id: &str,
        access_token: String,
        refresh_token: String,
        expires: i64,
    ) -> Result<InstallCredentials, FakeError> {
        let portal = self.portal(member_id)?;
        let app = self
            .apps
            .get(&portal.spec.client_id)
            .ok_or_else(|| FakeError::UnknownApp(portal.spec.client_id.clone()))?;
        Ok(InstallCredentials {
            access_token,
            refresh_token,
            expires,
            expires_in: settings.access_lifetime,
            application_token: portal.application_token.clone(),
            client_endpoint: settings.client_endpoint(member_id),
            server_endpoint: settings.server_endpoint(),
            domain: portal.spec.domain(),
            member_id: member_id.to_string(),
            scope: portal.spec.scope.join(","),
            status: app.spec.status.clone(),
            user_id: portal.spec.user_id,
        })
    }

    /// Checks an access token presented to `member_id`'s REST endpoint.
    pub(crate) fn authenticate(
        &self,
        member_id: &str,
        token: &str,
        now: i64,
    ) -> Result<AuthContext, ErrorAnswer> {
        let grant = self
            .access
            .get(token)
            .filter(|g| g.member_id == member_id)
            .ok_or_else(ErrorAnswer::invalid_token)?;
        let portal = self
            .portals
            .get(member_id)
            .filter(|p| p.installed)
            .ok_or_else(ErrorAnswer::invalid_token)?;
        if grant.expires_at <= now {
            return Err(ErrorAnswer::expired_token());
        }
        Ok(AuthContext {
            member_id: member_id.to_string(),
            client_id: grant.client_id.clone(),
            scopes: portal.spec.scope.clone(),
        })
    }

    /// `grant_type=refresh_token`: spends the refresh token and answers a new pair, as
    /// `settings/oauth/auto-renewal.md` shows. Also returns the portal, when the token named one.
    pub(crate) fn refresh(
        &mut self,
        settings: &Settings,
        now: i64,
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
    ) -> (Option<String>, Result<Value, ErrorAnswer>) {
        let client_ok = self
            .apps
            .get(client_id)
            .is_some_and(|a| a.spec.client_secret == client_secret);
        if !client_ok {
            return (None, Err(ErrorAnswer::oauth_invalid_client()));
        }
        let Some(grant) = self
            .refresh
            .get(refresh_token)
            .filter(|g| g.client_id == client_id)
            .cloned()
        else {
            let member = self
                .retired
                .iter()
                .find(|(t, _)| t == refresh_token)
                .map(|(_, m)| m.clone());
            return (member, Err(ErrorAnswer::oauth_invalid_grant()));
        };
        let member_id = grant.member_id.clone();
        self.refresh.remove(refresh_token);
        self.retire(refresh_token.to_string(), &member_id);
        let installed = self.portals.get(&member_id).is_some_and(|p| p.installed);
        if grant.expires_at <= now || !installed {
            return (Some(member_id), Err(ErrorAnswer::oauth_invalid_grant()));
        }
        let answer = self.rotate(settings, now, &grant);
        (Some(member_id), answer)
    }

    /// The new pair and the answer of a successful refresh.
    fn rotate(
        &mut self,
        settings: &Settings,
        now: i64,
        grant: &Grant,
    ) -> Result<Value, ErrorAnswer> {
        let member_id = grant.member_id.clone();
        let (access_token, expires) = self
            .issue_access(settings, now, &member_id, Some(grant.user_id))
            .map_err(|_| ErrorAnswer::oauth_invalid_grant())?;
        let new_refresh = random_token(&settings.token_prefix, 64);
        self.refresh.insert(
            new_refresh.clone(),
            Grant {
                expires_at: now + settings.refresh_lifetime,
                ..grant.clone()
            },
        );
        let creds = self
            .credentials(settings, &member_id, access_token, new_refresh, expires)
            .map_err(|_| ErrorAnswer::oauth_invalid_grant())?;
        let answer = json!({
            "access_token": creds.access_token,
            "client_endpoint": creds.client_endpoint,
            "domain": settings.oauth_domain,
            "expires": creds.expires,
            "expires_in": creds.expires_in,
            "member_id": creds.member_id,
            "refresh_token": creds.refresh_token,
            "scope": creds.scope,
            "server_endpoint": creds.server_endpoint,
            "status": creds.status,
            "user_id": grant.user_id,
        });
        Ok(answer)
    }

    /// Makes every access token of the portal expired; returns how many.
    pub(crate) fn expire_access(&mut self, member_id: &str, now: i64) -> Result<usize, FakeError> {
        self.portal(member_id)?;
        let mut n = 0;
        for grant in self
            .access
            .values_mut()
            .filter(|g| g.member_id == member_id)
        {
            grant.expires_at = grant.expires_at.min(now);
            n += 1;
        }
        Ok(n)
    }

    /// Revokes every refresh token of the portal; returns how many.
    pub(crate) fn revoke_refresh(&mut self, member_id: &str) -> Result<usize, FakeError> {
        self.portal(member_id)?;
        let revoked: Vec<String> = self
            .refresh
            .iter()
            .filter(|(_, g)| g.member_id == member_id)
            .map(|(t, _)| t.clone())
            .collect();
        for token in &revoked {
            self.refresh.remove(token);
            self.retire(token.clone(), member_id);
        }
        Ok(revoked.len())
    }

    /// Forgets every token of the portal (uninstall).
    pub(crate) fn revoke_all(&mut self, member_id: &str) {
        let _ = self.revoke_refresh(member_id);
        let gone: Vec<String> = self
            .access
            .iter()
            .filter(|(_, g)| g.member_id == member_id)
            .map(|(t, _)| t.clone())
            .collect();
        for token in gone {
            self.access.remove(&token);
            self.retire(token, member_id);
        }
    }

    pub(crate) fn rotate_application_token(
        &mut self,
        settings: &Settings,
        member_id: &str,
    ) -> Result<String, FakeError> {
        let token = random_token(&settings.token_prefix, 32);
        let portal = self.portal_mut(member_id)?;
        let old = std::mem::replace(&mut portal.application_token, token.clone());
        self.retire(old, member_id);
        Ok(token)
    }

    fn retire(&mut self, token: String, member_id: &str) {
        self.retired.push_back((token, member_id.to_string()));
        while self.retired.len() > MAX_RETIRED {
            self.retired.pop_front();
        }
    }

    pub(crate) fn set_rate_limit(
        &mut self,
        member_id: &str,
        limit: Option<RateLimit>,
    ) -> Result<(), FakeError> {
        let portal = self.portal_mut(member_id)?;
        portal.bucket.set_limit(limit);
        portal.own_limit = true;
        Ok(())
    }

    /// Sets the limit of every portal (and of portals added later); clears per-portal limits.
    pub(crate) fn set_default_rate_limit(&mut self, limit: Option<RateLimit>) {
        self.default_limit = limit;
        for portal in self.portals.values_mut() {
            portal.bucket.set_limit(limit);
            portal.own_limit = false;
        }
    }

    /// Appends a call log entry, redacting `params` first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn log(
        &mut self,
        time: f64,
        kind: CallKind,
        member_id: Option<&str>,
        method: &str,
        mut params: Value,
        http_status: Option<u16>,
        outcome: &str,
        batch_command: Option<&str>,
    ) {
        let secrets = self.secrets();
        redact(&mut params, &secrets);
        let record = CallRecord {
            seq: self.next_call,
            time,
            kind,
            member_id: member_id.map(str::to_string),
            method: method.to_string(),
            params,
            http_status,
            outcome: outcome.to_string(),
            batch_command: batch_command.map(str::to_string),
        };
        self.next_call += 1;
        self.calls.push_back(record);
        while self.calls.len() > MAX_CALLS {
            self.calls.pop_front();
        }
    }

    /// Every token and secret the fake knows of, live or retired.
    fn secrets(&self) -> Vec<&str> {
        self.access
            .keys()
            .chain(self.refresh.keys())
            .chain(self.retired.iter().map(|(t, _)| t))
            .map(String::as_str)
            .chain(self.apps.values().map(|a| a.spec.client_secret.as_str()))
            .chain(self.portals.values().map(|p| p.application_token.as_str()))
            .collect()
    }

    pub(crate) fn calls(&self) -> Vec<CallRecord> {
        self.calls.iter().cloned().collect()
    }

    pub(crate) fn portal_info(
        &self,
        settings: &Settings,
        member_id: &str,
    ) -> Result<PortalInfo, FakeError> {
        let p = self.portal(member_id)?;
        Ok(PortalInfo {
            member_id: member_id.to_string(),
            domain: p.spec.domain(),
            client_id: p.spec.client_id.clone(),
            scope: p.spec.scope.clone(),
            user_id: p.spec.user_id,
            installed: p.installed,
            client_endpoint: settings.client_endpoint(member_id),
            rate_limit: p.bucket.limit(),
            bindings: p.bindings.len(),
            deliveries: p.deliveries.len(),
        })
    }
}
