//! `changes list` and `changes verify`: the change history read back, and its chain checked.

use clap::Subcommand;
use serde_json::Value;

use super::commands::parse_time;
use super::render::{out, Output};
use crate::db::changes::{self, Break, ChangeFilter};
use crate::db::{Conn, Db};
use crate::domain::change::{text, MAX_NAME_CHARS};
use crate::domain::Ts;
use crate::error::{refuse, AppError};
use crate::views::{ChangeView, LastChange};

/// The most rows one page of `changes list` holds.
pub const MAX_LIMIT: i64 = 1000;
/// Rows per page when no limit is given.
pub const DEFAULT_LIMIT: i64 = 100;

#[derive(Debug, Subcommand)]
pub enum ChangesCmd {
    /// The changes, oldest first, filtered; a page at a time (--limit, --starting-after).
    List {
        /// Only this customer's changes.
        #[arg(long)]
        customer: Option<i64>,
        /// Only this plan's changes (and the change that created it).
        #[arg(long)]
        plan: Option<i64>,
        /// Only this actor's changes (`cli:ann`, `api:host-app`, `system:pass`, …).
        #[arg(long)]
        actor: Option<String>,
        /// Only this operation (`plan.seats`, `customer.set_discount`, `pass.renewal`, …).
        #[arg(long)]
        operation: Option<String>,
        /// Only changes acting at or after this instant.
        #[arg(long, value_parser = parse_time)]
        since: Option<Ts>,
        /// Only changes acting before this instant.
        #[arg(long, value_parser = parse_time)]
        until: Option<Ts>,
        /// At most this many rows (1 to 1000; default 100).
        #[arg(long)]
        limit: Option<i64>,
        /// The page after this change id (the last id of the page before).
        #[arg(long)]
        starting_after: Option<i64>,
    },
    /// Walk the chain of hashes from the first change; exit 3 naming the first change that was
    /// altered or removed.
    Verify,
}

/// The filters of a list, as the CLI and the API take them.
#[derive(Debug, Clone, Default)]
pub struct ChangeQuery {
    pub customer: Option<i64>,
    pub plan: Option<i64>,
    pub actor: Option<String>,
    pub operation: Option<String>,
    pub since: Option<Ts>,
    pub until: Option<Ts>,
    pub limit: Option<i64>,
    pub starting_after: Option<i64>,
}

impl ChangeQuery {
    /// The filter, every value bounded; `extra` more rows are asked for (the API's `has_more`).
    pub fn filter(self, extra: i64) -> Result<ChangeFilter, AppError> {
        let limit = match self.limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                return Err(refuse(
                    "limit",
                    format!("{{field}} must be 1 to {MAX_LIMIT}"),
                ))
            }
        };
        for (field, id) in [
            ("customer", self.customer),
            ("plan", self.plan),
            ("starting_after", self.starting_after),
        ] {
            if id.is_some_and(|n| n < 0) {
                return Err(refuse(field, "{field} must not be negative"));
            }
        }
        let name = |field: &'static str, v: Option<String>| {
            v.map(|v| text(field, &v, MAX_NAME_CHARS)).transpose()
        };
        Ok(ChangeFilter {
            customer_id: self.customer,
            plan_id: self.plan,
            actor: name("actor", self.actor)?,
            operation: name("operation", self.operation)?,
            since: self.since,
            until: self.until,
            starting_after: self.starting_after,
            limit: limit + extra,
        })
    }
}

/// The newest change of a customer (`plan` none) or of a plan.
pub fn last_change(
    c: &mut Conn,
    customer: Option<i64>,
    plan: Option<i64>,
) -> Result<Option<LastChange>, AppError> {
    Ok(changes::last_of(c, customer, plan)?.map(LastChange::from))
}

pub fn list(c: &mut Conn, q: ChangeQuery, extra: i64) -> Result<Vec<ChangeView>, AppError> {
    let filter = q.filter(extra)?;
    Ok(changes::list(c, &filter)?
        .into_iter()
        .map(ChangeView::from)
        .collect())
}

pub fn run(db: &Db, cmd: ChangesCmd) -> Result<Output, AppError> {
    match cmd {
        ChangesCmd::List {
            customer,
            plan,
            actor,
            operation,
            since,
            until,
            limit,
            starting_after,
        } => {
            let q = ChangeQuery {
                customer,
                plan,
                actor,
                operation,
                since,
                until,
                limit,
                starting_after,
            };
            let views = db.run(|c| list(c, q, 0))?;
            let text = views.iter().map(render).collect::<Vec<_>>().join("\n");
            out(&views, text)
        }
        ChangesCmd::Verify => {
            let v = db.run(|c| Ok::<_, AppError>(changes::verify(c)?))?;
            let text = match &v.first_break {
                None => format!(
                    "the change history is intact: {} changes in {} chains, through change {}",
                    v.rows, v.chains, v.last_id
                ),
                Some(Break::Altered { id }) => format!(
                    "change {id} was altered after it was written (its hash does not match its content); {} changes before it are intact",
                    v.rows
                ),
                Some(Break::Unlinked {
                    id,
                    customer_id,
                    after_id,
                }) => format!(
                    "change {id} does not follow change {after_id}, the one before it in {}: a change between was removed, or change {id}'s link rewritten; {} changes before it are intact",
                    chain_name(*customer_id),
                    v.rows
                ),
                Some(Break::Truncated {
                    customer_id,
                    last_id,
                    head_id: 0,
                }) => format!(
                    "the head of {} was removed or reset: its chain ends at change {last_id}, its head names none",
                    chain_name(*customer_id)
                ),
                Some(Break::Truncated {
                    customer_id,
                    last_id,
                    head_id,
                }) => format!(
                    "the newest changes of {} were removed: its chain ends at change {last_id}, its head says change {head_id}",
                    chain_name(*customer_id)
                ),
            };
            let mut output = out(&v, text)?;
            if v.first_break.is_some() {
                output.exit_code = 3;
            }
            Ok(output)
        }
    }
}

fn chain_name(customer_id: Option<i64>) -> String {
    match customer_id {
        Some(id) => format!("customer {id}'s chain"),
        None => "the chain of changes of no customer".to_string(),
    }
}

/// One line per change: id, instant, actor, operation, objects, what moved, why.
fn render(v: &ChangeView) -> String {
    let mut moved = vec![];
    match (&v.before, &v.after) {
        (Value::Object(before), _) if before.is_empty() => moved.push("created".to_string()),
        (before, after) => fields_moved("", before, after, &mut moved),
    }
    let mut line = format!(
        "#{} {} {}{} {}",
        v.id,
        v.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        v.actor,
        v.on_behalf_of
            .as_deref()
            .map(|o| format!(" (for {o})"))
            .unwrap_or_default(),
        v.operation
    );
    for (name, id) in [
        ("customer", v.customer_id),
        ("plan", v.plan_id),
        ("new plan", v.new_plan_id),
        ("invoice", v.invoice_id),
    ] {
        if let Some(id) = id {
            line.push_str(&format!(" {name} {id}"));
        }
    }
    if !moved.is_empty() {
        line.push_str(&format!(": {}", moved.join(", ")));
    }
    if let Some(r) = &v.reason {
        line.push_str(&format!(" — {r}"));
    }
    line
}

/// `path: before → after` for every leaf that moved.
fn fields_moved(path: &str, before: &Value, after: &Value, into: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, av) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                fields_moved(&p, b.get(k).unwrap_or(&Value::Null), av, into);
            }
        }
        (Value::Null, Value::Object(_)) => into.push(format!("{path}: created")),
        (b, a) => into.push(format!("{path}: {b} → {a}")),
    }
}
