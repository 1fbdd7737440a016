//! The webhook request as the pipeline sees it: method, content type and body bytes, taken
//! from the API Gateway HTTP API (payload 2.0) event without trusting any of it.
//!
//! The functions receive the raw invocation payload (`serde_json::Value`) and convert it here
//! rather than through `lambda_http`: its conversion decodes `isBase64Encoded` bodies with an
//! `expect` (a panic, which release builds turn into a process abort), and any payload that
//! does not deserialize would fail the invocation (a 5xx from the gateway). Here both are a
//! 400 with a reason.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;

/// What the pipeline needs of one HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookRequest {
    /// The HTTP method, upper case (`POST`).
    pub method: String,
    /// The `Content-Type` header, if any (lossily decoded).
    pub content_type: Option<String>,
    /// The body, base64 undone.
    pub body: Vec<u8>,
}

/// Why an invocation payload is not a usable HTTP request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The payload is not an API Gateway HTTP API (2.0) event.
    #[error("malformed request event")]
    Malformed,
    /// `isBase64Encoded` is set but the body is not valid base64.
    #[error("body is marked base64 but is not valid base64")]
    BadBase64,
    /// The body is larger than the limit (checked before base64 decoding allocates).
    #[error("body larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

impl WebhookRequest {
    /// Converts an invocation payload, refusing bodies larger than `max_body_bytes` (after
    /// base64 decoding) before decoding them.
    pub fn from_payload(
        payload: serde_json::Value,
        max_body_bytes: usize,
    ) -> Result<WebhookRequest, RequestError> {
        let event: ApiGatewayV2httpRequest =
            serde_json::from_value(payload).map_err(|_| RequestError::Malformed)?;
        WebhookRequest::from_event(&event, max_body_bytes)
    }

    /// Converts a deserialized API Gateway event.
    pub fn from_event(
        event: &ApiGatewayV2httpRequest,
        max_body_bytes: usize,
    ) -> Result<WebhookRequest, RequestError> {
        let method = event
            .request_context
            .http
            .method
            .as_str()
            .to_ascii_uppercase();
        let content_type = event
            .headers
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let text = event.body.as_deref().unwrap_or("");
        let body = if event.is_base64_encoded {
            // Base64 is 4 bytes for every 3: refuse before allocating for a huge body.
            if text.len() / 4 * 3 > max_body_bytes + 3 {
                return Err(RequestError::TooLarge {
                    limit: max_body_bytes,
                });
            }
            base64::engine::general_purpose::STANDARD
                .decode(text.trim_end())
                .map_err(|_| RequestError::BadBase64)?
        } else {
            text.as_bytes().to_vec()
        };
        if body.len() > max_body_bytes {
            return Err(RequestError::TooLarge {
                limit: max_body_bytes,
            });
        }
        Ok(WebhookRequest {
            method,
            content_type,
            body,
        })
    }
}
