//! The library as a test calls it: connections, pools and plan inputs.

use super::TestDb;

/// A library connection to the test database.
pub fn connect(db: &TestDb) -> plan_invoicer::db::Conn {
    let url = plan_invoicer::db::DbUrl::parse(&db.url).expect("a database URL");
    plan_invoicer::db::Conn::open_checked(&url).expect("connect")
}

/// The pooled database handle a pass takes.
pub fn pool(db: &TestDb) -> plan_invoicer::db::Db {
    let url = plan_invoicer::db::DbUrl::parse(&db.url).expect("a database URL");
    plan_invoicer::db::Db::connect(&url, 4).expect("connect")
}

/// A plan input to fill in with struct update syntax: a monthly Cloud Standard plan of no one.
pub fn base_plan() -> plan_invoicer::ops::PlanInput {
    use plan_invoicer::domain::{BillingSchedule, Tier};
    plan_invoicer::ops::PlanInput::new(0, Tier::CloudStandard, BillingSchedule::Monthly, 0)
}
