//! The emulator's HTTP surface: Stripe's `/v1/` endpoints with Stripe's auth, form encoding,
//! idempotency and error shapes, and the fault injection that wraps every request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::EmulatorConfig;
use crate::objects;
use crate::world::{ApiFault, IdempotentEntry, Outcome, World, invalid};

/// Largest page a list returns.
const LIST_LIMIT_MAX: usize = 100;
const LIST_LIMIT_DEFAULT: usize = 10;

#[derive(Clone)]
pub struct Shared {
    pub world: Arc<Mutex<World>>,
    pub config: EmulatorConfig,
    pub stopped: watch::Receiver<bool>,
}

impl Shared {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/payment_intents", post(create_intent).get(list_intents))
        .route(
            "/v1/payment_intents/{id}",
            get(retrieve_intent).post(update_intent),
        )
        .route("/v1/payment_intents/{id}/confirm", post(confirm_intent))
        .route("/v1/payment_intents/{id}/capture", post(capture_intent))
        .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
        .route("/v1/refunds", post(create_refund).get(list_refunds))
        .route("/v1/refunds/{id}", get(retrieve_refund))
        .route(
            "/v1/checkout/sessions",
            post(create_session).get(list_sessions),
        )
        .route("/v1/checkout/sessions/{id}", get(retrieve_session))
        .route(
            "/v1/checkout/sessions/{id}/line_items",
            get(list_session_line_items),
        )
        .route("/v1/checkout/sessions/{id}/expire", post(expire_session))
        .route("/v1/accounts", post(create_account))
        .route("/v1/accounts/{id}", get(retrieve_account))
        .route("/v1/transfers", post(create_transfer).get(list_transfers))
        .route("/v1/transfers/{id}", get(retrieve_transfer))
        .route(
            "/v1/transfers/{id}/reversals",
            post(create_transfer_reversal).get(list_transfer_reversals),
        )
        .route("/v1/customers", post(create_customer))
        .route("/v1/customers/{id}", get(retrieve_customer))
        .route(
            "/v1/subscriptions/{id}",
            get(retrieve_subscription)
                .post(update_subscription)
                .delete(cancel_subscription),
        )
        .route("/v1/invoices", get(list_invoices))
        .route("/v1/invoices/{id}", get(retrieve_invoice))
        .route("/v1/invoices/{id}/pay", post(pay_invoice))
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(retrieve_event))
        .merge(crate::control::router())
        .merge(crate::page::router())
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            count_request,
        ))
        .with_state(shared)
}

/// Counts each call of Stripe's API (`/v1/…`) by endpoint as it arrives, before auth and
/// faults: a hung or refused call was still made. Tests read the counts to see whether Kassa
/// called at all; the control API and the hosted page are not Stripe's API and are not counted.
async fn count_request(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let endpoint = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str)
        .filter(|path| path.starts_with("/v1/"))
        .map(|path| format!("{} {}", request.method(), endpoint_pattern(path)));
    if let Some(endpoint) = endpoint {
        *shared.world().requests.entry(endpoint).or_default() += 1;
    }
    next.run(request).await
}

/// A route as the fault rules name it: each `{id}` segment is `*`.
fn endpoint_pattern(route: &str) -> String {
    route
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "*"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A parsed form or query: Stripe's `a[b]=c` nesting kept as flat keys.
pub type Form = BTreeMap<String, String>;

pub fn parse_form(text: &str) -> Form {
    let mut form = Form::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode(key), decode(value));
        // Repeated list keys (`types[]`) are joined so filters can split them again.
        form.entry(key)
            .and_modify(|old| {
                old.push(',');
            })
            .or_default()
            .push_str(&value);
    }
    form
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `metadata[key]=value` fields as a JSON object.
pub fn metadata_of(form: &Form) -> Option<Value> {
    let mut metadata = Map::new();
    for (key, value) in form {
        if let Some(name) = key
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            metadata.insert(name.to_owned(), json!(value));
        }
    }
    (!metadata.is_empty()).then_some(Value::Object(metadata))
}

/// Which key authenticated the request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Secret,
    Publishable,
}

