//! Configuration errors: each one names its place and says what is wrong.
//!
//! Like regex-automata's `BuildError`, [`ConfigError`] is an opaque-ish
//! struct: a [`Place`] (a path such as `company[acme].friend[branch].patterns[1]`)
//! plus an [`ErrorKind`]. Validation never stops at the first problem, so
//! the functions of this module return [`ConfigErrors`], the full list.

use std::fmt;

/// Where in the configuration a problem is, e.g.
/// `company[acme].friend[branch].patterns[1]` or `line 3, column 7`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place(String);

impl Place {
    /// The top of the file (for problems that belong to no table).
    pub fn root() -> Place {
        Place(String::new())
    }

    /// A top-level key or table, e.g. `server.listen`.
    pub fn key(name: &str) -> Place {
        Place(name.to_string())
    }

    /// A child key: `self.name`.
    pub fn field(&self, name: &str) -> Place {
        if self.0.is_empty() {
            return Place(name.to_string());
        }
        Place(format!("{}.{}", self.0, name))
    }

    /// An element of an array: `self[index]` (0-based, as in the file's order).
    pub fn index(&self, index: usize) -> Place {
        Place(format!("{}[{}]", self.0, index))
    }

    /// A named element of an array of tables: `self[name]`.
    pub fn named(&self, name: &str) -> Place {
        Place(format!("{}[{}]", self.0, name))
    }

    /// A position in the TOML text (1-based line and column).
    pub fn line_col(line: usize, column: usize) -> Place {
        Place(format!("line {line}, column {column}"))
    }

    /// The place as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("config")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// What is wrong. Each variant says when it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read (the message is the OS error).
    Io(String),
    /// The text is not valid TOML, or a key is unknown or of the wrong type
    /// (the message is the TOML parser's).
    Toml(String),
    /// A name is defined twice in its namespace (`what` says which one:
    /// "company name", "terminal or friend name", ...).
    Duplicate {
        /// The namespace.
        what: &'static str,
        /// The repeated value.
        value: String,
    },
    /// A reference names something that does not exist.
    Dangling {
        /// The kind of thing referenced ("terminal", "call_acl", ...).
        what: &'static str,
        /// The name that was not found.
        name: String,
    },
    /// A pattern or ACL rule is not a valid regex (the engine's message).
    Regex(String),
    /// The compiled patterns of one company exceed the size limit.
    TooLarge(String),
    /// A number that must be E.164 (`+` and 8–15 digits) is not.
    NotE164(String),
    /// A codec name is not a known SDP encoding name.
    UnknownCodec(String),
    /// A required value is empty (password, name, domain, ...).
    Empty,
    /// A value is malformed; the message says what was expected.
    Invalid(String),
    /// Keys that cannot be used together, or a required key is missing
    /// (register friend with an address, direct friend without one,
    /// extension with both user and friend, ...).
    Conflict(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Io(m) => write!(f, "cannot read: {m}"),
            ErrorKind::Toml(m) => write!(f, "{m}"),
            ErrorKind::Duplicate { what, value } => write!(f, "duplicate {what} {value:?}"),
            ErrorKind::Dangling { what, name } => write!(f, "unknown {what} {name:?}"),
            ErrorKind::Regex(m) => write!(f, "invalid regex: {m}"),
            ErrorKind::TooLarge(m) => write!(f, "pattern set too large: {m}"),
            ErrorKind::NotE164(v) => {
                write!(f, "{v:?} is not an E.164 number ('+' and 8 to 15 digits)")
            }
            ErrorKind::UnknownCodec(c) => write!(f, "unknown codec {c:?}"),
            ErrorKind::Empty => write!(f, "must not be empty"),
            ErrorKind::Invalid(m) => write!(f, "{m}"),
            ErrorKind::Conflict(m) => write!(f, "{m}"),
        }
    }
}

/// One configuration problem: a place and a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    place: Place,
    kind: ErrorKind,
}

impl ConfigError {
    /// A problem at `place`.
    pub fn new(place: Place, kind: ErrorKind) -> ConfigError {
        ConfigError { place, kind }
    }

    /// Where the problem is.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// What the problem is.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration, in file order. Never empty when
/// returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// An empty list, to be filled by validation.
    pub fn new() -> ConfigErrors {
        ConfigErrors(Vec::new())
    }

    /// Records a problem.
    pub fn push(&mut self, place: Place, kind: ErrorKind) {
        self.0.push(ConfigError::new(place, kind));
    }

    /// Appends every problem of `other`.
    pub fn extend(&mut self, other: ConfigErrors) {
        self.0.extend(other.0);
    }

    /// True when no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The problems, in the order found.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// `Ok(value)` when no problem was recorded, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> ConfigErrors {
        ConfigErrors(vec![e])
    }
}

/// One problem per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
