//! Values of the wrong type, all of them: serde stops at the first, so an
//! operator who wrote `password = 1234` for one terminal and `port =
//! "5060"` for a friend would learn of the second (and of every problem
//! validation finds) only after fixing the first.
//!
//! When the whole tree does not deserialise, each table of it is read on
//! its own — `server`, `auth`, `registrar`, each carrier, each item of a
//! company's arrays, each company — and for each wrong value one error is
//! reported with its place and its line and column, and the key removed
//! before the table is read again. What still cannot be read (a required
//! key missing or removed) is left out of the model, so that validation
//! checks the rest; references to what was left out are not reported again
//! as unknown names. The result is never used as a configuration: any
//! error here refuses it.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::error::{ConfigError, ErrorKind, Place};
use super::model::{
    Auth, CallAcl, Carrier, Company, Ddi, Extension, Friend, Registrar, Server, Terminal, User,
};

/// A step of a path in the tree: a key or an array index.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// One error per wrong value (or missing required key).
    pub errors: Vec<ConfigError>,
    /// The named items left out of the model: (array key, name), e.g.
    /// `("terminal", "alice-phone")`.
    pub left_out: Vec<(String, String)>,
    /// The places of the errors, e.g. `company[acme].friend[branch].port`.
    pub places: Vec<String>,
}

impl Checked {
    /// Whether `e` (a validation error) is about a value already reported
    /// (or its stand-in), only says that a reference names something that
    /// was left out, or that no company is left.
    pub fn explains(&self, e: &ConfigError) -> bool {
        let at = e.place().as_str();
        let under = |p: &String| {
            at.strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        };
        if self.places.iter().any(under) {
            return true;
        }
        match e.kind() {
            ErrorKind::Dangling { what, name } => {
                self.left_out.iter().any(|(k, n)| k == what && n == name)
            }
            ErrorKind::Invalid(_) if e.place().as_str() == "company" => {
                self.left_out.iter().any(|(k, _)| k == "company")
            }
            _ => false,
        }
    }
}

/// Reads `root` table by table, as described in the module doc; `root` is
/// left with what can be read.
pub(super) fn check(text: &str, root: &mut Table) -> Checked {
    let doc = toml_edit::ImDocument::parse(text.to_owned()).ok();
    let mut c = Checker {
        text,
        doc: doc.as_ref(),
        found: Checked::default(),
    };
    for key in ["server", "auth", "registrar"] {
        let Some(v) = root.get_mut(key) else { continue };
        let at = vec![Step::Key(key.into())];
        let ok = match key {
            "server" => c.item::<Server>(v, &Place::key(key), &at),
            "auth" => c.item::<Auth>(v, &Place::key(key), &at),
            _ => c.item::<Registrar>(v, &Place::key(key), &at),
        };
        if !ok {
            root.remove(key);
        }
    }
    c.array::<Carrier>(root, &Place::root(), &[], "carrier");
    let Some(Value::Array(companies)) = root.get_mut("company") else {
        return c.found;
    };
    let mut bad = Vec::new();
    for (i, company) in companies.iter_mut().enumerate() {
        let place = label(company, &Place::key("company"), i);
        let at = vec![Step::Key("company".into()), Step::Index(i)];
        if let Value::Table(t) = company {
            c.array::<Terminal>(t, &place, &at, "terminal");
            c.array::<User>(t, &place, &at, "user");
            c.array::<Extension>(t, &place, &at, "extension");
            c.array::<Friend>(t, &place, &at, "friend");
            c.array::<Ddi>(t, &place, &at, "ddi");
            c.array::<CallAcl>(t, &place, &at, "call_acl");
        }
        if !c.item::<Company>(company, &place, &at) {
            bad.push(i);
        }
    }
    for i in bad.into_iter().rev() {
        let company = companies.remove(i);
        let name = company.get("name").and_then(Value::as_str).unwrap_or("");
        c.found.left_out.push(("company".into(), name.to_owned()));
    }
    c.found
}

/// An item of an array of tables is named like validation names it: by
/// `name`, else `number`, else its index.
fn label(item: &Value, array: &Place, index: usize) -> Place {
    let name = ["name", "number"]
        .iter()
        .find_map(|k| item.get(k).and_then(Value::as_str));
    match name {
        Some(n) => array.named(n),
        None => array.index(index),
    }
}

/// A value of the type serde expected, from its message ("invalid type:
/// string \"x\", expected u32"), to stand in for a wrong required one.
fn stand_in(message: &str) -> Option<Value> {
    let expected = message.rsplit_once("expected ")?.1;
    let number = [
        "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "usize",
    ];
    if number.contains(&expected) {
        return Some(Value::Integer(0));
    }
    match expected {
        "a string" => Some(Value::String(String::new())),
        "a boolean" => Some(Value::Boolean(false)),
        "a sequence" => Some(Value::Array(Vec::new())),
        // An enum: "`register` or `direct`", "one of `a`, `b`, `c`".
        _ => {
            let variant = expected.split('`').nth(1)?;
            Some(Value::String(variant.to_owned()))
        }
    }
}

