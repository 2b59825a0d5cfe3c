// The diesel schema, shared by both backends: `include!`d into `schema::pg` and
// `schema::sqlite`, where `TsSql` names the backend's UTC timestamp type.

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    customer (id) {
        id -> BigInt,
        external_ref -> Nullable<Text>,
        name -> Text,
        email -> Nullable<Text>,
        kind -> Text,
        stripe_customer_id -> Nullable<Text>,
        sponsorship_pending -> Bool,
        monthly_discounted_price -> BigInt,
        annual_discounted_price -> BigInt,
        minimum_licenses -> Nullable<Integer>,
        required_plan_tier -> Nullable<SmallInt>,
        exempt_from_license_number_check -> Bool,
        flat_discount -> BigInt,
        flat_discounted_months -> Integer,
        last_usage_report_at -> Nullable<TsSql>,
        seat_count -> Nullable<Integer>,
        created_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    customer_plan (id) {
        id -> BigInt,
        customer_id -> BigInt,
        tier -> SmallInt,
        status -> SmallInt,
        billing_schedule -> SmallInt,
        fixed_price -> Nullable<BigInt>,
        price_per_license -> Nullable<BigInt>,
        discount -> Nullable<Text>,
        automanage_licenses -> Bool,
        charge_automatically -> Bool,
        billing_cycle_anchor -> TsSql,
        next_invoice_date -> Nullable<TsSql>,
        invoiced_through_id -> Nullable<BigInt>,
        end_date -> Nullable<TsSql>,
        invoicing_status -> SmallInt,
        stale_audit_log_data_email_sent -> Bool,
        reminder_to_review_plan_email_sent -> Bool,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<TsSql>,
        needs_attention -> Nullable<Text>,
        error_count -> Integer,
        last_error -> Nullable<Text>,
        next_retry_at -> Nullable<TsSql>,
        created_at -> TsSql,
        claim_token -> BigInt,
        credit_cents -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    license_ledger (id) {
        id -> BigInt,
        plan_id -> BigInt,
        is_renewal -> Bool,
        event_time -> TsSql,
        licenses -> Integer,
        licenses_at_next_renewal -> Nullable<Integer>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    customer_plan_offer (id) {
        id -> BigInt,
        customer_id -> BigInt,
        fixed_price -> BigInt,
        tier -> SmallInt,
        status -> SmallInt,
        sent_invoice_id -> Nullable<Text>,
        created_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    invoice (id) {
        id -> BigInt,
        plan_id -> BigInt,
        customer_id -> BigInt,
        event_time -> TsSql,
        status -> Text,
        collection_method -> Text,
        days_until_due -> Nullable<Integer>,
        total_cents -> BigInt,
        stripe_invoice_id -> Nullable<Text>,
        stripe_finalized -> Bool,
        created_at -> TsSql,
        sent_at -> Nullable<TsSql>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    invoice_line (id) {
        id -> BigInt,
        invoice_id -> BigInt,
        plan_id -> BigInt,
        position -> Integer,
        kind -> Text,
        description -> Text,
        quantity -> BigInt,
        unit_amount_cents -> BigInt,
        amount_cents -> BigInt,
        amount_only -> Bool,
        period_start -> TsSql,
        period_end -> TsSql,
        ledger_entry_id -> Nullable<BigInt>,
        stripe_invoice_item_id -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    plan_event (id) {
        id -> BigInt,
        kind -> Text,
        plan_id -> BigInt,
        customer_id -> BigInt,
        old_status -> Nullable<SmallInt>,
        new_status -> Nullable<SmallInt>,
        old_tier -> Nullable<SmallInt>,
        new_tier -> Nullable<SmallInt>,
        message -> Nullable<Text>,
        event_time -> TsSql,
        created_at -> TsSql,
        consumed_at -> Nullable<TsSql>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    pass_run (id) {
        id -> BigInt,
        worker -> Text,
        now -> TsSql,
        started_at -> TsSql,
        finished_at -> Nullable<TsSql>,
        plans_considered -> Integer,
        plans_invoiced -> Integer,
        invoices -> Integer,
        needs_attention -> Integer,
        failures -> Integer,
    }
}

diesel::table! {
    stripe_product (tier) {
        tier -> Text,
        stripe_product_id -> Text,
    }
}

diesel::joinable!(customer_plan -> customer (customer_id));
diesel::joinable!(license_ledger -> customer_plan (plan_id));
diesel::joinable!(invoice_line -> invoice (invoice_id));

diesel::allow_tables_to_appear_in_same_query!(
    customer,
    customer_plan,
    license_ledger,
    customer_plan_offer,
    invoice,
    invoice_line,
    plan_event,
    pass_run,
);

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    worker_heartbeat (worker) {
        worker -> Text,
        seen_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    api_token (id) {
        id -> BigInt,
        name -> Text,
        scope -> Text,
        secret_sha256 -> Text,
        created_at -> TsSql,
        revoked_at -> Nullable<TsSql>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    api_idempotency (token_id, key) {
        token_id -> BigInt,
        key -> Text,
        request_sha256 -> Text,
        status -> Integer,
        body -> Text,
        created_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    event_consumer (name) {
        name -> Text,
        acked_through -> BigInt,
        updated_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    invoice_payment (invoice_id) {
        invoice_id -> BigInt,
        status -> Text,
        status_at -> TsSql,
        attempt_count -> Integer,
        hosted_invoice_url -> Nullable<Text>,
        updated_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    stripe_event (id) {
        id -> Text,
        #[sql_name = "type"]
        kind -> Text,
        invoice_id -> Nullable<BigInt>,
        outcome -> Text,
        received_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    payment_sync (name) {
        name -> Text,
        synced_through -> BigInt,
        updated_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    invoice_void (invoice_id) {
        invoice_id -> BigInt,
        requested_at -> TsSql,
        voided_at -> Nullable<TsSql>,
    }
}

diesel::joinable!(invoice_payment -> invoice (invoice_id));
diesel::joinable!(invoice_void -> invoice (invoice_id));
diesel::allow_tables_to_appear_in_same_query!(invoice, invoice_payment, invoice_void);
diesel::allow_tables_to_appear_in_same_query!(customer, invoice_payment);

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    installation (singleton) {
        singleton -> Integer,
        installation_id -> Text,
        legacy_customers_through -> BigInt,
        legacy_invoices_through -> BigInt,
        created_at -> TsSql,
    }
}

diesel::table! {
    successor_renewal (plan_id) {
        plan_id -> BigInt,
        ledger_entry_id -> BigInt,
        licenses_at_next_renewal -> Nullable<Integer>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    change_log (id) {
        id -> BigInt,
        at -> TsSql,
        written_at -> TsSql,
        actor -> Text,
        on_behalf_of -> Nullable<Text>,
        operation -> Text,
        customer_id -> Nullable<BigInt>,
        plan_id -> Nullable<BigInt>,
        new_plan_id -> Nullable<BigInt>,
        invoice_id -> Nullable<BigInt>,
        objects -> Text,
        before -> Text,
        after -> Text,
        reason -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        prev_hash -> Text,
        hash -> Text,
        prev_id -> BigInt,
    }
}

diesel::table! {
    change_head (chain) {
        chain -> BigInt,
        last_id -> BigInt,
        hash -> Text,
    }
}

// Each customer's chain head, on its row (the customer's own columns leave these out: they
// belong to the change history, which moves them).
diesel::table! {
    #[sql_name = "customer"]
    customer_chain (id) {
        id -> BigInt,
        change_last_id -> BigInt,
        change_hash -> Text,
    }
}

// An append reads its chain's head and the history's newest id in one statement.
diesel::allow_tables_to_appear_in_same_query!(change_log, change_head, customer_chain);

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    console_user (id) {
        id -> BigInt,
        email -> Text,
        role -> Text,
        password_hash -> Nullable<Text>,
        setup_sha256 -> Nullable<Text>,
        setup_expires_at -> Nullable<TsSql>,
        disabled_at -> Nullable<TsSql>,
        created_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    console_session (id_sha256) {
        id_sha256 -> Text,
        user_id -> BigInt,
        csrf_token -> Text,
        created_at -> TsSql,
        last_seen_at -> TsSql,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use super::TsSql;

    console_login_failure (id) {
        id -> BigInt,
        email -> Text,
        address -> Text,
        at -> TsSql,
    }
}

diesel::joinable!(console_session -> console_user (user_id));
diesel::allow_tables_to_appear_in_same_query!(console_session, console_user);