pub fn authenticate(shared: &Shared, headers: &HeaderMap, form: &Form) -> Result<Caller, Response> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .or_else(|| form.get("key").map(String::as_str));
    match presented {
        Some(key) if key == shared.config.secret_key => Ok(Caller::Secret),
        Some(key) if key == shared.config.publishable_key => Ok(Caller::Publishable),
        _ => Err(answer(
            401,
            objects::error(
                "invalid_request_error",
                None,
                "Invalid API Key provided.",
                None,
            ),
            false,
        )),
    }
}

pub fn answer(status: u16, body: Value, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert("request-id", HeaderValue::from_static("req_emulator"));
    // As Stripe's API does, for Stripe.js calling it from a shop's pages with the publishable key.
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if status == StatusCode::CONFLICT
        || status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        headers.insert("stripe-should-retry", HeaderValue::from_static("true"));
    }
    response
}

fn publishable_forbidden() -> Response {
    answer(
        401,
        objects::error(
            "invalid_request_error",
            None,
            "This API call cannot be made with a publishable API key.",
            None,
        ),
        false,
    )
}

/// Every mutating call goes through here: auth, faults, idempotency, the operation.
async fn mutate(
    shared: &Shared,
    headers: &HeaderMap,
    route: (&Method, &str),
    form: Form,
    allow_publishable: bool,
    operation: impl FnOnce(&mut World, &Form, Caller) -> Outcome,
) -> Response {
    let caller = match authenticate(shared, headers, &form) {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if caller == Caller::Publishable && !allow_publishable {
        return publishable_forbidden();
    }
    let fault = shared.world().take_fault(route.0.as_str(), route.1);
    if let Some(ApiFault::Status(status)) = fault {
        let kind = if status == 429 {
            "rate_limit_error"
        } else {
            "api_error"
        };
        return answer(
            status,
            objects::error(kind, None, "Injected fault.", None),
            false,
        );
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|key| (caller_tag(caller).to_owned(), key.to_owned()));
    let request_hash = format!(
        "{} {} {:?}",
        route.0,
        route.1,
        form.iter().filter(|(k, _)| *k != "key").collect::<Vec<_>>()
    );
    if let Some(key) = &key
        && let Some(response) = claim_key(shared, key, &request_hash)
    {
        return response;
    }
    // Until an answer is stored, the key is only claimed; if the client goes away first (a hang),
    // the claim is released as Stripe does, so the retry is not refused forever.
    let claim = key.clone().map(|key| Claim {
        world: shared.world.clone(),
        key,
    });
    if let Some(ApiFault::Hang(ms)) = fault {
        hold(shared, ms).await;
    }
    let (status, body) = {
        let mut world = shared.world();
        match operation(&mut world, &form, caller) {
            Ok(body) => (200, body),
            Err((status, body)) => (status, body),
        }
    };
    if let Some(key) = &key
        && let Some(entry) = shared.world().idempotency.get_mut(key)
    {
        entry.answer = Some((status, body.clone()));
    }
    drop(claim);
    if fault == Some(ApiFault::LoseResponse) {
        hold(shared, 0).await;
    }
    answer(status, body, false)
}

/// An idempotency key claimed by a request still running; released if the request is dropped
/// before an answer was stored.
struct Claim {
    world: Arc<Mutex<World>>,
    key: (String, String),
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut world = self.world.lock().unwrap_or_else(PoisonError::into_inner);
        if world
            .idempotency
            .get(&self.key)
            .is_some_and(|entry| entry.answer.is_none())
        {
            world.idempotency.remove(&self.key);
        }
    }
}

fn caller_tag(caller: Caller) -> &'static str {
    match caller {
        Caller::Secret => "secret",
        Caller::Publishable => "publishable",
    }
}

