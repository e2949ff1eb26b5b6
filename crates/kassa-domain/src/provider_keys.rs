//! Every idempotency key Kassa sends to Stripe, in one place. Each is derived from Kassa's own
//! ids (never random, never from the clock), so any retry of a call — by the same request, a
//! worker, another instance after a crash — names the same object at Stripe and makes nothing
//! twice. A call that must be made anew after a definite refusal carries the attempt's number.
//! These strings are stored in rows and sent to Stripe: changing one changes what a retry of an
//! older call is recognised by.

/// Creating the PaymentIntent of a payment attempt.
pub fn create_payment_intent(payment_id: &str) -> String {
    format!("kassa-create-pi-{payment_id}")
}

/// Creating the Checkout Session of a hosted payment or of a subscription (`owner_id`: the
/// payment or the subscription).
pub fn create_checkout_session(owner_id: &str) -> String {
    format!("kassa-create-cs-{owner_id}")
}

/// Expiring that Checkout Session.
pub fn expire_checkout_session(owner_id: &str) -> String {
    format!("kassa-expire-cs-{owner_id}")
}

/// Canceling a payment's PaymentIntent.
pub fn cancel_payment_intent(payment_id: &str) -> String {
    format!("kassa-cancel-{payment_id}")
}

/// Capturing `amount_minor` of a payment's PaymentIntent: another amount is another capture.
pub fn capture(payment_id: &str, amount_minor: i64) -> String {
    format!("kassa-capture-{payment_id}-{amount_minor}")
}

/// A refund, recorded before it is sent.
pub fn refund(refund_id: &str) -> String {
    format!("kassa-refund-{refund_id}")
}

/// Creating a Kassa customer at Stripe.
pub fn create_customer(customer_id: &str) -> String {
    format!("kassa-create-cus-{customer_id}")
}

/// Canceling a subscription, now or at its period's end (`when`).
pub fn cancel_subscription(subscription_id: &str, when: &str) -> String {
    format!("kassa-cancel-sub-{subscription_id}-{when}")
}

/// Creating a seller's connected account.
pub fn create_account(seller_id: &str) -> String {
    format!("kassa-create-acct-{seller_id}")
}

/// A seller's transfer for an order; after a refusal, each new attempt has its number.
pub fn transfer(order_id: &str, seller_id: &str, attempt: Option<i64>) -> String {
    match attempt {
        None => format!("kassa-transfer-{order_id}-{seller_id}"),
        Some(attempt) => format!("kassa-transfer-{order_id}-{seller_id}-{attempt}"),
    }
}

/// Taking back a seller's share of a refund.
pub fn reversal(refund_id: &str, seller_id: &str) -> String {
    format!("kassa-reversal-{refund_id}-{seller_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys are stored and sent: they must never change shape, or a retry of a call made by
    /// an older Kassa would not be recognised as the same call.
    #[test]
    fn the_keys_keep_their_shape() {
        assert_eq!(create_payment_intent("pay_1"), "kassa-create-pi-pay_1");
        assert_eq!(create_checkout_session("sub_1"), "kassa-create-cs-sub_1");
        assert_eq!(expire_checkout_session("pay_1"), "kassa-expire-cs-pay_1");
        assert_eq!(cancel_payment_intent("pay_1"), "kassa-cancel-pay_1");
        assert_eq!(capture("pay_1", 1250), "kassa-capture-pay_1-1250");
        assert_eq!(refund("ref_1"), "kassa-refund-ref_1");
        assert_eq!(create_customer("cus_1"), "kassa-create-cus-cus_1");
        assert_eq!(
            cancel_subscription("sub_1", "now"),
            "kassa-cancel-sub-sub_1-now"
        );
        assert_eq!(create_account("sel_1"), "kassa-create-acct-sel_1");
        assert_eq!(
            transfer("ord_1", "sel_1", None),
            "kassa-transfer-ord_1-sel_1"
        );
        assert_eq!(
            transfer("ord_1", "sel_1", Some(2)),
            "kassa-transfer-ord_1-sel_1-2"
        );
        assert_eq!(reversal("ref_1", "sel_1"), "kassa-reversal-ref_1-sel_1");
    }
}
