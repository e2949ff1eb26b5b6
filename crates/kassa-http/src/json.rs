//! Strict JSON bodies: every request type denies unknown fields, and every way a body can be bad
//! (not JSON, wrong type, unknown field such as a client-sent `price`, too large) becomes the
//! API's error shape with `param` naming the field where one can be named (risks S1, S6).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `axum::Json` with the API's error mapping.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(rejection_to_error(rejection)),
        }
    }
}

fn rejection_to_error(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge;
    }
    let detail = rejection.body_text();
    let param = field_named_in(&detail);
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a JSON body with Content-Type: application/json".to_owned()
        }
        JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON".to_owned(),
        _ => serde_message(&detail),
    };
    ApiError::invalid(param, message)
}

/// serde names the offending field in backticks: "unknown field `price`, expected …",
/// "missing field `sku`"; for type errors the path comes before a colon ("lines[0].quantity: …").
fn field_named_in(detail: &str) -> Option<String> {
    let message = serde_message(detail);
    if let Some(start) = message.find('`') {
        let rest = &message[start + 1..];
        if let Some(end) = rest.find('`')
            && message.contains("field")
        {
            return Some(rest[..end].to_owned());
        }
    }
    let (path, _) = message.split_once(": ")?;
    (!path.is_empty() && !path.contains(' ')).then(|| path.to_owned())
}

/// Axum prefixes serde's text with "Failed to deserialize the JSON body into the target type: ".
fn serde_message(detail: &str) -> String {
    detail
        .split_once("target type: ")
        .map_or(detail, |(_, rest)| rest)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unknown_and_missing_fields() {
        let unknown = "Failed to deserialize the JSON body into the target type: unknown field `unit_amount`, expected `sku` or `quantity` at line 1 column 30";
        assert_eq!(field_named_in(unknown).as_deref(), Some("unit_amount"));
        let missing = "Failed to deserialize the JSON body into the target type: missing field `sku` at line 1 column 2";
        assert_eq!(field_named_in(missing).as_deref(), Some("sku"));
        let typed = "Failed to deserialize the JSON body into the target type: quantity: invalid type: string \"2\", expected i64 at line 1 column 16";
        assert_eq!(field_named_in(typed).as_deref(), Some("quantity"));
    }
}
