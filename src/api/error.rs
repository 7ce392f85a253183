//! OpenAI-style errors: `{"error":{"message","type","param","code"}}` with the right status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::openai::{ErrorBody, ErrorObject};
use crate::service::infer::NotStarted;
use crate::service::{Failure, Invalid};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), kind, param: None, code: None, retry_after: None }
    }
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = param.map(str::to_string);
        e
    }
    /// The same error for a request that reached this one under other field names (the
    /// Responses API over chat): the param and the names quoted in the message are renamed.
    pub fn rename_param(mut self, rename: impl Fn(&str) -> String) -> Self {
        if let Some(p) = self.param.take() {
            let to = rename(&p);
            self.message = self.message.replace(&format!("'{p}'"), &format!("'{to}'"));
            self.param = Some(to);
        }
        self
    }
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", "Invalid or missing API key: send `Authorization: Bearer <key>`")
            .with_code("invalid_api_key")
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message).with_code("not_found")
    }
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request_error", "Method not allowed for this endpoint")
            .with_code("method_not_allowed")
    }
    pub fn too_many_requests(retry_after: u32) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "All slots are busy and the queue is full; retry later")
            .with_code("queue_full");
        e.retry_after = Some(retry_after);
        e
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message).with_code("unavailable");
        e.retry_after = Some(1);
        e
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody { error: ErrorObject { message: &self.message, kind: self.kind, param: self.param.as_deref(), code: self.code } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read: tell the client not to reuse the connection.
            resp.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        match e {
            Invalid::Body(m) => ApiError::bad_request(m, None),
            Invalid::Field { message, param } => ApiError::bad_request(message, param.as_deref()),
            Invalid::ContextLength { message, param } => ApiError::bad_request(message, Some(&param)).with_code("context_length_exceeded"),
            Invalid::Unsupported { message, param } => ApiError::bad_request(message, Some(&param)).with_code("unsupported"),
            Invalid::Unavailable(m) => ApiError::unavailable(m),
            Invalid::Internal => ApiError::internal("preparing the request failed"),
        }
    }
}

impl From<NotStarted> for ApiError {
    fn from(e: NotStarted) -> Self {
        match e {
            NotStarted::Invalid(e) => e.into(),
            NotStarted::Failure(f) => f.into(),
        }
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Busy => ApiError::too_many_requests(1),
            Failure::Unavailable(m) => ApiError::unavailable(m),
            Failure::Engine(m) => ApiError::internal(m),
            Failure::Refused { message, param } => ApiError::bad_request(message, param.as_deref()),
        }
    }
}

/// Body rejections (too large, unreadable) keep their status but get a JSON body.
impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        let status = r.status();
        let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
        let mut e = Self::new(status, kind, r.body_text());
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            e.code = Some("request_too_large");
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_maps_to_one_openai_error() {
        let e = |x: Invalid| {
            let a = ApiError::from(x);
            (a.status.as_u16(), a.param, a.code)
        };
        assert_eq!(e(Invalid::Body("not JSON".into())), (400, None, None));
        assert_eq!(e(Invalid::field("bad", Some("n"))), (400, Some("n".into()), None));
        let too_long = Invalid::ContextLength { message: "long".into(), param: "messages".into() };
        assert_eq!(e(too_long), (400, Some("messages".into()), Some("context_length_exceeded")));
        assert_eq!(e(Invalid::unsupported("no grammar", "tool_choice")), (400, Some("tool_choice".into()), Some("unsupported")));
        assert_eq!(e(Invalid::Unavailable("down".into())), (503, None, Some("unavailable")));
        assert_eq!(e(Invalid::Internal).0, 500);
        let f = |x: Failure| {
            let a = ApiError::from(x);
            (a.status.as_u16(), a.retry_after)
        };
        assert_eq!(f(Failure::Busy), (429, Some(1)));
        assert_eq!(f(Failure::Unavailable("loading".into())), (503, Some(1)));
        assert_eq!(f(Failure::Engine("decode failed".into())), (500, None));
    }
}
