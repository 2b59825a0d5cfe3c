//! The admin commands: customers, plans, offers, invoices and status, as the CLI and the HTTP
//! API both run them. Each runs one operation of [`crate::ops`] (or a read of
//! [`crate::db::repo`]) on one connection and returns its JSON document and text.

use crate::db::changes::WithHead;
use crate::db::repo::{self, InvoiceFilter, PlanFilter};
use crate::db::{Conn, Db};
use crate::domain::change::Author;
use crate::domain::refusal::{spell, Spelling};
use crate::domain::Ts;
use crate::error::{refuse, AppError};
use crate::jobs;
use crate::ops;
use crate::views::{
    overdue_action_name, Accepted, Created, CustomerView, InvoiceView, LedgerView, OldestDue,
    PlanState, PlanView, SeatsView, StatusView, UnpaidInvoice, UnpaidInvoices, UnsentInvoice,
    UnsentInvoices,
};

pub mod changes;
mod commands;
pub mod history;
mod render;
pub mod reports;
pub mod staff;
pub mod support;
pub mod tokens;

pub use commands::{
    find_action, parse_time, Action, CustomerCmd, CustomerCreate, InvoicesCmd, OfferCmd, PlanCmd,
    PlanCreate, Reply, CUSTOMER_ACTIONS, PLAN_ACTIONS,
};
pub(crate) use render::render_invoice;
pub use render::Output;
pub(crate) use render::{out, pretty};
pub use tokens::ApiTokenCmd;

pub fn customer(db: &Db, cmd: CustomerCmd, now: Ts, author: &Author) -> Result<Output, AppError> {
    db.run(|c| customer_cmd(c, cmd, now, author))
}

pub fn plan(db: &Db, cmd: PlanCmd, now: Ts, author: &Author) -> Result<Output, AppError> {
    if let PlanCmd::Preview { id, at } = cmd {
        return plan_preview(db, id, at);
    }
    db.run(|c| plan_cmd(c, cmd, now, author))
}

/// `plan preview`: runs on a connection of its own, in a transaction that is rolled back.
pub fn plan_preview(db: &Db, id: i64, at: Option<Ts>) -> Result<Output, AppError> {
    let preview = jobs::preview::preview(db, id, at)?;
    let text = render::render_preview(&preview);
    out(&preview, text)
}

pub fn offer(db: &Db, cmd: OfferCmd, now: Ts, author: &Author) -> Result<Output, AppError> {
    db.run(|c| offer_cmd(c, cmd, now, author))
}

/// Runs an offer command and records it in the change history (one transaction).
pub fn offer_cmd(
    c: &mut Conn,
    cmd: OfferCmd,
    now: Ts,
    author: &Author,
) -> Result<Output, AppError> {
    history::recorded(c, author, now, history::offer_write(&cmd), |c| {
        offer_run(c, cmd, now)
    })
}

fn offer_run(c: &mut Conn, cmd: OfferCmd, now: Ts) -> Result<Output, AppError> {
    match cmd {
        OfferCmd::Create {
            customer,
            tier,
            fixed_price_cents,
            sent_invoice_id,
        } => {
            let id = ops::create_offer(
                c,
                customer,
                tier,
                fixed_price_cents,
                sent_invoice_id.as_deref(),
                now,
            )?;
            out(&Created { id }, format!("created offer {id}"))
        }
        OfferCmd::Accept {
            id,
            schedule,
            licenses,
        } => {
            let plan_id = ops::accept_offer(c, id, schedule, licenses, now)?;
            out(
                &Accepted { plan_id },
                format!("offer {id} accepted: plan {plan_id}"),
            )
        }
    }
}

pub fn invoices(db: &Db, cmd: InvoicesCmd) -> Result<Output, AppError> {
    let InvoicesCmd::List {
        plan,
        customer,
        since,
        status,
    } = cmd;
    let filter = InvoiceFilter {
        ids: None,
        plan_id: plan,
        customer_id: customer,
        since,
        status,
        ..InvoiceFilter::default()
    };
    let views: Vec<InvoiceView> = db
        .run(|c| repo::list_invoices(c, &filter))?
        .iter()
        .map(InvoiceView::from)
        .collect();
    let text = views
        .iter()
        .map(render::render_invoice)
        .collect::<Vec<_>>()
        .join("\n");
    out(&views, text)
}

pub fn status(db: &Db, now: Ts) -> Result<Output, AppError> {
    db.run(|c| status_of(c, now))
}

/// Runs a customer command; a write is recorded in the change history (one transaction).
pub fn customer_cmd(
    c: &mut Conn,
    cmd: CustomerCmd,
    now: Ts,
    author: &Author,
) -> Result<Output, AppError> {
    match history::customer_write(&cmd) {
        Some(w) => history::recorded(c, author, now, w, |c| customer_run(c, cmd, now)),
        None => customer_run(c, cmd, now),
    }
}

