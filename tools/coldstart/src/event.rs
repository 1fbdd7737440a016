//! The invocation payload: an API Gateway HTTP API (payload format 2.0) event as Lambda
//! delivers it for a Bitrix24 webhook POST.

use serde_json::json;

/// The API Gateway v2 event for `POST {route}` with a form `body`. API Gateway HTTP APIs
/// base64-encode `application/x-www-form-urlencoded` bodies (`isBase64Encoded: true`);
/// `base64 = false` sends the body as text.
pub fn apigw_v2(route: &str, body: &[u8], base64: bool, request_id: &str) -> Vec<u8> {
    let host = "abc123defg.execute-api.eu-central-1.amazonaws.com";
    let body_text = if base64 {
        base64_encode(body)
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let event = json!({
        "version": "2.0",
        "routeKey": format!("POST {route}"),
        "rawPath": route,
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "content-length": body.len().to_string(),
            "content-type": "application/x-www-form-urlencoded",
            "host": host,
            "user-agent": "Bitrix24 Webhook Engine",
            "x-amzn-trace-id": "Root=1-674c7a00-0123456789abcdef01234567",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123defg",
            "domainName": host,
            "domainPrefix": "abc123defg",
            "http": {
                "method": "POST",
                "path": route,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "Bitrix24 Webhook Engine"
            },
            "requestId": request_id,
            "routeKey": format!("POST {route}"),
            "stage": "$default",
            "time": "01/Dec/2026:20:00:00 +0000",
            "timeEpoch": 1796155200000u64
        },
        "body": body_text,
        "isBase64Encoded": base64
    });
    event.to_string().into_bytes()
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
    }
}
