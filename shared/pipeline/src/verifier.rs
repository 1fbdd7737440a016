//! Verifies a token change on install/update by calling Bitrix24's `app.info` on the portal's
//! **stored** `client_endpoint`.
//!
//! The stored endpoint came from a request too, so this call must not become a way into our
//! network (SSRF). Unless [`VerifierConfig::allow_insecure`] is set (local tests only), it:
//! - requires `https` and a host equal to the portal's stored domain;
//! - resolves the host itself and refuses loopback, private, link-local (instance metadata),
//!   shared, documentation, multicast and reserved addresses, then pins the connection to the
//!   checked addresses so a second DNS answer cannot differ;
//! - follows no redirects, uses short timeouts and reads at most a few KB of answer.
//!
//! `std`'s `IpAddr::is_global` is still unstable, hence the hand-written address ranges below.

use crate::config::VerifierConfig;
use b24_events::{Event, Secret};
use b24_state::Portal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Proves that an ONAPPINSTALL/ONAPPUPDATE belongs to this application before it may register
/// a portal, replace a portal's token, or reinstall an uninstalled portal.
///
/// The app function uses [`AppInfoVerifier`]; the three other functions never see install
/// events and use [`RefuseTokenChanges`], which keeps the HTTPS client out of their binaries.
pub trait InstallVerifier: Send + Sync + 'static {
    /// `Ok` only when the event is proven to be this application's install on `portal` (the
    /// stored record; `None` for a first install).
    fn verify(
        &self,
        event: &Event,
        portal: Option<&Portal>,
    ) -> impl std::future::Future<Output = Result<Verified, VerifyError>> + Send;

    /// Whether first installs are verified too (otherwise the first install of a `member_id`
    /// registers it on its `application_token` alone).
    fn verifies_first_installs(&self) -> bool {
        false
    }

    /// Whether every install and update is verified, also one that keeps the portal's token
    /// (otherwise only token changes and reinstalls are).
    fn verifies_every_install(&self) -> bool {
        false
    }
}

/// What a successful verification learned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// The portal's REST endpoint as a trusted source named it (stored instead of the event's).
    pub client_endpoint: Option<String>,
}

/// Refuses every verification: for functions that serve no install/update events.
#[derive(Clone, Copy, Debug, Default)]
pub struct RefuseTokenChanges;

impl InstallVerifier for RefuseTokenChanges {
    async fn verify(&self, _: &Event, _: Option<&Portal>) -> Result<Verified, VerifyError> {
        Err(VerifyError::NotConfigured(
            "this function does not verify installs",
        ))
    }
}

