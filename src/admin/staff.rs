//! The support console's staff: `console-user create|list|disable|enable|set-role`, their roles,
//! and how a password is kept and checked (argon2id, OWASP's parameters: 19 MiB, two passes,
//! one lane). Every write is recorded in the change history, never a password or a secret.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use clap::Subcommand;
use rand::RngCore;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::db::staff::{self as rows, NewStaff, StaffRow};
use crate::db::Conn;
use crate::domain::change::{Author, Change};
use crate::domain::Ts;
use crate::error::{conflict, refuse, AppError};

use super::render::{out, Output};
use super::tokens::sha256_hex;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted (argon2 takes any length; this bounds the work per login).
pub const MAX_PASSWORD_CHARS: usize = 256;
/// How long a setup link works.
pub const SETUP_HOURS: i64 = 24;
const MAX_EMAIL_CHARS: usize = 254;

#[derive(Debug, Subcommand)]
pub enum ConsoleUserCmd {
    /// Create a staff account. The password is read from standard input with
    /// --password-stdin; without it a one-time setup link (valid 24 hours) is printed once.
    Create {
        /// The staff member's email (their login name).
        #[arg(long)]
        email: String,
        /// viewer (reads), support (also changes customers and plans), admin (also staff and
        /// API tokens).
        #[arg(long, value_parser = Role::parse)]
        role: Role,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// The staff accounts.
    List,
    /// Refuse this account's logins and end its sessions, on every worker.
    Disable {
        /// The staff member's email.
        email: String,
    },
    /// Let a disabled account log in again.
    Enable {
        /// The staff member's email.
        email: String,
    },
    /// Give an account another role (its sessions end).
    SetRole {
        /// The staff member's email.
        email: String,
        /// viewer, support or admin.
        #[arg(long, value_parser = Role::parse)]
        role: Role,
    },
}

/// What a staff member may do: each role can do what the ones before it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Support,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "support" => Ok(Role::Support),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected viewer, support or admin"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Support => "support",
            Role::Admin => "admin",
        }
    }
}

/// A staff member as the console knows them after login.
#[derive(Debug, Clone)]
pub struct Staff {
    pub id: i64,
    pub email: String,
    pub role: Role,
}

impl Staff {
    pub fn of(row: &StaffRow) -> Result<Staff, AppError> {
        let role = Role::parse(&row.role).map_err(|_| {
            crate::db::DbError::BadRow(format!("console_user {}: role {:?}", row.id, row.role))
        })?;
        Ok(Staff {
            id: row.id,
            email: row.email.clone(),
            role,
        })
    }
}

