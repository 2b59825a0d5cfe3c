//! A refusal of the caller's input, with the field it concerns.
//!
//! The field is named once, in the API's spelling (`end_date`), and each surface names it its
//! own way when it shows the refusal: the CLI as its flag (`--end-date`) or positional argument
//! (`MODE`), the API as the error's `param` and in its message as `end_date`, a web form beside
//! the input of that name. No surface reads the field back out of the sentence.

use std::fmt;

/// A refused input: which field (if one), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    field: Option<&'static str>,
    /// The message; where it names the field it holds [`FIELD`].
    message: String,
}

/// The mark in a message where the field's name goes.
pub const FIELD: &str = "{field}";

/// The fields the CLI takes as positional arguments rather than `--flags`.
const POSITIONAL: &[&str] = &["id", "mode", "exempt"];

/// How a surface spells a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// `--end-date`, or `MODE` for a positional argument.
    Cli,
    /// `end_date`, as in a JSON body or a query string.
    Wire,
}

impl Refusal {
    /// A refusal about the input as a whole (a plan's state, an id that does not fit).
    pub fn new(message: impl Into<String>) -> Refusal {
        Refusal {
            field: None,
            message: message.into(),
        }
    }

    /// A refusal of `field`. The message names the field where it holds [`FIELD`]; a message
    /// without the mark is about the field as its subject (`"must not be negative"` reads
    /// `--licenses must not be negative`).
    pub fn of(field: &'static str, message: impl Into<String>) -> Refusal {
        let message = message.into();
        let message = if message.contains(FIELD) {
            message
        } else {
            format!("{FIELD} {message}")
        };
        Refusal {
            field: Some(field),
            message,
        }
    }

    /// The field, in the API's spelling.
    pub fn field(&self) -> Option<&'static str> {
        self.field
    }

    /// The one-line message with the field spelled as `spelling` says.
    pub fn render(&self, spelling: Spelling) -> String {
        match self.field {
            None => self.message.clone(),
            Some(field) => self.message.replace(FIELD, &spell(field, spelling)),
        }
    }
}

/// How `field` is written on a surface.
pub fn spell(field: &str, spelling: Spelling) -> String {
    match spelling {
        Spelling::Wire => field.to_string(),
        Spelling::Cli if POSITIONAL.contains(&field) => field.to_uppercase(),
        Spelling::Cli => format!("--{}", field.replace('_', "-")),
    }
}

/// The CLI's rendering: what the binary prints after `error: `.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Spelling::Cli))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_surface_spells_the_field_its_own_way() {
        let r = Refusal::of("end_date", "must be after the plan's anchor");
        assert_eq!(r.field(), Some("end_date"));
        assert_eq!(r.to_string(), "--end-date must be after the plan's anchor");
        assert_eq!(
            r.render(Spelling::Wire),
            "end_date must be after the plan's anchor"
        );
        let mid = Refusal::of("licenses", "plan 5 cannot renew with {field} below 3");
        assert_eq!(
            mid.to_string(),
            "plan 5 cannot renew with --licenses below 3"
        );
        let positional = Refusal::of("mode", "must be automatic or manual");
        assert_eq!(positional.to_string(), "MODE must be automatic or manual");
        let whole = Refusal::new("plan 5 is not live (status ended)");
        assert_eq!(whole.field(), None);
        assert_eq!(whole.render(Spelling::Wire), whole.to_string());
    }
}
