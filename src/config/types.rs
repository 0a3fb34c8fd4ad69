//! Values of the wrong type, all of them: serde stops at the first, so an
//! operator who wrote `password = 1234` for one terminal and `port =
//! "5060"` for a friend would learn of the second (and of every problem
//! validation finds) only after fixing the first.
//!
//! [`read`] first reports every date or time (no key takes one; read as
//! the model reads a tree, it would pass as a string). When the tree then
//! does not deserialise, each table is read on its own — `server`,
//! `auth`, `registrar`, each carrier, each item of a company's arrays, each
//! company — and each wrong value is reported with its place, line and
//! column, and replaced by a stand-in of the expected type (the largest
//! number, an empty string, a variant) so that the rest is still read and
//! validated. A wrong `name` or `number` (what names an item), a wrong
//! value with no stand-in, or a missing required key leaves the item out
//! of the model. Validation then skips what was reported (a stand-in's
//! place and what is under it) and references, in the same company, to
//! what was left out. The model is never used as a configuration: any
//! error here refuses it.

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::{Table, Value};

use super::error::{ConfigError, ErrorKind, Place};
use super::model::{
    Auth, CallAcl, Carrier, Company, Config, Ddi, Extension, Friend, Registrar, Server, Terminal,
    User,
};

/// A step of a path in the tree: a key or an array index.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// What [`read`] found besides the model.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// One error per wrong value or missing required key, in file order.
    pub errors: Vec<ConfigError>,
    /// Items left out of the model: (company place or "" for carriers,
    /// array key, name), e.g. `("company[acme]", "terminal", "alice-phone")`.
    left_out: HashSet<(String, String, String)>,
    /// Whether a whole company was left out.
    company_left_out: bool,
    /// Places of the values reported (stand-ins stand there).
    places: HashSet<String>,
    /// Places of the dates and times reported.
    dated: HashSet<String>,
}

impl Checked {
    /// Whether `e`, a validation error, is about a value already reported
    /// (at its place or under it), only says that a reference names an
    /// item left out of the same company (or a carrier left out), or that
    /// no company is left.
    pub fn explains(&self, e: &ConfigError) -> bool {
        let at = e.place().as_str();
        let cut = at
            .char_indices()
            .filter(|&(_, c)| c == '.' || c == '[')
            .map(|(i, _)| &at[..i]);
        let reported = |p: &str| self.places.contains(p) || self.dated.contains(p);
        if reported(at) || cut.clone().any(reported) {
            return true;
        }
        match e.kind() {
            ErrorKind::Dangling { what, name } => {
                let scope = if *what == "carrier" {
                    ""
                } else {
                    at.find(']').map_or("", |i| &at[..=i])
                };
                self.left_out
                    .contains(&(scope.to_owned(), (*what).to_owned(), name.clone()))
            }
            ErrorKind::Invalid(_) if at == "company" => self.company_left_out,
            _ => false,
        }
    }
}

/// Reads `root` (unknown keys already removed) into the model as described
/// in the module doc: the model, if one could be read at all, and what was
/// found. The model comes with errors whenever `Checked::errors` is not
/// empty.
pub(super) fn read(text: &str, mut root: Table) -> (Result<Config, ConfigError>, Checked) {
    let mut c = Checker::new(text);
    for (k, v) in root.iter_mut() {
        if SECTIONS.contains(&k.as_str()) && !v.is_table() {
            c.odd_shape = true;
        }
        c.dates(v, &Place::key(k), &mut vec![Step::Key(k.clone())]);
    }
    // serde would take a list of values for a table (by position) and a
    // table for an enum (`{ direct = {} }`): such shapes are read table by
    // table, where they are reported.
    if c.errors.is_empty() && !c.odd_shape {
        if let Ok(config) = Config::deserialize(Value::Table(root.clone())) {
            return (Ok(config), c.found);
        }
    }
    c.sections(&mut root);
    let config = match serde_path_to_error::deserialize::<_, Config>(Value::Table(root)) {
        Ok(config) => Ok(config),
        Err(e) => {
            let steps = steps_of(e.path());
            let message = c.message(e.inner().message(), &steps);
            Err(ConfigError::new(
                Place::key(&e.path().to_string()),
                ErrorKind::Toml(message),
            ))
        }
    };
    c.errors
        .sort_by_key(|(at, _)| at.unwrap_or((usize::MAX, 0)));
    c.found.errors.extend(c.errors.into_iter().map(|(_, e)| e));
    (config, c.found)
}