/// Runs a staff command (`password`: the line read from standard input, when asked for).
pub fn run(
    c: &mut Conn,
    cmd: ConsoleUserCmd,
    password: Option<String>,
    now: Ts,
    author: &Author,
) -> Result<Output, AppError> {
    if let ConsoleUserCmd::List = cmd {
        let staff = rows::staff(c)?;
        let text = staff
            .iter()
            .map(|s| {
                format!(
                    "{} {}{}{}",
                    s.email,
                    s.role,
                    if s.password_hash.is_none() {
                        " (setup link not used yet)"
                    } else {
                        ""
                    },
                    if s.disabled_at.is_some() {
                        " (disabled)"
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        return out(&staff, text);
    }
    c.transaction(|c| {
        let (operation, email, before, after, output) = write(c, cmd, password, now)?;
        let objects = serde_json::json!({ "staff": email });
        let change = Change::of_objects(now, operation, objects, before, after);
        crate::db::changes::record(c, author, &change)?;
        Ok(output)
    })
}

type Written = (
    &'static str,
    String,
    serde_json::Value,
    serde_json::Value,
    Output,
);

fn write(
    c: &mut Conn,
    cmd: ConsoleUserCmd,
    password: Option<String>,
    now: Ts,
) -> Result<Written, AppError> {
    use serde_json::json;
    match cmd {
        ConsoleUserCmd::List => Err(AppError::Internal("list is not a write".into())),
        ConsoleUserCmd::Create { email, role, .. } => {
            let email = normalize_email(&email)?;
            let (password_hash, setup) = match password {
                Some(p) => (Some(hash_password(&p)?), None),
                None => (None, Some(secret())),
            };
            let id = rows::insert_staff(
                c,
                &NewStaff {
                    email: &email,
                    role: role.name(),
                    password_hash: password_hash.as_deref(),
                    setup_sha256: setup.as_deref().map(sha256_hex).as_deref(),
                    setup_expires_at: setup
                        .as_ref()
                        .map(|_| now + chrono::Duration::hours(SETUP_HOURS)),
                    now,
                },
            )
            .map_err(|e| {
                if e.is_unique_violation() {
                    conflict(
                        "email",
                        format!("a staff account for {email} exists already"),
                    )
                } else {
                    e.into()
                }
            })?;
            let link = setup.map(|s| format!("/setup/{id}_{s}"));
            let text = match &link {
                Some(l) => format!(
                    "created {email} ({}); the setup link, valid {SETUP_HOURS} hours and shown only now: \
                     open {l} on the console's address to choose a password",
                    role.name()
                ),
                None => format!("created {email} ({})", role.name()),
            };
            let output = out(
                &json!({ "id": id, "email": email, "role": role, "setup_path": link }),
                text,
            )?;
            let after = json!({ "email": email, "role": role });
            Ok(("console_user.create", email, json!({}), after, output))
        }
        ConsoleUserCmd::Disable { email } => {
            let row = existing(c, &email)?;
            rows::set_disabled(c, row.id, Some(now))?;
            rows::delete_sessions_of(c, row.id)?;
            let output = out(
                &json!({ "email": row.email, "disabled": true }),
                format!("disabled {}: its sessions are ended", row.email),
            )?;
            let before = json!({ "disabled": row.disabled_at.is_some() });
            Ok((
                "console_user.disable",
                row.email,
                before,
                json!({ "disabled": true }),
                output,
            ))
        }
        ConsoleUserCmd::Enable { email } => {
            let row = existing(c, &email)?;
            rows::set_disabled(c, row.id, None)?;
            let output = out(
                &json!({ "email": row.email, "disabled": false }),
                format!("enabled {}", row.email),
            )?;
            let before = json!({ "disabled": row.disabled_at.is_some() });
            Ok((
                "console_user.enable",
                row.email,
                before,
                json!({ "disabled": false }),
                output,
            ))
        }
        ConsoleUserCmd::SetRole { email, role } => {
            let row = existing(c, &email)?;
            rows::set_role(c, row.id, role.name())?;
            rows::delete_sessions_of(c, row.id)?;
            let output = out(
                &json!({ "email": row.email, "role": role }),
                format!(
                    "{} is now {}: its sessions are ended",
                    row.email,
                    role.name()
                ),
            )?;
            let before = json!({ "role": row.role });
            Ok((
                "console_user.set_role",
                row.email,
                before,
                json!({ "role": role }),
                output,
            ))
        }
    }
}

fn existing(c: &mut Conn, email: &str) -> Result<StaffRow, AppError> {
    let email = normalize_email(email)?;
    rows::staff_by_email(c, &email)?
        .ok_or_else(|| AppError::NotFound(format!("no staff account for {email}")))
}

/// An email as a login name: trimmed, lower case, one `@` with text on both sides, bounded.
pub fn normalize_email(email: &str) -> Result<String, AppError> {
    let email = email.trim().to_lowercase();
    let valid = email.chars().count() <= MAX_EMAIL_CHARS
        && !email.chars().any(|c| c.is_control() || c.is_whitespace())
        && email.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(refuse(
            "email",
            "must be an email address such as ada@example.com",
        ))
    }
}

/// The argon2id hasher with OWASP's minimum parameters.
fn hasher() -> Result<Argon2<'static>, AppError> {
    let params = Params::new(19 * 1024, 2, 1, None)
        .map_err(|e| AppError::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Checks a new password's length and hashes it (a PHC string with its salt and parameters).
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(refuse(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(refuse(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let salt = SaltString::generate(&mut OsRng);
    Ok(hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AppError::Internal(format!("argon2: {e}")))?
        .to_string())
}

/// Whether `password` matches the stored hash. `None` (no account, or no password yet) still
/// spends the time of a check, so that a wrong email and a wrong password take as long.
pub fn verify_password(stored: Option<&str>, password: &str) -> bool {
    const DECOY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Jf1sNn0k7Ob9xTm0GHcYVJQ8B0Ec0uvkXk9Ttm0o4XE";
    let too_long = password.chars().count() > MAX_PASSWORD_CHARS;
    let Ok(hasher) = hasher() else {
        return false;
    };
    let (hash, real) = match stored.map(PasswordHash::new) {
        Some(Ok(h)) => (h, true),
        _ => match PasswordHash::new(DECOY) {
            Ok(h) => (h, false),
            Err(_) => return false,
        },
    };
    let password = if too_long { "" } else { password };
    let ok = hasher.verify_password(password.as_bytes(), &hash).is_ok();
    ok && real && !too_long
}

/// Checks a setup link's secret against the stored hash, in constant time.
pub fn setup_matches(row: &StaffRow, secret: &str, now: Ts) -> bool {
    let Some(stored) = &row.setup_sha256 else {
        return false;
    };
    let fresh = row.setup_expires_at.is_some_and(|t| t > now);
    let same: bool = sha256_hex(secret)
        .as_bytes()
        .ct_eq(stored.as_bytes())
        .into();
    same && fresh && row.password_hash.is_none()
}

/// 32 random bytes, hex.
pub fn secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap_or_default();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password(Some(&h), "correct horse battery"));
        assert!(!verify_password(Some(&h), "correct horse batterY"));
        assert!(!verify_password(None, "correct horse battery"));
        assert!(!verify_password(Some("not a hash"), "x"));
    }

    #[test]
    fn short_and_long_passwords_are_refused() {
        assert!(hash_password("elevenchars").is_err());
        assert!(hash_password("twelve chars").is_ok());
        assert!(hash_password(&"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
    }

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email(" Ada@Example.COM ").ok().as_deref(),
            Some("ada@example.com")
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@localhost",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Support && Role::Support < Role::Admin);
        assert_eq!(Role::parse("support"), Ok(Role::Support));
        assert!(Role::parse("root").is_err());
    }
}
