DROP TABLE invoice_void;
DROP TABLE payment_sync;
DROP TABLE stripe_event;
DROP TABLE invoice_payment;