/// Why an install could not be verified. Never contains a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Verification is not possible with this configuration.
    #[error("not verifiable: {0}")]
    NotConfigured(&'static str),
    /// The event carries no access token to verify.
    #[error("the event carries no access_token")]
    NoAccessToken,
    /// The portal has no stored endpoint, or it is not a usable URL.
    #[error("stored client_endpoint unusable: {0}")]
    BadEndpoint(&'static str),
    /// The endpoint resolves to an address we never call.
    #[error("client_endpoint resolves to a non-public address")]
    ForbiddenAddress,
    /// DNS, connection, TLS or timeout failure.
    #[error("app.info unreachable: {0}")]
    Unreachable(String),
    /// `app.info` answered with a non-200 status.
    #[error("app.info answered HTTP {0}")]
    Status(u16),
    /// The answer is not a successful `app.info` result, or too large.
    #[error("app.info answer rejected: {0}")]
    BadAnswer(&'static str),
    /// The answer is for another application than `BITRIX24_CLIENT_ID`.
    #[error("app.info answer is for another application")]
    OtherApplication,
    /// The answer names another portal.
    #[error("app.info answer is for another portal")]
    OtherPortal,
}

/// Calls `app.info` with the event's `access_token` on the portal's **stored** endpoint to
/// confirm that the token is this application's on this portal. It counts only when
/// `BITRIX24_CLIENT_ID` is configured and the answer names that application: any valid token
/// of any other app on the portal would pass a bare `app.info`.
#[derive(Clone, Debug)]
pub struct AppInfoVerifier {
    config: VerifierConfig,
}

impl InstallVerifier for AppInfoVerifier {
    async fn verify(
        &self,
        event: &Event,
        portal: Option<&Portal>,
    ) -> Result<Verified, VerifyError> {
        let client_id = self
            .config
            .client_id
            .as_deref()
            .ok_or(VerifyError::NotConfigured("BITRIX24_CLIENT_ID is not set"))?;
        let portal = portal.ok_or(VerifyError::BadEndpoint("no portal record"))?;
        let access_token = event
            .auth
            .access_token
            .as_ref()
            .filter(|t| !t.is_empty())
            .ok_or(VerifyError::NoAccessToken)?;
        self.app_info(portal, access_token, client_id).await?;
        Ok(Verified::default())
    }
}

impl AppInfoVerifier {
    /// A verifier with these settings. Nothing is connected until a verification.
    pub fn new(config: VerifierConfig) -> Self {
        AppInfoVerifier { config }
    }

    /// Confirms `access_token` with `app.info` on the portal's stored `client_endpoint`.
    async fn app_info(
        &self,
        portal: &Portal,
        access_token: &Secret,
        client_id: &str,
    ) -> Result<(), VerifyError> {
        let endpoint = portal
            .client_endpoint
            .as_deref()
            .ok_or(VerifyError::BadEndpoint("none stored"))?;
        let mut url =
            reqwest::Url::parse(endpoint).map_err(|_| VerifyError::BadEndpoint("not a URL"))?;
        let plain_http_allowed = self.config.allow_insecure && url.scheme() == "http";
        if url.scheme() != "https" && !plain_http_allowed {
            return Err(VerifyError::BadEndpoint("not https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(VerifyError::BadEndpoint("credentials in URL"));
        }
        let host = url
            .host_str()
            .ok_or(VerifyError::BadEndpoint("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !self.config.allow_insecure {
            let domain = portal.domain.as_deref().unwrap_or("").to_ascii_lowercase();
            if domain != host {
                return Err(VerifyError::BadEndpoint(
                    "host differs from the portal's domain",
                ));
            }
        }
        let port = url
            .port_or_known_default()
            .ok_or(VerifyError::BadEndpoint("no port"))?;
        let addrs = self.resolve(&host, port).await?;

        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let url = url
            .join("app.info")
            .map_err(|_| VerifyError::BadEndpoint("not a URL"))?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.config.timeout)
            .timeout(self.config.timeout)
            .no_proxy();
        if host.parse::<IpAddr>().is_err() {
            builder = builder.resolve_to_addrs(&host, &addrs);
        }
        let client = builder
            .build()
            .map_err(|e| VerifyError::Unreachable(format!("client: {}", e.without_url())))?;
        let body = serde_json::json!({ "auth": access_token.expose() });
        let mut response = client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| VerifyError::Unreachable(describe(&e)))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(VerifyError::Status(status));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| VerifyError::Unreachable(describe(&e)))?
        {
            if bytes.len() + chunk.len() > self.config.max_response_bytes {
                return Err(VerifyError::BadAnswer("answer too large"));
            }
            bytes.extend_from_slice(&chunk);
        }
        check_answer(&bytes, portal, client_id)
    }

    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, VerifyError> {
        let lookup =
            tokio::time::timeout(self.config.timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| VerifyError::Unreachable("DNS timeout".into()))?
                .map_err(|_| VerifyError::Unreachable("DNS lookup failed".into()))?;
        let addrs: Vec<SocketAddr> = lookup.collect();
        if addrs.is_empty() {
            return Err(VerifyError::Unreachable("no address".into()));
        }
        if !self.config.allow_insecure && addrs.iter().any(|a| !is_public(a.ip())) {
            return Err(VerifyError::ForbiddenAddress);
        }
        Ok(addrs)
    }
}

/// A transport error without its URL (URLs are safe here, but kept short and uniform).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "transport error".into()
    }
}