/// Runs a customer command that reads (`show`); a write is an internal error here.
pub fn customer_read(c: &mut Conn, cmd: CustomerCmd, now: Ts) -> Result<Output, AppError> {
    if history::customer_write(&cmd).is_some() {
        return Err(AppError::Internal(
            "a customer write must go through customer_cmd and the change history".into(),
        ));
    }
    customer_run(c, cmd, now)
}

fn customer_run(c: &mut Conn, cmd: CustomerCmd, now: Ts) -> Result<Output, AppError> {
    match cmd {
        CustomerCmd::Create(a) => {
            let input = ops::CustomerInput {
                name: a.name,
                email: a.email,
                external_ref: a.external_ref,
                stripe_customer_id: a.stripe_customer_id,
                kind: a.kind,
                monthly_discounted_price: a.monthly_discounted_price_cents,
                annual_discounted_price: a.annual_discounted_price_cents,
                required_plan_tier: a.required_plan_tier,
                minimum_licenses: a.minimum_licenses,
                exempt_from_license_number_check: a.exempt_from_license_number_check,
            };
            let id = ops::create_customer(c, &input, now)?;
            out(&Created { id }, format!("created customer {id}"))
        }
        CustomerCmd::Show { id } => customer_show(c, id),
        CustomerCmd::SetDiscount {
            id,
            monthly_discounted_price_cents,
            annual_discounted_price_cents,
            required_plan_tier,
        } => {
            ops::set_discount(
                c,
                id,
                monthly_discounted_price_cents,
                annual_discounted_price_cents,
                required_plan_tier,
                now,
            )?;
            customer_view(c, id)
        }
        CustomerCmd::SetMinimumLicenses { id, count, none } => {
            ops::set_minimum_licenses(c, id, one_of("count", count, none)?)?;
            customer_view(c, id)
        }
        CustomerCmd::SetRequiredPlanTier { id, tier, none } => {
            let tier = one_of("tier", tier, none)?;
            ops::set_required_plan_tier(c, id, tier)?;
            customer_view(c, id)
        }
        CustomerCmd::SetExempt { id, exempt } => {
            ops::set_exempt(c, id, exempt)?;
            customer_view(c, id)
        }
        CustomerCmd::ReportUsage { id, seats } => {
            ops::report_usage(c, id, seats, now)?;
            customer_view(c, id)
        }
    }
}

/// A value or `--none`, exactly one of them (clap checks it for the CLI; this for the API).
fn one_of<T>(field: &'static str, value: Option<T>, none: bool) -> Result<Option<T>, AppError> {
    let none_flag = spell("none", Spelling::Cli);
    match (value, none) {
        (Some(_), true) => Err(refuse(
            field,
            format!("give either {{field}} or {none_flag}, not both"),
        )),
        (None, false) => Err(refuse(field, format!("give {{field}} or {none_flag}"))),
        (v, _) => Ok(v),
    }
}

fn customer_view(c: &mut Conn, id: i64) -> Result<Output, AppError> {
    let customer = ops::customer(c, id)?;
    let plans = repo::plan_ids_of_customer(c, id)?;
    pretty(&CustomerView::new(&customer, plans))
}

/// `customer show`: the customer's view and who made its last change.
fn customer_show(c: &mut Conn, id: i64) -> Result<Output, AppError> {
    let customer = ops::customer(c, id)?;
    let plans = repo::plan_ids_of_customer(c, id)?;
    let view = CustomerView {
        last_change: changes::last_change(c, Some(id), None)?,
        ..CustomerView::new(&customer, plans)
    };
    pretty(&view)
}

fn plan_view(c: &mut Conn, id: i64) -> Result<PlanView, AppError> {
    let record = ops::plan(c, id)?;
    let ledger = repo::ledger_of(c, id)?;
    Ok(PlanView::new(&record, &ledger))
}

/// `plan show`: the plan's view and who made its last change.
fn plan_show(c: &mut Conn, id: i64) -> Result<Output, AppError> {
    let view = PlanView {
        last_change: changes::last_change(c, None, Some(id))?,
        ..plan_view(c, id)?
    };
    pretty(&view)
}

/// Runs a plan command; a write is recorded in the change history (one transaction).
pub fn plan_cmd(c: &mut Conn, cmd: PlanCmd, now: Ts, author: &Author) -> Result<Output, AppError> {
    match (history::plan_write(&cmd), cmd) {
        (Some(w), PlanCmd::Seats { id, count }) => {
            history::recorded_with_states(c, author, now, w, |c| plan_seats(c, id, count, now))
        }
        (Some(w), cmd) => history::recorded(c, author, now, w, |c| plan_run(c, cmd, now)),
        (None, cmd) => plan_run(c, cmd, now),
    }
}