fn steps_of(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
            _ => None,
        })
        .collect()
}

/// An item of an array of tables is named like validation names it: by
/// `name`, else `number`, else its index.
pub(super) fn label(item: &Value, array: &Place, index: usize) -> Place {
    match name_of(item) {
        Some(n) => array.named(n),
        None => array.index(index),
    }
}

/// The `name` (else `number`) of an item, when a non-empty string
/// (validation names an item with an empty one by its index).
fn name_of(item: &Value) -> Option<&str> {
    ["name", "number"]
        .iter()
        .find_map(|k| item.get(k).and_then(Value::as_str))
        .filter(|n| !n.is_empty())
}

/// A value of the type serde expected, to stand in for a wrong one: from
/// the key for the model's enums, else from serde's message ("invalid
/// type: string \"x\", expected u32"). `item` is the table holding it.
fn stand_in(message: &str, key: &str, item: &Table) -> Option<Value> {
    let variant = match key {
        // A direct friend's address is still checked.
        "connection" if item.contains_key("address") => Some("direct"),
        "connection" => Some("register"),
        "transport" => Some("udp"),
        "default" => Some("allow"),
        _ => None,
    };
    if let Some(v) = variant {
        return Some(Value::String(v.into()));
    }
    let expected = message.rsplit_once("expected ")?.1;
    // The largest value: a stand-in number must not be taken for another
    // item's (two friends of one priority).
    let number = match expected {
        "u8" => i64::from(u8::MAX),
        "u16" => i64::from(u16::MAX),
        "u32" => i64::from(u32::MAX),
        "u64" | "i64" | "usize" => i64::MAX,
        "a string" => return Some(Value::String(String::new())),
        "a boolean" => return Some(Value::Boolean(false)),
        "a sequence" => return Some(Value::Array(Vec::new())),
        // A rule of an ACL that is not a table: an empty one (validation's
        // complaint about it is under the reported place).
        e if e.starts_with("struct ") => return Some(Value::Table(Table::new())),
        _ => return None,
    };
    Some(Value::Integer(number))
}

/// The variants of the model's enum `key`, as serde's messages quote them.
fn variants_of(key: &str) -> Option<&'static str> {
    match key {
        "connection" => Some("`register` or `direct`"),
        "transport" => Some("`udp` or `tcp`"),
        "default" => Some("`allow` or `deny`"),
        _ => None,
    }
}

/// The stand-in of an enum key (see [`stand_in`]).
fn first_variant(key: &str, has_address: bool) -> &'static str {
    match key {
        "connection" if has_address => "direct",
        "connection" => "register",
        "transport" => "udp",
        _ => "allow",
    }
}

/// The model's arrays of strings.
const STRING_ARRAYS: [&str; 5] = [
    "listen",
    "algorithms",
    "sources",
    "patterns",
    "allowed_codecs",
];

/// The model's arrays of tables.
const TABLE_ARRAYS: [&str; 9] = [
    "carrier",
    "company",
    "terminal",
    "user",
    "extension",
    "friend",
    "ddi",
    "call_acl",
    "rules",
];

/// The model's top-level tables.
const SECTIONS: [&str; 3] = ["server", "auth", "registrar"];

/// Passes over one item at most (each reports one wrong value).
const MAX_PASSES: usize = 256;

/// What kind of TOML value `v` is, as serde's messages say it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

struct Checker<'a> {
    text: &'a str,
    /// The text parsed again with spans, on the first error only.
    doc: std::cell::OnceCell<Option<toml_edit::ImDocument<String>>>,
    /// Byte offsets where each line starts.
    lines: Vec<usize>,
    found: Checked,
    /// A list where a table is expected, or a table for an enum.
    odd_shape: bool,
    /// Errors with their line and column, sorted at the end.
    errors: Vec<(Option<(usize, usize)>, ConfigError)>,
}

