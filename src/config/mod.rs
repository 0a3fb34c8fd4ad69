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
pub mod validate;
pub mod values;

use std::fmt;
use std::path::Path;

pub use error::{ConfigError, ConfigErrors, ErrorKind, Place};
pub use model::{
    AclRule, Auth, CallAcl, Carrier, Company, Config, Connection, Ddi, Extension, Friend, Policy,
    Server, Terminal, Transport, User,
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

/// Parses and validates a configuration from TOML text.
pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
    let config = parse_unvalidated(text)?;
    validate::validate(&config)?;
    Ok(config)
}

/// Parses TOML text into the model without validating values; only syntax,
/// unknown keys and types are checked. Used by reload, which validates
/// only the companies that changed.
pub fn parse_unvalidated(text: &str) -> Result<Config, ConfigErrors> {
    toml::from_str::<Config>(text).map_err(|e| {
        let place = match e.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                Place::line_col(line, col)
            }
            None => Place::root(),
        };
        let message = e.message().trim().replace('\n', " ");
        ConfigErrors::from(ConfigError::new(place, ErrorKind::Toml(message)))
    })
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
