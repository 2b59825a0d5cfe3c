DROP TABLE stripe_product;
