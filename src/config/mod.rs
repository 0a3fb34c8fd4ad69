//! The TOML configuration (DOMAIN.md §2) and its validation.
//!
//! [`load`] reads a file, [`parse`] a string; both return a validated
//! [`Config`] or *every* problem found, each naming its place:
//!
//! ```
//! let text = r#"
//! [[carrier]]
//! name = "pstn"
//! address = "udp:127.0.0.2:5090"
//!
//! [[company]]
//! name = "acme"
//! domain = "acme.example.com"
//! country_code = "34"
//! national_length = 9
//! carrier = "pstn"
//!
//!   [[company.friend]]
//!   name = "branch"
//!   priority = 10
//!   password = ""
//!   connection = "register"
//!   patterns = ["2[0-9]{3}", "2[0-9"]
//! "#;
//! let errors = tandem::config::parse(text).unwrap_err();
//! let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
//! assert_eq!(lines[0], "company[acme].friend[branch].password: must not be empty");
//! assert!(lines[1].starts_with("company[acme].friend[branch].patterns[1]: invalid regex: "));
//! ```
//!
//! Parsing is in two steps: serde reads the file into the [`model`] structs
//! (rejecting unknown keys and wrong types, with line and column; serde
//! stops at the first such error), then [`validate`] checks the values and
//! the references between them and reports all problems at once.

pub mod error;
pub mod model;
mod schema;
pub mod validate;
pub mod values;

use std::fmt;
use std::path::Path;

use serde::Deserialize;

pub use error::{ConfigError, ConfigErrors, ErrorKind, Place};
pub use model::{
    AclRule, Auth, CallAcl, Carrier, Company, Config, Connection, Ddi, Extension, Friend, Policy,
    Registrar, Server, Terminal, Transport, User,
};

/// Reads and validates the configuration file at `path`.
pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::from(ConfigError::new(
            Place::key(&path.display().to_string()),
            ErrorKind::Io(e.to_string()),
        ))
    })?;
    parse(&text)
}

/// Parses and validates a configuration from TOML text. Every problem is
/// reported at once: all unknown keys, then (if the rest has the right
/// types) every validation problem.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let (config, mut errors) = parse_lenient(text)?;
    if let Err(v) = validate::validate(&config) {
        errors.extend(v);
    }
    errors.into_result(config)
}

/// Parses TOML text into the model without validating values; only syntax,
/// unknown keys and types are checked. Used by reload, which validates
/// only the companies that changed.
pub fn parse_unvalidated(text: &str) -> Result<Config, ConfigErrors> {
    let (config, errors) = parse_lenient(text)?;
    errors.into_result(config)
}

/// Parses with unknown keys reported and removed (see `schema`): the model
/// and the unknown-key errors, or every error when the text is not TOML or
/// a value has the wrong type (serde reports the first of those).
fn parse_lenient(text: &str) -> Result<(Config, ConfigErrors), ConfigErrors> {
    let toml_error = |e: toml::de::Error| {
        let place = match e.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                Place::line_col(line, col)
            }
            None => Place::root(),
        };
        let message = e.message().trim().replace('\n', " ");
        ConfigError::new(place, ErrorKind::Toml(message))
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| ConfigErrors::from(toml_error(e)))?;
    let mut errors = ConfigErrors::new();
    for e in schema::strip_unknown(&mut table) {
        errors.extend(e.into());
    }
    // Spans are relative to the text; after stripping, re-parse from the
    // cleaned tree only when something was removed.
    let parsed = if errors.is_empty() {
        toml::from_str::<Config>(text).map_err(toml_error)
    } else {
        Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            ConfigError::new(
                Place::root(),
                ErrorKind::Toml(e.message().trim().replace('\n', " ")),
            )
        })
    };
    match parsed {
        Ok(config) => Ok((config, errors)),
        Err(e) => {
            errors.extend(e.into());
            Err(errors)
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// Counts of what a configuration defines, for `tandem check` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Companies.
    pub companies: usize,
    /// Users, over all companies.
    pub users: usize,
    /// Friends, over all companies.
    pub friends: usize,
    /// Friend patterns, over all companies.
    pub patterns: usize,
    /// DDIs, over all companies.
    pub ddis: usize,
}

impl Config {
    /// Counts what this configuration defines.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            companies: self.company.len(),
            ..Summary::default()
        };
        for c in &self.company {
            s.users += c.user.len();
            s.friends += c.friend.len();
            s.patterns += c.friend.iter().map(|f| f.patterns.len()).sum::<usize>();
            s.ddis += c.ddi.len();
        }
        s
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} companies, {} users, {} friends, {} patterns, {} DDIs",
            self.companies, self.users, self.friends, self.patterns, self.ddis
        )
    }
}