impl<'a> Checker<'a> {
    fn new(text: &'a str) -> Checker<'a> {
        let lines = std::iter::once(0)
            .chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1))
            .collect();
        Checker {
            text,
            doc: std::cell::OnceCell::new(),
            lines,
            found: Checked::default(),
            odd_shape: false,
            errors: Vec::new(),
        }
    }

    /// Reports every date or time under `v` and replaces it with its text.
    fn dates(&mut self, v: &mut Value, here: &Place, steps: &mut Vec<Step>) {
        match v {
            Value::Datetime(d) => {
                let text = d.to_string();
                self.report(
                    here.clone(),
                    steps,
                    &format!("invalid type: date-time {text}, no key takes one"),
                );
                self.found.dated.insert(here.as_str().to_owned());
                // What names an item must be a string: the item is left
                // out (its label stays the index the error gave).
                let names =
                    matches!(steps.last(), Some(Step::Key(k)) if k == "name" || k == "number");
                *v = if names {
                    Value::Integer(0)
                } else {
                    Value::String(text)
                };
            }
            Value::Array(items) => {
                let key = match steps.last() {
                    Some(Step::Key(k)) => k.as_str(),
                    _ => "",
                };
                if TABLE_ARRAYS.contains(&key) && items.iter().any(|i| !i.is_table()) {
                    self.odd_shape = true;
                }
                for (i, item) in items.iter_mut().enumerate() {
                    let at = match item {
                        Value::Table(_) => label(item, here, i),
                        _ => here.index(i),
                    };
                    steps.push(Step::Index(i));
                    self.dates(item, &at, steps);
                    steps.pop();
                }
            }
            Value::Table(t) => {
                for (k, item) in t.iter_mut() {
                    if variants_of(k).is_some() && !item.is_str() {
                        self.odd_shape = true;
                    }
                    steps.push(Step::Key(k.clone()));
                    self.dates(item, &here.field(k), steps);
                    steps.pop();
                }
            }
            _ => {}
        }
    }

    /// Reads the sections one by one (see the module doc).
    fn sections(&mut self, root: &mut Table) {
        for key in ["server", "auth", "registrar"] {
            let Some(v) = root.get_mut(key) else { continue };
            let at = [Step::Key(key.into())];
            let readable = match key {
                "server" => self.item::<Server>(v, &Place::key(key), &at),
                "auth" => self.item::<Auth>(v, &Place::key(key), &at),
                _ => self.item::<Registrar>(v, &Place::key(key), &at),
            };
            if !readable {
                root.remove(key);
            }
        }
        self.array::<Carrier>(root, &Place::root(), &[], "carrier", "");
        if !self.shape(root, &Place::root(), &[], "company", "") {
            return;
        }
        let Some(Value::Array(companies)) = root.get_mut("company") else {
            return;
        };
        let mut bad = HashSet::new();
        for (i, company) in companies.iter_mut().enumerate() {
            let place = label(company, &Place::key("company"), i);
            let at = vec![Step::Key("company".into()), Step::Index(i)];
            // What the company's items leave out, and where they were
            // reported, counts only if the company itself is read: another
            // company of the same name must not lose its errors.
            let places = std::mem::take(&mut self.found.places);
            let left_out = std::mem::take(&mut self.found.left_out);
            if let Value::Table(t) = company {
                let scope = place.as_str().to_owned();
                self.array::<Terminal>(t, &place, &at, "terminal", &scope);
                self.array::<User>(t, &place, &at, "user", &scope);
                self.array::<Extension>(t, &place, &at, "extension", &scope);
                self.array::<Friend>(t, &place, &at, "friend", &scope);
                self.array::<Ddi>(t, &place, &at, "ddi", &scope);
                self.array::<CallAcl>(t, &place, &at, "call_acl", &scope);
            }
            let read = self.item::<Company>(company, &place, &at);
            let (mine, my_left_out) = (
                std::mem::replace(&mut self.found.places, places),
                std::mem::replace(&mut self.found.left_out, left_out),
            );
            if read {
                self.found.places.extend(mine);
                self.found.left_out.extend(my_left_out);
            } else {
                bad.insert(i);
            }
        }
        if !bad.is_empty() {
            self.found.company_left_out = true;
            let mut i = 0;
            companies.retain(|_| {
                i += 1;
                !bad.contains(&(i - 1))
            });
        }
    }

    /// Whether `parent.key`, if present, is an array (of tables, for the
    /// model's arrays); if not, it is reported and removed, and the named
    /// tables in it are recorded as left out.
    fn shape(
        &mut self,
        parent: &mut Table,
        place: &Place,
        at: &[Step],
        key: &str,
        scope: &str,
    ) -> bool {
        match parent.get(key) {
            None => return false,
            Some(Value::Array(_)) => return true,
            Some(_) => {}
        }
        let mut steps = at.to_vec();
        steps.push(Step::Key(key.into()));
        self.report(
            place.field(key),
            &steps,
            &format!(
                "expected an array of tables ([[{header}]] or {key} = [{{ … }}])",
                header = if at.is_empty() {
                    key.to_owned()
                } else {
                    format!("company.{key}")
                }
            ),
        );
        if let Some(v) = parent.remove(key) {
            self.left_out(scope, key, &v);
        }
        false
    }

    /// Records the named tables in `v` (a table, or an array of them) as
    /// left out of `scope`.
    fn left_out(&mut self, scope: &str, key: &str, v: &Value) {
        let items: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for item in items {
            if let Some(name) = name_of(item) {
                if key == "company" {
                    self.found.company_left_out = true;
                }
                self.found
                    .left_out
                    .insert((scope.to_owned(), key.to_owned(), name.to_owned()));
            }
        }
    }

    /// Checks each table of the array `key` of `parent` as a `T`; the
    /// tables that cannot be read are removed from the array and recorded
    /// as left out of `scope`.
    fn array<T: DeserializeOwned>(
        &mut self,
        parent: &mut Table,
        place: &Place,
        at: &[Step],
        key: &str,
        scope: &str,
    ) {
        if !self.shape(parent, place, at, key, scope) {
            return;
        }
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
        let gone: Vec<Value> = bad.iter().map(|&i| items[i].clone()).collect();
        let bad: HashSet<usize> = bad.into_iter().collect();
        let mut i = 0;
        items.retain(|_| {
            i += 1;
            !bad.contains(&(i - 1))
        });
        for item in gone {
            self.left_out(scope, key, &item);
        }
    }

    /// Reads `item` as a `T`, reporting each wrong value and putting a
    /// stand-in in its place, until it reads (true) or cannot (false: not
    /// a table, a wrong name or number, a wrong value with no stand-in, a
    /// missing required key). The places reported count for validation
    /// only when the item is read: one left out is not validated, and
    /// another item of the same name must not lose its errors.
    fn item<T: DeserializeOwned>(&mut self, item: &mut Value, place: &Place, at: &[Step]) -> bool {
        let Value::Table(t) = item else {
            let found = type_name(item);
            self.report(
                place.clone(),
                at,
                &format!("invalid type: {found}, expected a table"),
            );
            return false;
        };
        let mut places = Vec::new();
        self.precheck(t, place, at, &mut places);
        let mut removed: Vec<String> = Vec::new();
        // Each pass replaces or removes a value; the bound is a guard (the
        // arrays of strings were checked whole, above).
        for _ in 0..MAX_PASSES {
            let e = match serde_path_to_error::deserialize::<_, T>(Value::Table(t.clone())) {
                Ok(_) => {
                    self.found.places.extend(places);
                    return true;
                }
                Err(e) => e,
            };
            let raw = e.inner().message().trim().replace('\n', " ");
            if raw.starts_with("missing field `") {
                // Removed for its wrong value (reported), or missing.
                if !removed
                    .iter()
                    .any(|r| raw == format!("missing field `{r}`"))
                {
                    self.report(place.clone(), at, &raw);
                }
                return false;
            }
            let rel = steps_of(e.path());
            let mut steps = at.to_vec();
            steps.extend(rel.iter().cloned());
            let here = rel.iter().fold(place.clone(), |p, s| match s {
                Step::Key(k) => p.field(k),
                Step::Index(i) => p.index(*i),
            });
            // A date already reported there (now a stand-in) is not again.
            if !self.found.dated.contains(here.as_str()) {
                self.report(here.clone(), &steps, &raw);
            }
            places.push(here.as_str().to_owned());
            let Some(Step::Key(key)) = rel.first().cloned() else {
                return false;
            };
            if rel.len() == 1 && (key == "name" || key == "number") {
                return false;
            }
            // The stand-in goes where the wrong value was; without one the
            // whole key goes (and the item with it if the key is required).
            let last = match rel.last() {
                Some(Step::Key(k)) => k.as_str(),
                _ => "",
            };
            let holder = parent_of(t, &rel);
            let stand = holder
                .as_ref()
                .and_then(|h| stand_in(&raw, last, h.table().unwrap_or(&Table::new())));
            match (stand, holder) {
                (Some(v), Some(h)) => h.put(v),
                _ => {
                    if t.remove(&key).is_none() {
                        return false;
                    }
                    removed.push(key);
                }
            }
        }
        self.report(
            place.clone(),
            at,
            &format!("more than {MAX_PASSES} wrong values: the rest of this item is not read"),
        );
        false
    }

    /// Before serde reads an item: an enum key that is not a string, and
    /// each element of an array of strings that is not one, reported and
    /// replaced by a stand-in in one pass (serde would take one per pass).
    fn precheck(&mut self, t: &mut Table, place: &Place, at: &[Step], places: &mut Vec<String>) {
        let has_address = t.contains_key("address");
        for (key, v) in t.iter_mut() {
            let mut steps = at.to_vec();
            steps.push(Step::Key(key.clone()));
            if let (Some(variants), false) = (variants_of(key), v.is_str()) {
                let here = place.field(key);
                if !self.found.dated.contains(here.as_str()) {
                    let found = type_name(v);
                    self.report(
                        here.clone(),
                        &steps,
                        &format!("invalid type: {found}, expected {variants}"),
                    );
                }
                places.push(here.as_str().to_owned());
                *v = Value::String(first_variant(key, has_address).into());
                continue;
            }
            let want_table = key == "rules";
            if !STRING_ARRAYS.contains(&key.as_str()) && !want_table {
                continue;
            }
            let Value::Array(items) = v else { continue };
            for (i, item) in items.iter_mut().enumerate() {
                if item.is_str() != want_table {
                    continue;
                }
                let here = place.field(key).index(i);
                if !self.found.dated.contains(here.as_str()) {
                    let found = type_name(item);
                    let want = if want_table { "a table" } else { "a string" };
                    steps.push(Step::Index(i));
                    self.report(
                        here.clone(),
                        &steps,
                        &format!("invalid type: {found}, expected {want}"),
                    );
                    steps.pop();
                }
                places.push(here.as_str().to_owned());
                *item = if want_table {
                    Value::Table(Table::new())
                } else {
                    Value::String(String::new())
                };
            }
        }
    }

    /// Records an error at `place` with the line and column of `steps`.
    fn report(&mut self, place: Place, steps: &[Step], message: &str) {
        let at = self.position(steps);
        let message = self.message(message, steps);
        self.errors
            .push((at, ConfigError::new(place, ErrorKind::Toml(message))));
    }

    /// `message` with the line and column of `steps`, when known.
    fn message(&self, message: &str, steps: &[Step]) -> String {
        let message = message.trim().replace('\n', " ");
        match self.position(steps) {
            Some((line, col)) => format!("{message} (line {line}, column {col})"),
            None => message,
        }
    }

    /// The 1-based line and column of the value at `steps` in the text
    /// (or of the nearest table holding it), when the parser kept a span.
    fn position(&self, steps: &[Step]) -> Option<(usize, usize)> {
        let doc = self
            .doc
            .get_or_init(|| toml_edit::ImDocument::parse(self.text.to_owned()).ok());
        let mut item = doc.as_ref()?.as_item();
        let mut span = None;
        for s in steps {
            item = match s {
                Step::Key(k) => item.get(k.as_str()),
                Step::Index(i) => item.get(*i),
            }?;
            span = item.span().or(span);
        }
        let offset = span?.start.min(self.text.len());
        let line = self.lines.partition_point(|&start| start <= offset);
        let start = self.lines[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.trim_start_matches('\u{feff}').chars().count() + 1);
        Some((line, col))
    }
}

