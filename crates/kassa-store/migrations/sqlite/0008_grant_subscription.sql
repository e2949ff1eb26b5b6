-- The subscription a paid invoice's grant is for, so the checker compares each subscription's
-- grants with its paid invoices at the provider. Kept equal with the other backend's file.
ALTER TABLE credit_entries ADD COLUMN subscription_id TEXT REFERENCES subscriptions (id);
