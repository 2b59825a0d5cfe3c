//! The API's bearer tokens: `api-token create|list|revoke`, and how a presented token is
//! checked. A token reads `pit_<id>_<secret>`: the id names its row, the secret is 32 random
//! bytes of which only the SHA-256 is stored, compared in constant time.

use clap::Subcommand;
use rand::RngCore;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::db::api::{self as rows, TokenRow};
use crate::db::Conn;
use crate::domain::change::{Author, Change};
use crate::domain::Ts;
use crate::error::{conflict, refuse, AppError};

use super::render::{out, Output};

#[derive(Debug, Subcommand)]
pub enum ApiTokenCmd {
    /// Create a token; prints its secret once (it cannot be shown again).
    Create {
        /// A unique name, shown in the API's request log.
        #[arg(long)]
        name: String,
        /// read (GET requests) or write (every request).
        #[arg(long, value_parser = Scope::parse)]
        scope: Scope,
    },
    /// The tokens, without their secrets.
    List,
    /// Revoke a token by name: refused from the next request on, on every worker.
    Revoke {
        /// The token's name.
        name: String,
    },
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, AppError> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            other => Err(refuse(
                "scope",
                format!("unknown scope {other:?}: expected read or write"),
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// A token that was presented and found valid.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: i64,
    pub name: String,
    pub scope: Scope,
}

/// Runs a token command; creating and revoking are recorded in the change history (never the
/// secret), in the command's transaction.
pub fn run(c: &mut Conn, cmd: ApiTokenCmd, now: Ts, author: &Author) -> Result<Output, AppError> {
    let operation = match &cmd {
        ApiTokenCmd::Create { .. } => "api_token.create",
        ApiTokenCmd::Revoke { .. } => "api_token.revoke",
        ApiTokenCmd::List => return run_cmd(c, cmd, now),
    };
    c.transaction(|c| {
        let out = run_cmd(c, cmd, now)?;
        let name = out.json.get("name").cloned().unwrap_or_default();
        let (before, after) = match operation {
            "api_token.create" => (
                serde_json::json!({}),
                serde_json::json!({ "name": name, "scope": out.json.get("scope") }),
            ),
            _ => (
                serde_json::json!({ "revoked": false }),
                serde_json::json!({ "revoked": true }),
            ),
        };
        let objects = serde_json::json!({ "token": name });
        let change = Change::of_objects(now, operation, objects, before, after);
        crate::db::changes::record(c, author, &change)?;
        Ok(out)
    })
}

fn run_cmd(c: &mut Conn, cmd: ApiTokenCmd, now: Ts) -> Result<Output, AppError> {
    match cmd {
        ApiTokenCmd::Create { name, scope } => {
            let name = name.trim();
            if name.is_empty() || name.len() > 100 {
                return Err(refuse("name", "must be 1 to 100 characters"));
            }
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            let secret = hex(&secret);
            let id = rows::insert_token(c, name, scope.name(), &sha256_hex(&secret), now).map_err(
                |e| {
                    if e.is_unique_violation() {
                        conflict("name", format!("a token named {name:?} exists already"))
                    } else {
                        e.into()
                    }
                },
            )?;
            let token = format!("pit_{id}_{secret}");
            out(
                &serde_json::json!({ "name": name, "scope": scope.name(), "token": token }),
                format!(
                    "created token {name} ({}): {token}\nkeep it now: it is not shown again",
                    scope.name()
                ),
            )
        }
        ApiTokenCmd::List => {
            let tokens = rows::tokens(c)?;
            let text = tokens
                .iter()
                .map(|t| {
                    format!(
                        "{} {} created {}{}",
                        t.name,
                        t.scope,
                        t.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        t.revoked_at
                            .map(|r| format!(
                                ", revoked {}",
                                r.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ))
                            .unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            out(&tokens, text)
        }
        ApiTokenCmd::Revoke { name } => {
            if !rows::revoke_token(c, &name, now)? {
                return Err(AppError::NotFound(format!("no live token named {name:?}")));
            }
            out(
                &serde_json::json!({ "name": name, "revoked": true }),
                format!("revoked token {name}"),
            )
        }
    }
}

/// The caller behind a bearer token, or `None` for a malformed, unknown, revoked or wrong one
/// (the four are not told apart).
pub fn authenticate(c: &mut Conn, token: &str) -> Result<Option<Caller>, AppError> {
    let Some((id, secret)) = token
        .strip_prefix("pit_")
        .and_then(|rest| rest.split_once('_'))
        .and_then(|(id, secret)| Some((id.parse::<i64>().ok()?, secret)))
    else {
        return Ok(None);
    };
    let Some(row): Option<TokenRow> = rows::token(c, id)? else {
        return Ok(None);
    };
    let presented = sha256_hex(secret);
    let matches: bool = presented
        .as_bytes()
        .ct_eq(row.secret_sha256.as_bytes())
        .into();
    if !matches || row.revoked_at.is_some() {
        return Ok(None);
    }
    let scope = Scope::parse(&row.scope).map_err(|_| {
        crate::db::DbError::BadRow(format!("api_token {id}: scope {:?}", row.scope))
    })?;
    Ok(Some(Caller {
        token_id: row.id,
        name: row.name,
        scope,
    }))
}

pub fn sha256_hex(data: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_the_standard_one() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn scopes_parse_and_refuse_others() {
        assert_eq!(Scope::parse("read").ok(), Some(Scope::Read));
        assert_eq!(Scope::parse("write").ok(), Some(Scope::Write));
        assert!(Scope::parse("admin").is_err());
    }
}
