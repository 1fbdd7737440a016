//! Checks of the URLs this crate calls: a portal's `client_endpoint` (as the OAuth server
//! hands it out, and before every REST call) and REST method names.

use reqwest::Url;

/// A usable `client_endpoint`: an absolute `https` URL (`http` too when `allow_http`) with a
/// host, no credentials, no query or fragment, and a path ending in `/`
/// (`https://x.bitrix24.eu/rest/`). The reason names no part of the URL.
pub(crate) fn client_endpoint(text: &str, allow_http: bool) -> Result<Url, &'static str> {
    let url = Url::parse(text).map_err(|_| "not a URL")?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err("not https"),
        _ => return Err("not http(s)"),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("query or fragment in the URL");
    }
    if !url.path().ends_with('/') {
        return Err("path does not end in '/'");
    }
    Ok(url)
}

/// `{client_endpoint}{method}`, for a method name of letters, digits, `.` and `_` (so it can
/// only ever name a method under the endpoint, never another path).
pub(crate) fn method_url(endpoint: &Url, method: &str) -> Result<Url, &'static str> {
    check_method(method)?;
    endpoint
        .join(method)
        .map_err(|_| "method name not joinable")
}

/// Method names as Bitrix24 has them (`imconnector.send.status.delivery`).
pub(crate) fn check_method(method: &str) -> Result<(), &'static str> {
    let ok = !method.is_empty()
        && method.len() <= 100
        && !method.starts_with('.')
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("method name: letters, digits, '.' and '_' only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_urls_ending_in_a_slash() {
        assert!(client_endpoint("https://x.bitrix24.eu/rest/", false).is_ok());
        assert_eq!(
            client_endpoint("http://x.bitrix24.eu/rest/", false),
            Err("not https")
        );
        assert!(client_endpoint("http://127.0.0.1:9/portal/m/rest/", true).is_ok());
        for (bad, why) in [
            ("ftp://x.bitrix24.eu/rest/", "not http(s)"),
            ("https://x.bitrix24.eu/rest", "path does not end in '/'"),
            ("https://u:p@x.bitrix24.eu/rest/", "credentials in the URL"),
            (
                "https://x.bitrix24.eu/rest/?a=1",
                "query or fragment in the URL",
            ),
            ("/rest/", "not a URL"),
        ] {
            assert_eq!(client_endpoint(bad, true), Err(why), "{bad}");
        }
    }

    #[test]
    fn method_names_stay_under_the_endpoint() {
        let ep = client_endpoint("https://x.bitrix24.eu/rest/", false).unwrap();
        assert_eq!(
            method_url(&ep, "app.info").unwrap().as_str(),
            "https://x.bitrix24.eu/rest/app.info"
        );
        for bad in [
            "",
            "../oauth",
            "a/b",
            "a?b",
            "//evil.example/x",
            ".x",
            "a b",
        ] {
            assert!(method_url(&ep, bad).is_err(), "{bad}");
        }
    }
}
