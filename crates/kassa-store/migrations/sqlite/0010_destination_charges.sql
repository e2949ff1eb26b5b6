-- A single seller's order is a destination charge: the seller's account, the platform's fee and
-- its rate (for the fee on a smaller capture) are decided when the order is placed and kept on
-- its payment, so every retry of a provider call sends the same, and the checker compares them
-- with the provider's. Kept equal with the other backend's file.
ALTER TABLE payments ADD COLUMN destination_account TEXT;
ALTER TABLE payments ADD COLUMN application_fee INTEGER;
ALTER TABLE payments ADD COLUMN platform_fee_bps INTEGER;
