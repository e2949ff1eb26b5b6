-- Hosted checkout: a payment is made on the provider's page (a Checkout Session) or embedded in
-- the storefront. The session's PaymentIntent is learned from its events. Kept
-- column-for-column equal with the other backend's file.
ALTER TABLE payments ADD COLUMN flow TEXT NOT NULL DEFAULT 'embedded';
ALTER TABLE payments ADD COLUMN provider_checkout_session_id TEXT;
ALTER TABLE payments ADD COLUMN checkout_url TEXT;
ALTER TABLE payments ADD COLUMN checkout_expires_at BIGINT;
CREATE UNIQUE INDEX payments_provider_session ON payments (provider_checkout_session_id);
-- Velocity limits (risk S7): checkouts per customer e-mail and per client address in a window.
ALTER TABLE orders ADD COLUMN client_ip TEXT;
CREATE INDEX orders_by_email ON orders (email, created_at);
CREATE INDEX orders_by_client_ip ON orders (client_ip, created_at);
