-- Billing instants are stored as text on SQLite and compared as text (the pass selects due plans
-- with next_invoice_date <= now). That order is the order of time only while every value has
-- one fixed-width form, a four-digit year first: refuse any other (a year past 9999 is written
-- '+10000-…', which sorts before '2…'). The admin commands bound every instant far inside this.

CREATE TRIGGER customer_plan_times_fixed_width_insert BEFORE INSERT ON customer_plan
WHEN (NEW.billing_cycle_anchor IS NOT NULL AND NEW.billing_cycle_anchor NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*') OR (NEW.next_invoice_date IS NOT NULL AND NEW.next_invoice_date NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*') OR (NEW.end_date IS NOT NULL AND NEW.end_date NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*')
BEGIN
    SELECT RAISE(ABORT, 'a billing instant outside the years 0000-9999 cannot be stored');
END;

CREATE TRIGGER customer_plan_times_fixed_width_update BEFORE UPDATE OF billing_cycle_anchor, next_invoice_date, end_date ON customer_plan
WHEN (NEW.billing_cycle_anchor IS NOT NULL AND NEW.billing_cycle_anchor NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*') OR (NEW.next_invoice_date IS NOT NULL AND NEW.next_invoice_date NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*') OR (NEW.end_date IS NOT NULL AND NEW.end_date NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*')
BEGIN
    SELECT RAISE(ABORT, 'a billing instant outside the years 0000-9999 cannot be stored');
END;

CREATE TRIGGER license_ledger_times_fixed_width_insert BEFORE INSERT ON license_ledger
WHEN (NEW.event_time IS NOT NULL AND NEW.event_time NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*')
BEGIN
    SELECT RAISE(ABORT, 'a billing instant outside the years 0000-9999 cannot be stored');
END;

CREATE TRIGGER license_ledger_times_fixed_width_update BEFORE UPDATE OF event_time ON license_ledger
WHEN (NEW.event_time IS NOT NULL AND NEW.event_time NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*')
BEGIN
    SELECT RAISE(ABORT, 'a billing instant outside the years 0000-9999 cannot be stored');
END;

CREATE TRIGGER invoice_times_fixed_width_insert BEFORE INSERT ON invoice
WHEN (NEW.event_time IS NOT NULL AND NEW.event_time NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*')
BEGIN
    SELECT RAISE(ABORT, 'a billing instant outside the years 0000-9999 cannot be stored');
END;

CREATE TRIGGER invoice_times_fixed_width_update BEFORE UPDATE OF event_time ON invoice
WHEN (NEW.event_time IS NOT NULL AND NEW.event_time NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]*')
BEGIN
    SELECT RAISE(ABORT, 'a billing instant outside the years 0000-9999 cannot be stored');
END;
