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
//! (every unknown key and every value of the wrong type reported with its
//! place, the wrong ones with line and column too, and left out so that
//! the rest is still read), then [`validate`] checks the values and the
//! references between them and reports all problems at once.

pub mod error;
pub mod model;
mod schema;
mod types;
pub mod validate;
pub mod values;

use std::fmt;
use std::path::Path;

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
/// reported at once: all unknown keys, every value of the wrong type, then
/// every validation problem of what could be read.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let (config, mut errors, checked) = parse_lenient(text)?;
    if let Err(v) = validate::validate(&config) {
        for e in &v {
            if !checked.explains(e) {
                errors.extend(e.clone().into());
            }
        }
    }
    errors.into_result(config)
}

/// Parses TOML text into the model without validating values; only syntax,
/// unknown keys and types are checked. Used by reload, which validates
/// only the companies that changed.
pub fn parse_unvalidated(text: &str) -> Result<Config, ConfigErrors> {
    let (config, errors, _) = parse_lenient(text)?;
    errors.into_result(config)
}

/// Parses with unknown keys reported and removed (see `schema`) and every
/// value of the wrong type reported (see `types`): the model, those errors
/// and what was left out of the model, or every error when the text is not
/// TOML or no model can be read at all.
fn parse_lenient(text: &str) -> Result<(Config, ConfigErrors, types::Checked), ConfigErrors> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let place = match e.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                Place::line_col(line, col)
            }
            None => Place::root(),
        };
        let message = e.message().trim().replace('\n', " ");
        ConfigErrors::from(ConfigError::new(place, ErrorKind::Toml(message)))
    })?;
    let mut errors = ConfigErrors::new();
    for e in schema::strip_unknown(&mut table) {
        errors.extend(e.into());
    }
    let (config, checked) = types::read(text, table);
    for e in &checked.errors {
        errors.extend(e.clone().into());
    }
    match config {
        Ok(config) => Ok((config, errors, checked)),
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
