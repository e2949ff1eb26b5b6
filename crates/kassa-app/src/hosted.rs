//! A hosted payment page ended from Kassa's side: the janitor expiring an abandoned checkout, a
//! cancel. The Checkout Session is expired at the provider first, so that nobody can pay it any
//! more (its PaymentIntent, if started, is canceled with it); what the provider then holds is
//! applied through the same path as the session's events.

use crate::App;
use crate::error::AppResult;
use crate::order_commands::unavailable;
use crate::ports::{Actor, ProviderCheckoutSession, ProviderError};
use crate::webhooks::reported_by_session;

impl App {
    /// Ends `session_id` at the provider, then applies the session as it stands: expired (the
    /// order is canceled and its stock released), or — when the customer got there first —
    /// complete, paid or with a payment under way.
    pub(crate) async fn end_hosted_page(
        &self,
        payment_id: &str,
        session_id: &str,
        actor: &Actor,
    ) -> AppResult<ProviderCheckoutSession> {
        let key = kassa_domain::provider_keys::expire_checkout_session(payment_id);
        let session = match self
            .provider
            .expire_checkout_session(session_id, &key)
            .await
        {
            Ok(session) => session,
            // Not open any more: it was completed (or expired) meanwhile.
            Err(ProviderError::Definite { .. }) => self.current_session(session_id).await?,
            Err(ProviderError::Unknown { .. }) => return Err(unavailable()),
        };
        self.apply_session(&session, actor).await?;
        Ok(session)
    }

    pub(crate) async fn current_session(
        &self,
        session_id: &str,
    ) -> AppResult<ProviderCheckoutSession> {
        self.provider
            .retrieve_checkout_session(session_id)
            .await
            .map_err(|_| unavailable())
    }

    /// Applies the provider's view of a session through the webhook plan path.
    pub(crate) async fn apply_session(
        &self,
        session: &ProviderCheckoutSession,
        actor: &Actor,
    ) -> AppResult<()> {
        let now = self.clock.now_secs();
        let reports = reported_by_session(session);
        match self
            .store
            .observe_checkout_session(session, reports, actor, now)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) => {
                self.surface_impossible_move(&error, actor).await;
                Err(error.into())
            }
        }
    }
}