struct Checker<'a> {
    text: &'a str,
    doc: Option<&'a toml_edit::ImDocument<String>>,
    found: Checked,
}

impl Checker<'_> {
    /// Checks each table of the array `key` of `parent` as a `T`; the
    /// tables that cannot be read are removed from the array.
    fn array<T: DeserializeOwned>(
        &mut self,
        parent: &mut Table,
        place: &Place,
        at: &[Step],
        key: &str,
    ) {
        let Some(Value::Array(items)) = parent.get_mut(key) else {
            return;
        };
        let mut bad = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            let here = label(item, &place.field(key), i);
            let mut path = at.to_vec();
            path.extend([Step::Key(key.into()), Step::Index(i)]);
            if !self.item::<T>(item, &here, &path) {
                bad.push(i);
            }
        }
        for i in bad.into_iter().rev() {
            let item = items.remove(i);
            if let Some(name) = ["name", "number"]
                .iter()
                .find_map(|k| item.get(k).and_then(Value::as_str))
            {
                self.found.left_out.push((key.to_owned(), name.to_owned()));
            }
        }
    }

    /// Reads `item` as a `T`, reporting and removing each key of the wrong
    /// type until it reads or cannot (a required key is missing or was
    /// removed). Whether it reads.
    fn item<T: DeserializeOwned>(&mut self, item: &mut Value, place: &Place, at: &[Step]) -> bool {
        let mut removed = Vec::new();
        let mut found: Vec<(Option<usize>, ConfigError)> = Vec::new();
        let read = self.read::<T>(item, place, at, &mut removed, &mut found);
        // In the order of the file (serde meets keys in sorted order).
        found.sort_by_key(|(line, _)| *line);
        self.found.errors.extend(found.into_iter().map(|(_, e)| e));
        read
    }

    /// The loop of [`Checker::item`]: `removed` holds each wrong key with
    /// a stand-in of the type serde expected, put back if the key turns out
    /// to be required (validation does not look at a reported place again).
    fn read<T: DeserializeOwned>(
        &mut self,
        item: &mut Value,
        place: &Place,
        at: &[Step],
        removed: &mut Vec<(String, Option<Value>)>,
        found: &mut Vec<(Option<usize>, ConfigError)>,
    ) -> bool {
        // Each pass removes a key or puts one stand-in back, so this ends;
        // the bound is a guard.
        for _ in 0..64 {
            let e = match serde_path_to_error::deserialize::<_, T>(item.clone()) {
                Ok(_) => return true,
                Err(e) => e,
            };
            let message = e.inner().message().trim().replace('\n', " ");
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
                .map(str::to_owned);
            if let Some(k) = &missing {
                if let Some((_, stand_in)) = removed.iter_mut().find(|(r, _)| r == k) {
                    // Required, and already reported as the wrong type.
                    let (Some(v), Value::Table(t)) = (stand_in.take(), &mut *item) else {
                        return false;
                    };
                    t.insert(k.clone(), v);
                    continue;
                }
            }
            let mut steps = at.to_vec();
            let mut here = place.clone();
            let mut first_key = None;
            for s in e.path().iter() {
                match s {
                    serde_path_to_error::Segment::Map { key } => {
                        first_key.get_or_insert_with(|| key.clone());
                        here = here.field(key);
                        steps.push(Step::Key(key.clone()));
                    }
                    serde_path_to_error::Segment::Seq { index } => {
                        here = here.index(*index);
                        steps.push(Step::Index(*index));
                    }
                    _ => {}
                }
            }
            let at_text = self.line_col(&steps);
            let text = match at_text {
                Some((line, col)) => format!("{message} (line {line}, column {col})"),
                None => message.clone(),
            };
            self.found.places.push(here.as_str().to_owned());
            found.push((
                at_text.map(|(line, _)| line),
                ConfigError::new(here, ErrorKind::Toml(text)),
            ));
            let Some(key) = first_key.filter(|_| missing.is_none()) else {
                return false;
            };
            let Value::Table(t) = item else { return false };
            if t.remove(&key).is_none() || removed.iter().any(|(r, _)| *r == key) {
                return false;
            }
            // A stand-in only for a wrong top-level value of the table (a
            // wrong element of an array has no stand-in: the array goes).
            let whole = e.path().iter().count() == 1;
            removed.push((key, whole.then(|| stand_in(&message)).flatten()));
        }
        false
    }

    /// The 1-based line and column of the value at `steps` in the text,
    /// when the parser kept its span.
    fn line_col(&self, steps: &[Step]) -> Option<(usize, usize)> {
        let mut item = self.doc?.as_item();
        let mut span: Option<Range<usize>> = None;
        for s in steps {
            item = match s {
                Step::Key(k) => item.get(k.as_str())?,
                Step::Index(i) => item.get(*i)?,
            };
            span = item.span().or(span);
        }
        Some(super::line_col(self.text, span?.start))
    }
}