/// Where a value deeper in a table sits: the array or table holding it.
enum Holder<'t> {
    Element(&'t mut Vec<Value>, usize),
    Key(&'t mut Table, String),
}

impl Holder<'_> {
    /// The table the value sits in, if it is a key of one.
    fn table(&self) -> Option<&Table> {
        match self {
            Holder::Key(t, _) => Some(t),
            Holder::Element(..) => None,
        }
    }

    fn put(self, v: Value) {
        match self {
            Holder::Element(items, i) => {
                if let Some(slot) = items.get_mut(i) {
                    *slot = v;
                }
            }
            Holder::Key(t, k) => {
                t.insert(k, v);
            }
        }
    }
}

/// The holder of the value at `rel` under `t`.
fn parent_of<'t>(t: &'t mut Table, rel: &[Step]) -> Option<Holder<'t>> {
    let (last, path) = rel.split_last()?;
    let (first, rest) = match (path.split_first(), last) {
        (None, Step::Key(k)) => return Some(Holder::Key(t, k.clone())),
        (Some((Step::Key(first), rest)), _) => (first, rest),
        _ => return None,
    };
    let mut v: &mut Value = t.get_mut(first.as_str())?;
    for s in rest {
        v = match (s, v) {
            (Step::Key(k), Value::Table(inner)) => inner.get_mut(k.as_str())?,
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    match (last, v) {
        (Step::Index(i), Value::Array(items)) => Some(Holder::Element(items, *i)),
        (Step::Key(k), Value::Table(inner)) => Some(Holder::Key(inner, k.clone())),
        _ => None,
    }
}
