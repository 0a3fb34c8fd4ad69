//! `;name=value` parameter lists, as found after a URI or a header value.
//!
//! ```text
//! generic-param = token [ EQUAL gen-value ]        ; EQUAL = SWS "=" SWS
//! gen-value     = token / host / quoted-string
//! uri-parameter = pname [ "=" pvalue ]             ; no whitespace, %-escapes
//! ```
//!
//! A [`Params`] is the raw text after the first `;`; lookups and iteration
//! split it on the fly, outside quoted strings, and trim whitespace (header
//! parameters may be folded: RFC 4475 `wsinv` has `; newparam =\r\n newvalue`).

use super::scan::{self, find_unquoted, is_token, quoted_end, trim};

/// A parameter list that breaks its grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadParams;

/// A parameter list: the raw bytes after the first `;` (may be empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a>(pub &'a [u8]);

/// One parameter: its name and, unless it is a flag, its raw value (quoted
/// strings keep their quotes; see [`unquote`]).
pub type Param<'a> = (&'a [u8], Option<&'a [u8]>);

impl<'a> Params<'a> {
    /// The parameters, in order.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            rest: if self.0.is_empty() {
                None
            } else {
                Some(self.0)
            },
        }
    }

    /// The value of parameter `name` (case-insensitive): `None` if absent,
    /// `Some(None)` for a flag (`;lr`), `Some(Some(v))` otherwise.
    pub fn get(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether parameter `name` is present, with or without a value.
    pub fn has(&self, name: &[u8]) -> bool {
        self.get(name).is_some()
    }

    /// Checks the list against the `generic-param` grammar: every name a
    /// non-empty token, every value a token, host or quoted string
    /// (RFC 4475 `badinv01`: `;;;;` is not a parameter list).
    pub fn check_generic(&self) -> Result<(), BadParams> {
        if self.0.is_empty() {
            return Ok(());
        }
        // Quotes must balance before splitting means anything.
        let mut rest = self.0;
        loop {
            let end = find_unquoted(rest, b';')
                .map_err(|_| BadParams)?
                .unwrap_or(rest.len());
            let (name, value) = split_param(&rest[..end]);
            if !scan::is_token_str(name) {
                return Err(BadParams);
            }
            if let Some(v) = value {
                let ok = if v.first() == Some(&b'"') {
                    quoted_end(v) == Some(v.len())
                } else {
                    !v.is_empty()
                        && v.iter()
                            .all(|&c| is_token(c) || matches!(c, b':' | b'[' | b']'))
                };
                if !ok {
                    return Err(BadParams);
                }
            }
            if end == rest.len() {
                return Ok(());
            }
            rest = &rest[end + 1..];
        }
    }

    /// Checks the list against the `uri-parameter` grammar.
    pub fn check_uri(&self) -> Result<(), BadParams> {
        let s = self.0;
        if s.is_empty() {
            return Ok(());
        }
        // Each `;`-separated part: a non-empty name, then optionally `=`
        // and a non-empty value, all paramchars; runs of paramchars are
        // skipped in a tight loop.
        let run = |mut i: usize| {
            while i < s.len() && is_paramchar(s[i]) {
                i += 1;
            }
            i
        };
        let mut i = 0;
        loop {
            let end = run(i);
            if end == i {
                return Err(BadParams);
            }
            i = end;
            if s.get(i) == Some(&b'=') {
                let end = run(i + 1);
                if end == i + 1 {
                    return Err(BadParams);
                }
                i = end;
            }
            match s.get(i) {
                None => return Ok(()),
                Some(b';') => i += 1,
                Some(_) => return Err(BadParams),
            }
        }
    }
}

#[inline]
fn is_paramchar(c: u8) -> bool {
    PARAMCHAR[usize::from(c)]
}

const PARAMCHAR: [bool; 256] = scan::byte_table!(|c| c.is_ascii_alphanumeric()
    || matches!(
        c,
        b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' // param-unreserved
            | b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')' // mark
            | b'%'
    ));

fn split_param(p: &[u8]) -> Param<'_> {
    match p.iter().position(|&c| c == b'=') {
        Some(i) => (trim(&p[..i]), Some(trim(&p[i + 1..]))),
        None => (trim(p), None),
    }
}

/// Iterator over a [`Params`] list. Malformed elements come out as best it
/// can split them; validation uses [`Params::check_generic`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = Param<'a>;

    fn next(&mut self) -> Option<Param<'a>> {
        let rest = self.rest?;
        let end = find_unquoted(rest, b';')
            .ok()
            .flatten()
            .unwrap_or(rest.len());
        self.rest = (end < rest.len()).then(|| &rest[end + 1..]);
        Some(split_param(&rest[..end]))
    }
}

/// The contents of a quoted string without its quotes (escapes kept as
/// written); a token is returned as is.
pub fn unquote(v: &[u8]) -> &[u8] {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_generic_params() {
        let p = Params(b" newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33");
        assert!(p.check_generic().is_ok());
        assert_eq!(p.get(b"newparam"), Some(Some(&b"newvalue"[..])));
        assert_eq!(p.get(b"secondparam"), Some(None));
        assert_eq!(p.get(b"Q"), Some(Some(&b"0.33"[..])));
        assert_eq!(p.get(b"tag"), None);
    }

    #[test]
    fn quoted_values_may_hold_semicolons() {
        let p = Params(b"a=\"x;y\";b");
        assert!(p.check_generic().is_ok());
        assert_eq!(p.get(b"a").flatten().map(unquote), Some(&b"x;y"[..]));
        assert!(p.has(b"b"));
    }

    #[test]
    fn empty_names_are_rejected() {
        assert!(Params(b";;;").check_generic().is_err());
        assert!(Params(b"a;;b").check_generic().is_err());
        assert!(Params(b"a=").check_generic().is_err());
        assert!(Params(b"a=\"open").check_generic().is_err());
        assert!(Params(b"lr;transport=tcp").check_uri().is_ok());
        assert!(Params(b"lr;;x").check_uri().is_err());
    }
}