/// Replays a finished key, refuses a reused or in-flight one, or records a new one in flight.
fn claim_key(shared: &Shared, key: &(String, String), request_hash: &str) -> Option<Response> {
    let mut world = shared.world();
    let now = world.now();
    match world.idempotency.get(key) {
        Some(entry) if entry.request_hash != request_hash => Some(answer(
            400,
            objects::error(
                "idempotency_error",
                None,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                None,
            ),
            false,
        )),
        Some(IdempotentEntry {
            answer: Some((status, body)),
            ..
        }) => Some(answer(*status, body.clone(), true)),
        Some(_) => Some(answer(
            409,
            objects::error(
                "idempotency_error",
                Some("idempotency_key_in_use"),
                "There is currently another in-progress request using this Idempotent Key.",
                None,
            ),
            false,
        )),
        None => {
            world.forget_old_keys(now);
            world.idempotency.insert(
                key.clone(),
                IdempotentEntry {
                    request_hash: request_hash.to_owned(),
                    answer: None,
                    created: now,
                },
            );
            None
        }
    }
}

/// Holds a request for `ms` milliseconds, or until shutdown when `ms` is 0.
async fn hold(shared: &Shared, ms: u64) {
    let mut stopped = shared.stopped.clone();
    let until_stopped = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    if ms == 0 {
        until_stopped.await;
    } else {
        tokio::select! {
            () = until_stopped => {},
            () = tokio::time::sleep(Duration::from_millis(ms)) => {},
        }
    }
}

/// A `POST` to `path` that makes an object from the form and its `metadata[…]` fields.
async fn create_with_metadata(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
    body: &Bytes,
    make: impl FnOnce(&mut World, &Form, Value) -> Outcome,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(body));
    mutate(
        shared,
        headers,
        (&Method::POST, path),
        form,
        false,
        |world, form, _| make(world, form, metadata_of(form).unwrap_or_else(|| json!({}))),
    )
    .await
}

async fn create_intent(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    create_with_metadata(
        &shared,
        &headers,
        "/v1/payment_intents",
        &body,
        World::create_intent,
    )
    .await
}

async fn update_intent(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let path = format!("/v1/payment_intents/{id}");
    mutate(
        &shared,
        &headers,
        (&Method::POST, &path),
        form,
        false,
        |world, form, _| world.update_intent(&id, form, metadata_of(form)),
    )
    .await
}

async fn confirm_intent(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let path = format!("/v1/payment_intents/{id}/confirm");
    mutate(
        &shared,
        &headers,
        (&Method::POST, &path),
        form,
        true,
        |world, form, caller| {
            if caller == Caller::Publishable {
                check_client_secret(world, &id, form)?;
            }
            world.confirm(&id, form.get("payment_method").map(String::as_str))
        },
    )
    .await
}

/// Stripe.js may act on an intent only with its client secret.
fn check_client_secret(world: &World, id: &str, form: &Form) -> Result<(), (u16, Value)> {
    let intent = world.intent(id)?;
    if form.get("client_secret").map(String::as_str) == intent["client_secret"].as_str() {
        Ok(())
    } else {
        Err(invalid(
            "parameter_invalid",
            "The client_secret provided does not match this PaymentIntent.",
            Some("client_secret"),
        ))
    }
}

async fn capture_intent(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let path = format!("/v1/payment_intents/{id}/capture");
    mutate(
        &shared,
        &headers,
        (&Method::POST, &path),
        form,
        false,
        |world, form, _| {
            let amount = match form.get("amount_to_capture") {
                Some(text) => Some(text.parse().map_err(|_| {
                    invalid(
                        "parameter_invalid",
                        "Invalid integer.",
                        Some("amount_to_capture"),
                    )
                })?),
                None => None,
            };
            let fee = match form.get("application_fee_amount") {
                Some(text) => Some(text.parse().map_err(|_| {
                    invalid(
                        "parameter_invalid",
                        "Invalid integer.",
                        Some("application_fee_amount"),
                    )
                })?),
                None => None,
            };
            world.capture(&id, amount, fee)
        },
    )
    .await
}

async fn cancel_intent(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let path = format!("/v1/payment_intents/{id}/cancel");
    mutate(
        &shared,
        &headers,
        (&Method::POST, &path),
        form,
        false,
        |world, form, _| world.cancel(&id, form.get("cancellation_reason").map(String::as_str)),
    )
    .await
}

async fn create_refund(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    create_with_metadata(
        &shared,
        &headers,
        "/v1/refunds",
        &body,
        World::create_refund,
    )
    .await
}

