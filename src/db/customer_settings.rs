//! The support knobs of a customer: its minimum licenses, required plan tier and exemption from
//! the license number check (Zulip's support actions).

use diesel::prelude::*;

use super::{Conn, DbError};
use crate::with_conn;

pub fn set_minimum_licenses(conn: &mut Conn, id: i64, minimum: Option<i32>) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(customer::table.find(id))
        .set(customer::minimum_licenses.eq(minimum))
        .execute(c))?;
    Ok(())
}

pub fn set_required_plan_tier(conn: &mut Conn, id: i64, tier: Option<i16>) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(customer::table.find(id))
        .set(customer::required_plan_tier.eq(tier))
        .execute(c))?;
    Ok(())
}

pub fn set_exempt(conn: &mut Conn, id: i64, exempt: bool) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(customer::table.find(id))
        .set(customer::exempt_from_license_number_check.eq(exempt))
        .execute(c))?;
    Ok(())
}
