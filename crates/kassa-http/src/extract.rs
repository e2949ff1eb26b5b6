//! Extractors whose every refusal is the API's error shape with `param` naming what was wrong
//! (risks S1, S6): strict JSON bodies (unknown fields refused, numbers out of range named), path
//! segments, query strings, and the body read itself, bounded in size and in time.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use utoipa::ToSchema;

use crate::HttpState;
use crate::error::ApiError;

/// A JSON body: `Content-Type: application/json`, read within the body-read time limit and the
/// route's size limit, parsed strictly.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + ToSchema + 'static> FromRequest<HttpState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &HttpState) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::invalid(
                None,
                "expected a JSON body with Content-Type: application/json",
            ));
        }
        let bytes = read_body(request, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may also be left out: an empty body, whatever its `Content-Type` says, is
/// `T::default()`; any other body is read within the same limits and parsed as strictly as
/// [`ApiJson`]'s.
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + ToSchema + Default + 'static> FromRequest<HttpState>
    for ApiJsonOrEmpty<T>
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &HttpState) -> Result<Self, ApiError> {
        let is_json = is_json(request.headers());
        let bytes = read_body(request, state).await?;
        if bytes.is_empty() {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        if !is_json {
            return Err(ApiError::invalid(
                None,
                "expected no body, or a JSON body with Content-Type: application/json",
            ));
        }
        parse_json(&bytes).map(ApiJsonOrEmpty)
    }
}

/// Past a route's limit, this much more of a body is still read (and dropped) before the 413:
/// a client that writes its whole body before reading the answer then reads the 413, where
/// closing on its unread bytes would reset the connection and lose the answer. A body larger
/// still is cut off.
pub const OVERSIZED_DRAIN_MAX_BYTES: usize = 8 * 1024 * 1024;

/// The whole body, or 408 `request_timeout` if the client has not sent it within
/// [`crate::ServerLimits::body_read_timeout`], or 413 past the API's body limit.
pub async fn read_body(request: Request, state: &HttpState) -> Result<Bytes, ApiError> {
    read_body_up_to(request, state, kassa_domain::limits::REQUEST_BODY_MAX_BYTES).await
}

/// [`read_body`] with a route's own limit of `max_bytes`.
pub async fn read_body_up_to(
    request: Request,
    state: &HttpState,
    max_bytes: usize,
) -> Result<Bytes, ApiError> {
    let too_large = ApiError::PayloadTooLarge {
        limit_bytes: max_bytes,
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let waits_to_send = request
        .headers()
        .get(axum::http::header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // Said too large up front: a client that waits for `100 Continue` is answered before it
    // sends anything; one whose body is past draining is not read at all.
    if declared.is_some_and(|length| {
        length > max_bytes
            && (waits_to_send || length > max_bytes.saturating_add(OVERSIZED_DRAIN_MAX_BYTES))
    }) {
        return Err(too_large);
    }
    let read = collect_body(request.into_body(), max_bytes);
    match tokio::time::timeout(state.limits.body_read_timeout, read).await {
        Err(_) => Err(ApiError::RequestTimeout),
        Ok(Ok(Some(bytes))) => Ok(bytes),
        Ok(Ok(None)) => Err(too_large),
        Ok(Err(())) => Err(ApiError::invalid(
            None,
            "the request body could not be read",
        )),
    }
}

/// The body's bytes; `None` past `max_bytes` (read on, and dropped, up to
/// [`OVERSIZED_DRAIN_MAX_BYTES`] more); `Err` when the connection broke.
async fn collect_body(mut body: axum::body::Body, max_bytes: usize) -> Result<Option<Bytes>, ()> {
    use http_body_util::BodyExt;
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| ())?.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen <= max_bytes {
            kept.extend_from_slice(&data);
        } else if seen > max_bytes.saturating_add(OVERSIZED_DRAIN_MAX_BYTES) {
            return Ok(None);
        }
    }
    Ok((seen <= max_bytes).then(|| Bytes::from(kept)))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

/// Parses `bytes` as `T`, naming the field of any error: unknown and missing fields by their
/// name, wrong types and out-of-range numbers by their path (`lines[0].quantity`).
pub fn parse_json<T: DeserializeOwned + ToSchema + 'static>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
    deserializer
        .end()
        .map_err(|_| ApiError::invalid(None, "the body is not valid JSON (trailing characters)"))?;
    let tree: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|_| ApiError::invalid(None, "the body is not valid JSON"))?;
    let (schema, components) = &*described::<T>();
    objects_where_described(&tree, schema, components, "").map_err(|path| {
        let param = (!path.is_empty()).then_some(path);
        ApiError::invalid(param, "must be a JSON object")
    })?;
    Ok(value)
}