async fn create_session(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    mutate(
        &shared,
        &headers,
        (&Method::POST, "/v1/checkout/sessions"),
        form,
        false,
        |world, form, _| world.create_session(form),
    )
    .await
}

async fn expire_session(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let path = format!("/v1/checkout/sessions/{id}/expire");
    mutate(
        &shared,
        &headers,
        (&Method::POST, &path),
        form,
        false,
        |world, _, _| world.expire_session(&id),
    )
    .await
}

async fn create_account(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    create_with_metadata(
        &shared,
        &headers,
        "/v1/accounts",
        &body,
        World::create_account,
    )
    .await
}

async fn retrieve_account(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/accounts/{id}");
    secret_retrieve(&shared, &headers, &path, |world| world.account(&id)).await
}

async fn create_transfer(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_with_metadata(
        &shared,
        &headers,
        "/v1/transfers",
        &body,
        World::create_transfer,
    )
    .await
}

async fn retrieve_transfer(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/transfers/{id}");
    secret_retrieve(&shared, &headers, &path, |world| world.transfer(&id)).await
}

async fn create_transfer_reversal(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/transfers/{id}/reversals");
    let reverse = |world: &mut World, form: &Form, metadata| {
        world.create_transfer_reversal(&id, form, metadata)
    };
    create_with_metadata(&shared, &headers, &path, &body, reverse).await
}

/// A transfer's reversals, newest first.
async fn list_transfer_reversals(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_form(query.as_deref().unwrap_or_default());
    let path = format!("/v1/transfers/{id}/reversals");
    if let Err(response) = secret_read(&shared, &headers, &path, &query).await {
        return response;
    }
    let transfer = shared.world().transfer(&id);
    match transfer {
        Ok(transfer) => {
            let all = transfer["reversals"]["data"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            page(&path, all, &query)
        }
        Err((status, body)) => answer(status, body, false),
    }
}

/// Newest first; `transfer_group` and `destination` filter as Stripe's do.
async fn list_transfers(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_form(query.as_deref().unwrap_or_default());
    if let Err(response) = secret_read(&shared, &headers, "/v1/transfers", &query).await {
        return response;
    }
    let all = newest_matching(
        shared.world().transfers.values(),
        &query,
        &["transfer_group", "destination"],
    );
    page("/v1/transfers", all, &query)
}

async fn create_customer(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_with_metadata(
        &shared,
        &headers,
        "/v1/customers",
        &body,
        World::create_customer,
    )
    .await
}

async fn update_subscription(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let path = format!("/v1/subscriptions/{id}");
    mutate(
        &shared,
        &headers,
        (&Method::POST, &path),
        form,
        false,
        |world, form, _| world.update_subscription(&id, form),
    )
    .await
}

async fn cancel_subscription(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/subscriptions/{id}");
    mutate(
        &shared,
        &headers,
        (&Method::DELETE, &path),
        Form::new(),
        false,
        |world, _, _| world.cancel_subscription(&id),
    )
    .await
}

async fn pay_invoice(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&String::from_utf8_lossy(&body));
    let path = format!("/v1/invoices/{id}/pay");
    mutate(
        &shared,
        &headers,
        (&Method::POST, &path),
        form,
        false,
        |world, _, _| world.pay_invoice(&id),
    )
    .await
}

/// `GET /v1/{kind}/{id}` with the secret key: what `find` answers for the id.
async fn secret_retrieve(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
    find: impl FnOnce(&World) -> Outcome,
) -> Response {
    match secret_read(shared, headers, path, &Form::new()).await {
        Ok(()) => respond(find(&shared.world())),
        Err(response) => response,
    }
}

async fn retrieve_customer(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/customers/{id}");
    secret_retrieve(&shared, &headers, &path, |world| world.customer(&id)).await
}

async fn retrieve_subscription(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/subscriptions/{id}");
    secret_retrieve(&shared, &headers, &path, |world| world.subscription(&id)).await
}

async fn retrieve_invoice(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/invoices/{id}");
    secret_retrieve(&shared, &headers, &path, |world| world.invoice(&id)).await
}