/// Accepts only `{"result": {...}}` without `error`, for our client id (`CODE`, or a
/// `client_id` field) and this portal when the answer says which.
fn check_answer(bytes: &[u8], portal: &Portal, client_id: &str) -> Result<(), VerifyError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| VerifyError::BadAnswer("not JSON"))?;
    if v.get("error").is_some() {
        return Err(VerifyError::BadAnswer("error answer"));
    }
    let result = v
        .get("result")
        .and_then(|r| r.as_object())
        .ok_or(VerifyError::BadAnswer("no result object"))?;
    let text = |k: &str| {
        result.get(k).and_then(|x| match x {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let names = [text("client_id"), text("CLIENT_ID"), text("CODE")];
    if client_id.is_empty() || !names.iter().flatten().any(|n| n == client_id) {
        return Err(VerifyError::OtherApplication);
    }
    for key in ["member_id", "MEMBER_ID"] {
        if let Some(m) = text(key) {
            if m != portal.member_id {
                return Err(VerifyError::OtherPortal);
            }
        }
    }
    Ok(())
}

/// Whether an address is publicly routable (the ranges of RFC 6890 and friends excluded).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            let embedded_v4 =
                || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 IETF protocol assignments
                || (s[0] == 0x0064 && s[1] == 0xff9b && !is_public_v4(embedded_v4())) // NAT64
                || (s[0] == 0x2002) // 6to4
                || (s[0..6] == [0, 0, 0, 0, 0, 0])) // IPv4-compatible
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF 192.0.0/24
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portal() -> Portal {
        Portal {
            member_id: "m1".into(),
            domain: Some("example.bitrix24.com".into()),
            client_endpoint: Some("https://example.bitrix24.com/rest/".into()),
            ..Portal::default()
        }
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a} must not be public");
        }
        for a in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(a.parse().unwrap()), "{a} is public");
        }
    }

    #[test]
    fn answers_are_checked() {
        let ok = br#"{"result":{"ID":5,"CODE":"vendor.app","INSTALLED":true}}"#;
        assert_eq!(check_answer(ok, &portal(), "vendor.app"), Ok(()));
        assert_eq!(
            check_answer(ok, &portal(), "other"),
            Err(VerifyError::OtherApplication)
        );
        // A generic answer (any app's token on the portal) never verifies.
        let generic = br#"{"result":{"ID":5,"INSTALLED":true}}"#;
        assert_eq!(
            check_answer(generic, &portal(), "vendor.app"),
            Err(VerifyError::OtherApplication)
        );
        assert_eq!(
            check_answer(ok, &portal(), ""),
            Err(VerifyError::OtherApplication)
        );
        let err = br#"{"error":"expired_token","error_description":"The access token provided has expired"}"#;
        assert!(check_answer(err, &portal(), "vendor.app").is_err());
        let other = br#"{"result":{"CODE":"vendor.app","member_id":"m2"}}"#;
        assert_eq!(
            check_answer(other, &portal(), "vendor.app"),
            Err(VerifyError::OtherPortal)
        );
        assert!(check_answer(b"<html>", &portal(), "vendor.app").is_err());
    }

    #[tokio::test]
    async fn insecure_endpoints_are_refused_by_default() {
        let v = AppInfoVerifier::new(VerifierConfig::default());
        let token = Secret::new("t0k3n");
        let id = "vendor.app";
        let mut p = portal();
        p.client_endpoint = Some("http://example.bitrix24.com/rest/".into());
        assert_eq!(
            v.app_info(&p, &token, id).await,
            Err(VerifyError::BadEndpoint("not https"))
        );
        p.client_endpoint = Some("https://evil.example/rest/".into());
        assert!(matches!(
            v.app_info(&p, &token, id).await,
            Err(VerifyError::BadEndpoint(_))
        ));
        p.domain = Some("127.0.0.1".into());
        p.client_endpoint = Some("https://127.0.0.1/rest/".into());
        assert_eq!(
            v.app_info(&p, &token, id).await,
            Err(VerifyError::ForbiddenAddress)
        );
        p.domain = Some("localhost".into());
        p.client_endpoint = Some("https://localhost/rest/".into());
        assert_eq!(
            v.app_info(&p, &token, id).await,
            Err(VerifyError::ForbiddenAddress)
        );
    }
}
