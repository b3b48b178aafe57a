//! CORS for the BOSH endpoint (browsers post from pages on other origins): the list of
//! allowed origins, preflight answers, and the headers added to every response of an
//! allowed origin, empty BOSH responses and errors included.

use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

/// The `Access-Control-Allow-Origin` value for this request, if its `Origin` is allowed.
pub fn allow_origin(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let o = origin.to_str().ok()?;
    if allowed.iter().any(|a| a == "*") {
        return Some(origin.clone());
    }
    allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
        .then(|| origin.clone())
}

/// True if a WebSocket upgrade with these headers may proceed: no `Origin` (not a
/// browser) or an allowed one.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    headers.get(header::ORIGIN).is_none() || allow_origin(headers, allowed).is_some()
}

/// True if the request's `Origin` names the host it was sent to (`Host`, port included):
/// a page of this very listener, which is not a cross-origin request.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .map(|a| a.trim_end_matches('/'));
    authority.is_some_and(|a| !a.is_empty() && a.eq_ignore_ascii_case(host))
}

/// The answer to an `OPTIONS` preflight: 204 with the CORS headers when the origin is
/// allowed (added by [`decorate`]), 403 otherwise.
pub fn preflight(headers: &HeaderMap, allowed: bool) -> Response<Full<bytes::Bytes>> {
    if !allowed {
        return Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(bytes::Bytes::from_static(
                b"origin not allowed\n",
            )))
            .expect("valid response");
    }
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("Content-Type"));
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS")
        .header(header::ACCESS_CONTROL_ALLOW_HEADERS, requested)
        .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
        .body(Full::new(bytes::Bytes::new()))
        .expect("valid response")
}

/// Adds the CORS headers for an allowed origin to any response.
pub fn decorate<B>(resp: &mut Response<B>, allow: Option<HeaderValue>) {
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = allow {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Content-Type, Content-Encoding"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(o: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, o.parse().unwrap());
        h
    }

    #[test]
    fn allowed_origins() {
        let list = vec!["https://app.example".to_string()];
        assert!(allow_origin(&with_origin("https://app.example"), &list).is_some());
        assert!(allow_origin(&with_origin("https://evil.example"), &list).is_none());
        assert!(allow_origin(&HeaderMap::new(), &list).is_none());
        let any = vec!["*".to_string()];
        assert_eq!(
            allow_origin(&with_origin("http://x"), &any).unwrap(),
            "http://x"
        );
        assert!(origin_allowed(&HeaderMap::new(), &[]));
        assert!(!origin_allowed(&with_origin("http://x"), &[]));
    }

    #[test]
    fn same_origin_is_the_host_the_request_went_to() {
        let with = |origin: &str, host: &str| {
            let mut h = with_origin(origin);
            h.insert(header::HOST, host.parse().unwrap());
            h
        };
        assert!(same_origin(&with(
            "http://localhost:5280",
            "localhost:5280"
        )));
        assert!(same_origin(&with("https://Chat.Example", "chat.example")));
        assert!(!same_origin(&with(
            "http://localhost:5280",
            "localhost:5281"
        )));
        assert!(!same_origin(&with("http://evil.example", "localhost:5280")));
        assert!(!same_origin(&with("null", "localhost:5280")));
        assert!(!same_origin(&with_origin("http://localhost:5280")));
    }
}
