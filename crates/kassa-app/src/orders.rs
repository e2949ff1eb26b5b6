//! Reading orders: the operator (secret key) sees everything; a customer presenting their
//! order token sees status, lines and totals with the address masked (risk S2).

use crate::App;
use crate::error::{AppError, AppResult};
use crate::order_token::TokenRights;
use crate::ports::{AuditRecord, OrderRecord};

/// An order as a customer may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerOrderView {
    pub order: OrderRecord,
    pub can_modify: bool,
}

impl App {
    pub async fn order(&self, order_id: &str) -> AppResult<OrderRecord> {
        self.store
            .order(order_id)
            .await?
            .ok_or(AppError::NotFound { what: "order" })
    }

    /// What the hosted page's return URL shows: the status, total and lines of the order paid
    /// through `session_id`, nothing about the customer. The session id in that URL is the
    /// only credential, as on Stripe's own success pages.
    pub async fn order_for_checkout_session(&self, session_id: &str) -> AppResult<OrderRecord> {
        let order_id = self
            .store
            .order_id_for_checkout_session(session_id)
            .await?
            .ok_or(AppError::NotFound { what: "order" })?;
        let mut order = self.order(&order_id).await?;
        order.email = String::new();
        order.shipping = crate::ports::ShippingAddress {
            name: String::new(),
            line1: String::new(),
            city: String::new(),
            postal_code: String::new(),
            country: String::new(),
        };
        if let Some(payment) = order.payment.as_mut() {
            payment.client_secret = None;
        }
        Ok(order)
    }

    /// The order behind a customer's token; `None` for a token that does not open this order
    /// (the caller answers 401 without saying whether the order exists).
    pub async fn order_for_customer(
        &self,
        order_id: &str,
        token: &str,
    ) -> AppResult<Option<CustomerOrderView>> {
        let Some(rights) = self
            .order_tokens
            .verify(token, order_id, self.clock.now_secs())
        else {
            return Ok(None);
        };
        let mut order = self.order(order_id).await?;
        order.email = mask(&order.email);
        order.shipping.name = mask(&order.shipping.name);
        order.shipping.line1 = mask(&order.shipping.line1);
        order.shipping.postal_code = mask(&order.shipping.postal_code);
        if let Some(payment) = order.payment.as_mut() {
            payment.client_secret = None;
        }
        Ok(Some(CustomerOrderView {
            order,
            can_modify: rights == TokenRights::ReadAndModify,
        }))
    }

    pub async fn order_events(&self, order_id: &str) -> AppResult<Vec<AuditRecord>> {
        self.order(order_id).await?;
        Ok(self.store.order_events(order_id).await?)
    }
}

/// Keeps the first character of each word: "Ada Lovelace" → "A** L*******".
fn mask(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                std::iter::once(first).chain(chars.map(|_| '*')).collect()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}