/// `plan seats`: the answer, and the states the report read and wrote for the history.
fn plan_seats(
    c: &mut Conn,
    id: i64,
    count: i64,
    now: Ts,
) -> Result<(Output, history::States), AppError> {
    // The customer's seat count is written with the change's append (`States::with_head`).
    let report = ops::report_seats_leaving_the_count(c, id, count, now)?;
    let with_head = WithHead {
        seat_count: Some(report.seat_count),
    };
    let status = report.status.name();
    let text = match &report.entry {
        Some(e) => format!(
            "ledger entry {}: {} licenses, {} at next renewal",
            e.id,
            e.licenses,
            e.licenses_at_next_renewal.unwrap_or(0)
        ),
        None => format!("plan {id} is now {status}: no ledger entry written"),
    };
    let output = out(
        &SeatsView {
            ledger_entry: report.entry.as_ref().map(LedgerView::from),
            plan_status: status,
        },
        text,
    )?;
    let (record, newest) = report.before;
    let states = if report.only_the_entry_moved {
        // The fields a new entry can move are enough to compare.
        history::States {
            before: history::plan_licenses_state(&record, newest),
            after: Some(history::plan_licenses_state(&record, report.entry)),
            with_head,
        }
    } else {
        history::States {
            before: history::plan_state(&record, newest)?,
            after: None,
            with_head,
        }
    };
    Ok((output, states))
}

/// Runs a plan command that reads (`show`, `list`, `ledger`, `events`); a write is an internal
/// error here.
pub fn plan_read(c: &mut Conn, cmd: PlanCmd, now: Ts) -> Result<Output, AppError> {
    if history::plan_write(&cmd).is_some() {
        return Err(AppError::Internal(
            "a plan write must go through plan_cmd and the change history".into(),
        ));
    }
    plan_run(c, cmd, now)
}

fn plan_run(c: &mut Conn, cmd: PlanCmd, now: Ts) -> Result<Output, AppError> {
    match cmd {
        PlanCmd::Create(a) => {
            let input = ops::PlanInput {
                customer_id: a.customer,
                tier: a.tier,
                schedule: a.schedule,
                licenses: a.licenses,
                licenses_at_next_renewal: a.licenses_at_next_renewal,
                automanage_licenses: a.automanage_licenses,
                invoice_billing: a.invoice_billing,
                anchor: a.anchor,
                price_per_license: a.price_per_license_cents,
                fixed_price: a.fixed_price_cents,
                end_date: a.end_date,
                free_trial_days: a.free_trial_days,
                first_invoice_by_worker: a.first_invoice_by_worker,
            };
            let id = ops::create_plan(c, &input, now)?;
            out(&Created { id }, format!("created plan {id}"))
        }
        PlanCmd::Show { id } => plan_show(c, id),
        PlanCmd::List {
            customer,
            status,
            due,
        } => {
            let filter = PlanFilter {
                customer_id: customer,
                status,
                due_at: due.then_some(now),
                ..PlanFilter::default()
            };
            let mut views = vec![];
            for r in repo::list_plans(c, &filter)? {
                let ledger = repo::ledger_of(c, r.plan.id)?;
                views.push(PlanView::new(&r, &ledger));
            }
            pretty(&views)
        }
        PlanCmd::Ledger { id } => {
            ops::plan(c, id)?;
            let ledger: Vec<LedgerView> = repo::ledger_of(c, id)?
                .iter()
                .map(LedgerView::from)
                .collect();
            pretty(&ledger)
        }
        PlanCmd::Seats { id, count } => Ok(plan_seats(c, id, count, now)?.0),
        PlanCmd::BuyLicenses { id, licenses } => {
            pretty(&LedgerView::from(&ops::buy_licenses(c, id, licenses, now)?))
        }
        PlanCmd::RenewalLicenses { id, licenses } => pretty(&LedgerView::from(
            &ops::renewal_licenses(c, id, licenses, now)?,
        )),
        PlanCmd::Schedule { .. }
        | PlanCmd::SetBillingMode { .. }
        | PlanCmd::SetLicenseManagement { .. }
        | PlanCmd::UpgradeTier { .. }
        | PlanCmd::DowngradeNow { .. }
        | PlanCmd::SetEndDate { .. }
        | PlanCmd::ScheduleSuccessor { .. } => plan_change(c, cmd, now),
        PlanCmd::Retry { id } => {
            ops::retry_plan(c, id)?;
            pretty(&plan_view(c, id)?)
        }
        PlanCmd::Events { id } => {
            ops::plan(c, id)?;
            pretty(&repo::events_of_plan(c, id)?)
        }
        PlanCmd::Preview { .. } => Err(AppError::Internal(
            "a preview runs on a connection of its own, not through plan_cmd".into(),
        )),
    }
}