/// A request type's description: its schema and the schemas it refers to, made once per type.
type Described = Arc<(
    serde_json::Value,
    serde_json::Map<String, serde_json::Value>,
)>;

fn described<T: ToSchema + 'static>() -> Described {
    static MADE: LazyLock<Mutex<HashMap<TypeId, Described>>> = LazyLock::new(Mutex::default);
    let mut made = MADE.lock().unwrap_or_else(PoisonError::into_inner);
    made.entry(TypeId::of::<T>())
        .or_insert_with(|| {
            let mut referred = Vec::new();
            T::schemas(&mut referred);
            let components = referred
                .into_iter()
                .filter_map(|(name, schema)| Some((name, serde_json::to_value(schema).ok()?)))
                .collect();
            let schema = serde_json::to_value(T::schema()).unwrap_or_default();
            Arc::new((schema, components))
        })
        .clone()
}

/// Serde reads a struct from a JSON array of its fields in order (`[null, null]` for
/// `{unit_amount, active}`); the API promises objects, and its description says so. So the
/// body is walked along the request type's own schema, and wherever that says object, anything
/// but an object is refused; `Err` holds the path. Nothing else is judged here: the types and
/// the use cases do the rest.
fn objects_where_described(
    value: &serde_json::Value,
    schema: &serde_json::Value,
    components: &serde_json::Map<String, serde_json::Value>,
    path: &str,
) -> Result<(), String> {
    use serde_json::Value;
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(target) => components
            .get(target.rsplit('/').next().unwrap_or(target))
            .unwrap_or(&Value::Null),
        None => schema,
    };
    for part in schema["allOf"].as_array().into_iter().flatten() {
        objects_where_described(value, part, components, path)?;
    }
    // `Option<T>` is `oneOf [null, T]`: a value that is not null must fit one of the others.
    let choices: Vec<&Value> = ["oneOf", "anyOf"]
        .iter()
        .filter_map(|key| schema[*key].as_array())
        .flatten()
        .filter(|choice| choice["type"] != "null")
        .collect();
    if !choices.is_empty() {
        if value.is_null() {
            return Ok(());
        }
        let mut refused = Ok(());
        for choice in choices {
            match objects_where_described(value, choice, components, path) {
                Ok(()) => return Ok(()),
                Err(at) => refused = Err(at),
            }
        }
        return refused;
    }
    let says_object = schema.get("properties").is_some()
        || schema["type"] == "object"
        || schema["type"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "object"));
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"].as_object();
            // A map's values (`additionalProperties: {schema}`) are walked like fields.
            let others = schema
                .get("additionalProperties")
                .filter(|other| other.is_object());
            for (name, field) in fields {
                let property = properties.and_then(|p| p.get(name)).or(others);
                if let Some(property) = property {
                    let inner = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    objects_where_described(field, property, components, &inner)?;
                }
            }
        }
        _ if says_object && !value.is_null() => return Err(path.to_owned()),
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, element) in items.iter().enumerate() {
                    objects_where_described(element, item, components, &format!("{path}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.inner();
    let text = without_position(&inner.to_string());
    // "." is the root; "?" an object key that was never read (the body ended first).
    let at = (path != "." && !path.contains('?')).then_some(path);
    // "unknown field `price`" / "missing field `sku`": the path names the field itself (unknown)
    // or the object that lacks it (missing); either way the param is the field's full path.
    let names_a_field = ["unknown field", "missing field", "duplicate field"]
        .iter()
        .any(|prefix| text.starts_with(prefix));
    let param = match (field_in_backticks(&text), at) {
        (Some(field), Some(path)) if names_a_field => {
            if path == field || path.ends_with(&format!(".{field}")) {
                Some(path)
            } else {
                Some(format!("{path}.{field}"))
            }
        }
        (Some(field), None) if names_a_field => Some(field),
        (_, at) => at,
    };
    let message = if inner.is_syntax() || inner.is_eof() {
        if text.contains("out of range") {
            "the number is out of range".to_owned()
        } else {
            "the body is not valid JSON".to_owned()
        }
    } else {
        text
    };
    ApiError::invalid(param, message)
}

/// serde_json ends messages with " at line 1 column 30"; the client needs the field, not that.
fn without_position(text: &str) -> String {
    text.rsplit_once(" at line ")
        .map_or(text, |(message, _)| message)
        .to_owned()
}

fn field_in_backticks(text: &str) -> Option<String> {
    let (_, rest) = text.split_once('`')?;
    let (field, _) = rest.split_once('`')?;
    Some(field.to_owned())
}

/// The value of a header that may appear at most once: `Ok(None)` when absent, refused when
/// repeated (which copy would count is not a guess Kassa makes) or not printable ASCII.
pub fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::invalid(Some(name.into()), "must be sent once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| ApiError::invalid(Some(name.into()), "must be printable ASCII"))
}

/// Path parameters. Every id in a path (carts, orders, SKUs, events) is an identifier, so a
/// segment is refused — `invalid_request` naming it — unless it is 1 to
/// [`PATH_SEGMENT_MAX_CHARS`] ASCII letters, digits, `-`, `_` or `.`: no NUL, control or
/// non-ASCII text ever reaches a query.
pub struct ApiPath<T>(pub T);

/// Longest path parameter; Kassa's ids are far shorter.
pub const PATH_SEGMENT_MAX_CHARS: usize = 128;

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let not_valid = |param: &str| {
            ApiError::invalid(
                Some(param.to_owned()),
                format!(
                    "must be 1 to {PATH_SEGMENT_MAX_CHARS} characters of ASCII letters, digits, '-', '_' or '.'"
                ),
            )
        };
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| not_valid("path"))?;
        for (name, value) in &raw {
            let shaped = (1..=PATH_SEGMENT_MAX_CHARS).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !shaped {
                return Err(not_valid(name));
            }
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(not_valid("path")),
            Err(_) => Err(ApiError::Internal),
        }
    }
}

