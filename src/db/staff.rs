//! The support console's staff tables: accounts, sessions (only a hash of each id is kept) and
//! failed logins (for the throttle). The rules they serve are in `console::session`.

use diesel::prelude::*;
use serde::Serialize;

use super::{Conn, DbError};
use crate::domain::Ts;
use crate::with_conn;

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct StaffRow {
    pub id: i64,
    pub email: String,
    pub role: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    #[serde(skip)]
    pub setup_sha256: Option<String>,
    #[serde(skip)]
    pub setup_expires_at: Option<Ts>,
    pub disabled_at: Option<Ts>,
    pub created_at: Ts,
}

/// A new staff account: with a password hash, or with a setup secret's hash and its expiry.
pub struct NewStaff<'a> {
    pub email: &'a str,
    pub role: &'a str,
    pub password_hash: Option<&'a str>,
    pub setup_sha256: Option<&'a str>,
    pub setup_expires_at: Option<Ts>,
    pub now: Ts,
}

pub fn insert_staff(conn: &mut Conn, s: &NewStaff) -> Result<i64, DbError> {
    Ok(
        with_conn!(conn, c => diesel::insert_into(console_user::table)
        .values((
            console_user::email.eq(s.email),
            console_user::role.eq(s.role),
            console_user::password_hash.eq(s.password_hash),
            console_user::setup_sha256.eq(s.setup_sha256),
            console_user::setup_expires_at.eq(s.setup_expires_at),
            console_user::created_at.eq(s.now),
        ))
        .returning(console_user::id)
        .get_result::<i64>(c))?,
    )
}

pub fn staff(conn: &mut Conn) -> Result<Vec<StaffRow>, DbError> {
    Ok(with_conn!(conn, c => console_user::table
        .order(console_user::id)
        .load::<StaffRow>(c))?)
}

pub fn staff_by_email(conn: &mut Conn, email: &str) -> Result<Option<StaffRow>, DbError> {
    Ok(with_conn!(conn, c => console_user::table
        .filter(console_user::email.eq(email))
        .first::<StaffRow>(c)
        .optional())?)
}

pub fn staff_by_id(conn: &mut Conn, id: i64) -> Result<Option<StaffRow>, DbError> {
    Ok(with_conn!(conn, c => console_user::table
        .find(id)
        .first::<StaffRow>(c)
        .optional())?)
}

pub fn set_role(conn: &mut Conn, id: i64, role: &str) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(console_user::table.find(id))
        .set(console_user::role.eq(role))
        .execute(c))?;
    Ok(())
}

pub fn set_disabled(conn: &mut Conn, id: i64, at: Option<Ts>) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(console_user::table.find(id))
        .set(console_user::disabled_at.eq(at))
        .execute(c))?;
    Ok(())
}

/// Sets the password and spends the setup secret.
pub fn set_password(conn: &mut Conn, id: i64, password_hash: &str) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(console_user::table.find(id))
        .set((
            console_user::password_hash.eq(Some(password_hash)),
            console_user::setup_sha256.eq(None::<String>),
            console_user::setup_expires_at.eq(None::<Ts>),
        ))
        .execute(c))?;
    Ok(())
}

/// A session and its staff member.
#[derive(Debug, Clone, Queryable)]
pub struct SessionRow {
    pub id_sha256: String,
    pub user_id: i64,
    pub csrf_token: String,
    pub created_at: Ts,
    pub last_seen_at: Ts,
}

pub fn insert_session(
    conn: &mut Conn,
    id_sha256: &str,
    user_id: i64,
    csrf_token: &str,
    now: Ts,
) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::insert_into(console_session::table)
        .values((
            console_session::id_sha256.eq(id_sha256),
            console_session::user_id.eq(user_id),
            console_session::csrf_token.eq(csrf_token),
            console_session::created_at.eq(now),
            console_session::last_seen_at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}

pub fn session(
    conn: &mut Conn,
    id_sha256: &str,
) -> Result<Option<(SessionRow, StaffRow)>, DbError> {
    Ok(with_conn!(conn, c => console_session::table
        .inner_join(console_user::table)
        .filter(console_session::id_sha256.eq(id_sha256))
        .select((
            (
                console_session::id_sha256,
                console_session::user_id,
                console_session::csrf_token,
                console_session::created_at,
                console_session::last_seen_at,
            ),
            console_user::all_columns,
        ))
        .first::<(SessionRow, StaffRow)>(c)
        .optional())?)
}

pub fn touch_session(conn: &mut Conn, id_sha256: &str, now: Ts) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::update(console_session::table.find(id_sha256))
        .set(console_session::last_seen_at.eq(now))
        .execute(c))?;
    Ok(())
}

pub fn delete_session(conn: &mut Conn, id_sha256: &str) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::delete(console_session::table.find(id_sha256)).execute(c))?;
    Ok(())
}

/// Ends every session of a staff member (disabled, or given another role).
pub fn delete_sessions_of(conn: &mut Conn, user_id: i64) -> Result<usize, DbError> {
    Ok(with_conn!(conn, c => diesel::delete(
        console_session::table.filter(console_session::user_id.eq(user_id)),
    )
    .execute(c))?)
}

/// Sessions idle since `idle_before` or started before `started_before` go.
pub fn purge_sessions(conn: &mut Conn, idle_before: Ts, started_before: Ts) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::delete(
        console_session::table.filter(
            console_session::last_seen_at
                .lt(idle_before)
                .or(console_session::created_at.lt(started_before)),
        ),
    )
    .execute(c))?;
    Ok(())
}

pub fn insert_failure(conn: &mut Conn, email: &str, address: &str, now: Ts) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::insert_into(console_login_failure::table)
        .values((
            console_login_failure::email.eq(email),
            console_login_failure::address.eq(address),
            console_login_failure::at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}

/// Failed logins since `since`: for this account, and from this address.
pub fn failures_since(
    conn: &mut Conn,
    email: &str,
    address: &str,
    since: Ts,
) -> Result<(i64, i64), DbError> {
    Ok(with_conn!(conn, c => {
        let by_email = console_login_failure::table
            .filter(console_login_failure::email.eq(email))
            .filter(console_login_failure::at.ge(since))
            .count()
            .get_result::<i64>(c)?;
        let by_address = console_login_failure::table
            .filter(console_login_failure::address.eq(address))
            .filter(console_login_failure::at.ge(since))
            .count()
            .get_result::<i64>(c)?;
        Ok::<_, diesel::result::Error>((by_email, by_address))
    })?)
}

/// A successful login clears the account's failures; old failures of everyone go too.
pub fn clear_failures(conn: &mut Conn, email: &str, older_than: Ts) -> Result<(), DbError> {
    with_conn!(conn, c => diesel::delete(
        console_login_failure::table.filter(
            console_login_failure::email
                .eq(email)
                .or(console_login_failure::at.lt(older_than)),
        ),
    )
    .execute(c))?;
    Ok(())
}