/// The commands that change a plan's status, tier, settings or end.
fn plan_change(c: &mut Conn, cmd: PlanCmd, now: Ts) -> Result<Output, AppError> {
    match cmd {
        PlanCmd::Schedule { id, change } => {
            let p = ops::schedule_change(c, id, change, now)?;
            pretty(&plan_view(c, p.id)?)
        }
        PlanCmd::SetBillingMode { id, mode } => {
            ops::set_billing_mode(c, id, mode, now)?;
            pretty(&plan_view(c, id)?)
        }
        PlanCmd::SetLicenseManagement { id, mode } => {
            ops::set_license_management(c, id, mode, now)?;
            pretty(&plan_view(c, id)?)
        }
        PlanCmd::UpgradeTier { id, tier } => {
            let new = ops::upgrade_tier(c, id, tier, now)?;
            pretty(&plan_view(c, new.id)?)
        }
        PlanCmd::DowngradeNow { id } => {
            ops::downgrade_now(c, id, now)?;
            pretty(&plan_view(c, id)?)
        }
        PlanCmd::SetEndDate { id, date } => {
            ops::set_end_date(c, id, date, now)?;
            pretty(&plan_view(c, id)?)
        }
        PlanCmd::ScheduleSuccessor {
            id,
            fixed_price_cents,
            tier,
            schedule,
            automanage_licenses,
        } => {
            let successor = ops::Successor {
                fixed_price: fixed_price_cents,
                tier,
                schedule,
                automanage_licenses,
            };
            let new_id = ops::schedule_successor(c, id, &successor, now)?;
            out(
                &Created { id: new_id },
                format!("scheduled successor plan {new_id}"),
            )
        }
        _ => Err(AppError::Internal(
            "plan_change got a command that does not change a plan".into(),
        )),
    }
}

pub fn status_of(c: &mut Conn, now: Ts) -> Result<Output, AppError> {
    let view = status_view(c, now)?;
    let text = render::render_status(&view);
    out(&view, text)
}

/// `status`'s document at `now`.
pub fn status_view(c: &mut Conn, now: Ts) -> Result<StatusView, AppError> {
    let mut plans = |f: PlanFilter| -> Result<Vec<PlanState>, AppError> {
        Ok(repo::list_plans(c, &f)?
            .iter()
            .map(PlanState::from)
            .collect())
    };
    let due = plans(PlanFilter {
        due_at: Some(now),
        ..PlanFilter::default()
    })?;
    let leased = plans(PlanFilter {
        leased: true,
        ..PlanFilter::default()
    })?;
    let needs_attention = plans(PlanFilter {
        needs_attention: true,
        ..PlanFilter::default()
    })?;
    let retrying = plans(PlanFilter {
        retrying: true,
        ..PlanFilter::default()
    })?;
    let (unsent_count, unsent) = repo::unsent_invoices(c, 20)?;
    let oldest_overdue = repo::oldest_due_plan(c, now)?.map(|r| OldestDue {
        plan_id: r.plan.id,
        customer_id: r.plan.customer_id,
        next_invoice_date: r.plan.next_invoice_date,
    });
    let unpaid = crate::db::payments::unpaid(c)?;
    // What the overdue policy (Zulip's bounds) would do now, or leaves to a person.
    let overdue = jobs::overdue::decide(c, &crate::domain::OverduePolicy::default())?
        .into_iter()
        .filter_map(|(d, a)| {
            Some(jobs::overdue::Action {
                action: Some(overdue_action_name(&d)?),
                ..a
            })
        })
        .collect();
    Ok(StatusView {
        now,
        due,
        leased,
        needs_attention,
        retrying,
        installation: crate::db::installation::installation(c)?.id().to_string(),
        unsent_invoices: UnsentInvoices {
            count: unsent_count,
            oldest: unsent.iter().map(UnsentInvoice::from).collect(),
        },
        oldest_overdue,
        last_pass: crate::db::workers::last_pass_run(c)?,
        overdue,
        unpaid_invoices: UnpaidInvoices {
            count: unpaid.count,
            amount_cents: unpaid.amount_cents,
            oldest: unpaid
                .oldest
                .map(|(invoice_id, customer_id, event_time)| UnpaidInvoice {
                    invoice_id,
                    customer_id,
                    event_time,
                }),
        },
    })
}
