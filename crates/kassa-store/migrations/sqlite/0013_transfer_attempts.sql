-- A transfer Stripe refused (its seller could not take it) is asked for again once Stripe
-- reports the seller ready, under a new key: nothing was made under the refused one.
-- Kept equal with the other backend's file.
ALTER TABLE seller_transfers ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
