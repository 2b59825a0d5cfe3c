-- The Stripe product of each plan tier: per-seat invoice lines name it in their inline price
-- (price_data), so it is created once per tier and remembered here, never once per line.
CREATE TABLE stripe_product (
    tier TEXT PRIMARY KEY,
    stripe_product_id TEXT NOT NULL UNIQUE
);