/// A secret-key read of `path`; `Err` is the response to send instead.
async fn secret_read(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
    query: &Form,
) -> Result<(), Response> {
    match read_guard(shared, headers, path, query).await {
        Ok(Caller::Secret) => Ok(()),
        Ok(Caller::Publishable) => Err(publishable_forbidden()),
        Err(response) => Err(response),
    }
}

async fn retrieve_session(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/checkout/sessions/{id}");
    match secret_read(&shared, &headers, &path, &Form::new()).await {
        Ok(()) => respond(shared.world().session(&id)),
        Err(response) => response,
    }
}

async fn list_session_line_items(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_form(query.as_deref().unwrap_or_default());
    let path = format!("/v1/checkout/sessions/{id}/line_items");
    if let Err(response) = secret_read(&shared, &headers, &path, &query).await {
        return response;
    }
    let items = shared.world().session_line_items(&id);
    match items {
        // Line items are listed in the order they were given, unlike Stripe's newest-first lists.
        Ok(items) => page(&path, items, &query),
        Err(refusal) => respond(Err(refusal)),
    }
}

async fn list_sessions(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_form(query.as_deref().unwrap_or_default());
    if let Err(response) = secret_read(&shared, &headers, "/v1/checkout/sessions", &query).await {
        return response;
    }
    let all: Vec<Value> = {
        let world = shared.world();
        world
            .session_order
            .iter()
            .rev()
            .filter_map(|id| world.sessions.get(id).cloned())
            .filter(|s| {
                query
                    .get("payment_intent")
                    .is_none_or(|pi| s["payment_intent"] == pi.as_str())
            })
            .collect()
    };
    page("/v1/checkout/sessions", all, &query)
}

/// Auth and faults for reads; `Err` is the response to send instead.
async fn read_guard(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
    form: &Form,
) -> Result<Caller, Response> {
    let caller = authenticate(shared, headers, form)?;
    let fault = shared.world().take_fault("GET", path);
    match fault {
        Some(ApiFault::Status(status)) => Err(answer(
            status,
            objects::error("api_error", None, "Injected fault.", None),
            false,
        )),
        Some(ApiFault::Hang(ms)) => {
            hold(shared, ms).await;
            Ok(caller)
        }
        Some(ApiFault::LoseResponse) => {
            hold(shared, 0).await;
            Ok(caller)
        }
        None => Ok(caller),
    }
}

fn respond(outcome: Outcome) -> Response {
    match outcome {
        Ok(body) => answer(200, body, false),
        Err((status, body)) => answer(status, body, false),
    }
}

async fn retrieve_intent(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let form = parse_form(query.as_deref().unwrap_or_default());
    let caller = match read_guard(
        &shared,
        &headers,
        &format!("/v1/payment_intents/{id}"),
        &form,
    )
    .await
    {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let world = shared.world();
    if caller == Caller::Publishable
        && let Err(refusal) = check_client_secret(&world, &id, &form)
    {
        return respond(Err(refusal));
    }
    respond(world.intent(&id))
}

async fn retrieve_refund(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match read_guard(
        &shared,
        &headers,
        &format!("/v1/refunds/{id}"),
        &Form::new(),
    )
    .await
    {
        Ok(Caller::Secret) => respond(shared.world().refund(&id)),
        Ok(Caller::Publishable) => publishable_forbidden(),
        Err(response) => response,
    }
}

async fn retrieve_event(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match read_guard(&shared, &headers, &format!("/v1/events/{id}"), &Form::new()).await {
        Ok(Caller::Secret) => {
            let world = shared.world();
            let event = world
                .events
                .iter()
                .find(|e| e["id"] == id.as_str())
                .cloned();
            respond(event.ok_or_else(|| {
                (
                    404,
                    objects::error(
                        "invalid_request_error",
                        Some("resource_missing"),
                        &format!("No such event: '{id}'"),
                        Some("id"),
                    ),
                )
            }))
        }
        Ok(Caller::Publishable) => publishable_forbidden(),
        Err(response) => response,
    }
}

/// The objects whose `fields` equal the query's values where it gives one, newest first (by
/// `created`, then id), as Stripe's list filters answer.
fn newest_matching<'a>(
    objects: impl Iterator<Item = &'a Value>,
    query: &Form,
    fields: &[&str],
) -> Vec<Value> {
    let mut all: Vec<Value> = objects
        .filter(|object| {
            fields.iter().all(|field| {
                query
                    .get(*field)
                    .is_none_or(|wanted| object[*field] == wanted.as_str())
            })
        })
        .cloned()
        .collect();
    let newest = |object: &Value| {
        (
            std::cmp::Reverse(object["created"].as_i64().unwrap_or(0)),
            std::cmp::Reverse(object["id"].as_str().map(str::to_owned)),
        )
    };
    all.sort_by_key(newest);
    all
}

