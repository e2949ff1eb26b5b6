//! A person's way out for an order flagged `needs_attention` (risk N1): `POST
//! /v1/orders/{id}/resolve {action, note}` and `kassa resolve`. Every reason has the actions
//! that resolve it (`kassa_domain::attention`), and each goes through the machinery the rest of
//! Kassa uses: the store decides and applies under the order's lock with compare-and-set writes
//! and clears the flag with an audit record of who and why in the same transaction; a refund
//! is recorded pending with a key derived from Kassa's ids before it is sent; an action that
//! must ask the provider asks with the same keys and applies the answer through the same plans
//! as a webhook, as atomic phases around the call. The flag clears only when the action was
//! applied; the order's background work resumes with it.

use kassa_domain::attention::{Question, RESOLVE_ACTION_NAMES, ResolveAction};
use kassa_domain::text::fields;

use crate::App;
use crate::error::{AppError, AppResult};
use crate::order_commands::unavailable;
use crate::ports::{
    Actor, AskAbout, OrderRecord, ProviderAnswer, ProviderError, Resolution, ResolutionEnd,
    ResolutionStart, SessionStatus,
};
use crate::validate;

/// A resolution as sent.
#[derive(Debug, Clone)]
pub struct ResolveRequest {
    pub action: String,
    /// Why: kept in the audit trail beside who resolved it.
    pub note: String,
}

impl App {
    /// Resolves the flagged order `order_id` with the requested action; the order as it then
    /// stands. A refused action (one the flag's reason does not take, or whose moves the order
    /// cannot make) changes nothing and says which actions the reason takes.
    pub async fn resolve_attention(
        &self,
        order_id: &str,
        request: ResolveRequest,
        actor: &Actor,
    ) -> AppResult<OrderRecord> {
        let resolution = checked(order_id, request)?;
        let now = self.clock.now_secs();
        let start = match self.store.begin_resolution(&resolution, actor, now).await {
            Ok(start) => start,
            // A plan's write that did not take is a bug: flagged as such, never skipped.
            Err(error) => {
                self.surface_impossible_move(&error, actor).await;
                return Err(error.into());
            }
        };
        match start {
            ResolutionStart::OrderMissing => return Err(AppError::NotFound { what: "order" }),
            ResolutionStart::Refused(refusal) => return Err(refusal.into()),
            ResolutionStart::Resolved { refund } => {
                if let Some(refund) = refund {
                    // Recorded with the resolution: sent now, or else by the refund sender,
                    // which sends Kassa's own refunds at once.
                    match self.send_refund(refund, actor).await {
                        Ok(_) | Err(AppError::ProviderUnavailable { .. }) => {}
                        Err(error) => return Err(error),
                    }
                }
            }
            ResolutionStart::Ask(about) => {
                let answer = self.ask_provider(&resolution, &about, actor).await?;
                let now = self.clock.now_secs();
                match self
                    .store
                    .finish_resolution(&resolution, &about.flag, &answer, actor, now)
                    .await
                {
                    Ok(ResolutionEnd::Resolved) => {}
                    Ok(ResolutionEnd::Refused(refusal)) => return Err(refusal.into()),
                    Ok(ResolutionEnd::OrderMissing) => {
                        return Err(AppError::NotFound { what: "order" });
                    }
                    Err(error) => {
                        self.surface_impossible_move(&error, actor).await;
                        return Err(error.into());
                    }
                }
            }
        }
        self.order(order_id).await
    }

    /// Asks the provider what a resolution needs to know, applying what the usual paths apply
    /// on the way (a retried create is recorded as the completer records it; a page's state as
    /// its events would). An unknown outcome is an error: the flag stays for another try.
    async fn ask_provider(
        &self,
        resolution: &Resolution,
        about: &AskAbout,
        actor: &Actor,
    ) -> AppResult<ProviderAnswer> {
        match about.question {
            Question::Checkout => {
                let now = self.clock.now_secs();
                // The key is taken as the completer takes it, so a customer's retry and this one
                // do not both drive the checkout; either way the provider key is the same.
                let key = match &about.checkout_key {
                    Some(key)
                        if self
                            .store
                            .claim_stalled_key(key, self.settings.checkout_lock_secs, now)
                            .await? =>
                    {
                        Some(key)
                    }
                    _ => None,
                };
                self.drive_payment(key, &resolution.order_id, actor).await?;
                Ok(ProviderAnswer::Applied)
            }
            Question::Intent => {
                let intent_id =
                    about
                        .payment_intent_id
                        .as_deref()
                        .ok_or_else(|| AppError::InvalidState {
                            message: "the payment has no PaymentIntent to ask about".into(),
                        })?;
                match self.provider.retrieve_payment_intent(intent_id).await {
                    Ok(intent) => Ok(ProviderAnswer::Intent(Box::new(intent))),
                    // Nothing to accept: the person checks at the provider and dismisses.
                    Err(ProviderError::Definite { message, .. }) => Err(AppError::InvalidState {
                        message: format!(
                            "the payment provider has no PaymentIntent {intent_id} to accept \
                             ({message}); dismiss once checked"
                        ),
                    }),
                    Err(ProviderError::Unknown { .. }) => Err(unavailable()),
                }
            }
            Question::HostedPage => {
                let session_id =
                    about
                        .checkout_session_id
                        .as_deref()
                        .ok_or_else(|| AppError::InvalidState {
                            message: "the payment has no hosted page to ask about".into(),
                        })?;
                let session = self.current_session(session_id).await?;
                match (session.status, session.payment_intent_id.clone()) {
                    (_, Some(intent_id)) => {
                        self.apply_session(&session, actor).await?;
                        let intent = self.current_intent(&intent_id).await?;
                        Ok(ProviderAnswer::Intent(Box::new(intent)))
                    }
                    (SessionStatus::Expired, None) => {
                        self.apply_session(&session, actor).await?;
                        Ok(ProviderAnswer::Applied)
                    }
                    (SessionStatus::Complete, None) => Ok(ProviderAnswer::PageWithoutPayment),
                    (SessionStatus::Open, None) => Err(AppError::InvalidState {
                        message: "the page is open at the payment provider and can still be \
                                  paid; cancel the order, which ends the page first"
                            .into(),
                    }),
                }
            }
        }
    }
}

/// The request with its action known and its note in stored spelling.
fn checked(order_id: &str, request: ResolveRequest) -> AppResult<Resolution> {
    let action = ResolveAction::parse(request.action.trim()).ok_or_else(|| {
        AppError::invalid(
            "action",
            format!("must be one of {}", RESOLVE_ACTION_NAMES.join(", ")),
        )
    })?;
    let note = validate::shaped("note", fields::RESOLUTION_NOTE, &request.note)?;
    Ok(Resolution {
        order_id: order_id.to_owned(),
        action,
        note,
    })
}