/// A query string; a missing, repeated or unknown parameter is `invalid_request` naming it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(error)) => {
                let text = error.body_text();
                let text = text
                    .split_once("Failed to deserialize query string: ")
                    .map_or(text.as_str(), |(_, rest)| rest);
                Err(ApiError::invalid(field_in_backticks(text), text))
            }
            Err(_) => Err(ApiError::invalid(None, "the query string is not valid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Line {
        sku: String,
        quantity: i64,
    }

    #[derive(Debug, Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Order {
        lines: Vec<Line>,
    }

    /// Found by schemathesis: serde takes `[null, null]` for a struct of two optional fields.
    #[test]
    fn risk_s6_a_struct_written_as_an_array_is_refused_at_any_depth() {
        assert_eq!(param_of(r#"[[]]"#), None);
        assert_eq!(
            param_of(r#"{"lines": [["A", 1]]}"#).as_deref(),
            Some("lines[0]")
        );
        assert!(parse_json::<Order>(br#"{"lines": [{"sku": "A", "quantity": 1}]}"#).is_ok());
        use crate::wire::{CreateProductRequest, EditOrderRequest, UpdateVariantRequest};
        let refused_at = |result: Result<(), ApiError>| match result {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("{other:?}"),
        };
        let update = parse_json::<UpdateVariantRequest>(b"[null, null]").map(drop);
        assert_eq!(refused_at(update), None);
        let address = br#"{"shipping_address": ["Ada", "1 St", "London", "N1", "GB"]}"#;
        let edit = parse_json::<EditOrderRequest>(address).map(drop);
        assert_eq!(refused_at(edit).as_deref(), Some("shipping_address"));
        let variant = br#"{"name": "Mug", "variants": [["MUG", 100, "eur", {}]]}"#;
        let product = parse_json::<CreateProductRequest>(variant).map(drop);
        assert_eq!(refused_at(product).as_deref(), Some("variants[0]"));
        // What is written as the description says still passes, nulls included.
        let no_change = br#"{"shipping_address": null, "lines": []}"#;
        assert!(parse_json::<EditOrderRequest>(no_change).is_ok());
        let fine = br#"{"name": "Mug", "variants": [{"sku": "MUG", "unit_amount": 100,
            "currency": "eur", "attributes": {"colour": "blue"}}]}"#;
        assert!(parse_json::<CreateProductRequest>(fine).is_ok());
    }

    fn param_of(body: &str) -> Option<String> {
        match parse_json::<Order>(body.as_bytes()) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn risk_s6_every_json_error_names_its_field() {
        let line = |rest: &str| format!("{{\"lines\":[{{\"sku\":\"A\",{rest}}}]}}");
        assert_eq!(
            param_of(&line("\"quantity\":1e400")).as_deref(),
            Some("lines[0].quantity")
        );
        assert_eq!(
            param_of(&line("\"quantity\":\"2\"")).as_deref(),
            Some("lines[0].quantity")
        );
        assert_eq!(
            param_of(&line("\"quantity\":1,\"price\":1")).as_deref(),
            Some("lines[0].price")
        );
        assert_eq!(
            param_of("{\"lines\":[{\"sku\":\"A\"}]}").as_deref(),
            Some("lines[0].quantity")
        );
        assert_eq!(param_of("{}").as_deref(), Some("lines"));
        assert_eq!(param_of("{\"price\":1}").as_deref(), Some("price"));
        assert_eq!(param_of("{\"lines\":[]} x"), None);
        assert_eq!(param_of("{"), None);
        assert_eq!(param_of("nonsense"), None);
    }
}