/// Newest first, `limit` and `starting_after` as Stripe pages.
fn page(url: &str, newest_first: Vec<Value>, query: &Form) -> Response {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(LIST_LIMIT_DEFAULT)
        .clamp(1, LIST_LIMIT_MAX);
    let start = match query.get("starting_after") {
        Some(after) => newest_first
            .iter()
            .position(|o| o["id"] == after.as_str())
            .map_or(newest_first.len(), |i| i + 1),
        None => 0,
    };
    let rest = newest_first.get(start..).unwrap_or_default();
    let data: Vec<Value> = rest.iter().take(limit).cloned().collect();
    answer(200, objects::list(url, data, rest.len() > limit), false)
}

async fn list_intents(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_form(query.as_deref().unwrap_or_default());
    if let Err(response) = secret_read(&shared, &headers, "/v1/payment_intents", &query).await {
        return response;
    }
    let all: Vec<Value> = {
        let world = shared.world();
        world
            .intent_order
            .iter()
            .rev()
            .filter_map(|id| world.intents.get(id).cloned())
            .collect()
    };
    page("/v1/payment_intents", all, &query)
}

async fn list_refunds(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_form(query.as_deref().unwrap_or_default());
    if let Err(response) = secret_read(&shared, &headers, "/v1/refunds", &query).await {
        return response;
    }
    let all: Vec<Value> = {
        let world = shared.world();
        world
            .refund_order
            .iter()
            .rev()
            .filter_map(|id| world.refunds.get(id).cloned())
            .filter(|r| {
                query
                    .get("payment_intent")
                    .is_none_or(|pi| r["payment_intent"] == pi.as_str())
            })
            .collect()
    };
    page("/v1/refunds", all, &query)
}

/// Newest first; `subscription` and `status` filter as Stripe's do.
async fn list_invoices(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_form(query.as_deref().unwrap_or_default());
    if let Err(response) = secret_read(&shared, &headers, "/v1/invoices", &query).await {
        return response;
    }
    let all = newest_matching(
        shared.world().invoices.values(),
        &query,
        &["subscription", "status"],
    );
    page("/v1/invoices", all, &query)
}

async fn list_events(
    State(shared): State<Shared>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = parse_form(query.as_deref().unwrap_or_default());
    if let Err(response) = secret_read(&shared, &headers, "/v1/events", &query).await {
        return response;
    }
    let types: Vec<String> = query
        .get("type")
        .into_iter()
        .chain(query.get("types[]"))
        .flat_map(|t| t.split(',').map(str::to_owned))
        .collect();
    let bound = |name: &str| query.get(name).and_then(|v| v.parse::<i64>().ok());
    let (gte, gt, lte, lt) = (
        bound("created[gte]"),
        bound("created[gt]"),
        bound("created[lte]"),
        bound("created[lt]"),
    );
    let all: Vec<Value> = shared
        .world()
        .events
        .iter()
        .rev()
        .filter(|e| {
            types.is_empty()
                || types.iter().any(|t| {
                    e["type"] == t.as_str()
                        || (t.ends_with(".*")
                            && e["type"]
                                .as_str()
                                .is_some_and(|k| k.starts_with(t.trim_end_matches('*'))))
                })
        })
        .filter(|e| {
            let created = e["created"].as_i64().unwrap_or(0);
            gte.is_none_or(|b| created >= b)
                && gt.is_none_or(|b| created > b)
                && lte.is_none_or(|b| created <= b)
                && lt.is_none_or(|b| created < b)
        })
        .cloned()
        .collect();
    page("/v1/events", all, &query)
}
