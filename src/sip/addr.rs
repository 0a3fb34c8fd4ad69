//! Address headers: From, To, Contact, Route, Record-Route,
//! P-Asserted-Identity.
//!
//! ```text
//! from-spec    = ( name-addr / addr-spec ) *( SEMI from-param )
//! name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
//! display-name = *(token LWS) / quoted-string
//! contact-param = (name-addr / addr-spec) *(SEMI contact-params)
//! ```
//!
//! In the addr-spec form (no `<>`), everything after the first `;` is a
//! header parameter, and a URI holding `,`, `;` or `?` must be written in
//! `<>` (RFC 3261 §20; RFC 4475 `regbadct`, `cparam01`).

use super::params::Params;
use super::scan::{is_lws, is_token, quoted_end, trim, trim_start};
use super::uri::{Uri, UriError};

/// A decoded `name-addr` or `addr-spec` with its header parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (quoted strings keep their quotes).
    pub display: Option<&'a [u8]>,
    /// The URI text, without `<>`.
    pub uri: &'a [u8],
    /// Header parameters after the address (`;tag=...`, `;expires=...`).
    pub params: Params<'a>,
}

/// Why an address header did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// A quoted display name is never closed (RFC 4475 `quotbal`).
    UnbalancedQuote,
    /// An unquoted display name holds characters other than tokens and
    /// whitespace (RFC 4475 `baddn`).
    DisplayName,
    /// `<` without `>`, whitespace inside `<>` (`badaspec`), or text where
    /// only parameters may follow.
    Brackets,
    /// The URI itself is malformed.
    Uri(UriError),
    /// An addr-spec URI holds `,` or `?`, so it needed `<>` (`regbadct`).
    NeedsBrackets,
    /// The header parameters are malformed (`;;;;`, RFC 4475 `badinv01`).
    Params,
    /// The value is empty.
    Empty,
}

impl<'a> NameAddr<'a> {
    /// Decodes one address (one comma-separated element of the header) and
    /// checks its URI and parameters: what validation uses.
    pub fn parse_strict(v: &'a [u8]) -> Result<NameAddr<'a>, AddrError> {
        let a = Self::parse(v)?;
        a.check()?;
        Ok(a)
    }

    /// Checks what [`NameAddr::parse`] leaves undecoded: the URI grammar
    /// and the parameter list.
    pub fn check(&self) -> Result<(), AddrError> {
        Uri::parse(self.uri).map_err(AddrError::Uri)?;
        self.params.check_generic().map_err(|_| AddrError::Params)
    }

    /// Decodes one address (one comma-separated element of the header):
    /// display name, URI text and parameter list. The structure is checked
    /// (quotes, brackets, display-name characters); the URI and parameter
    /// grammar are left to [`NameAddr::check`], so the fast path reads a
    /// tag without decoding the whole URI.
    pub fn parse(v: &'a [u8]) -> Result<NameAddr<'a>, AddrError> {
        let v = trim(v);
        if v.is_empty() {
            return Err(AddrError::Empty);
        }
        let (display, rest) = if v[0] == b'"' {
            let end = quoted_end(v).ok_or(AddrError::UnbalancedQuote)?;
            let rest = trim_start(&v[end..]);
            if rest.first() != Some(&b'<') {
                return Err(AddrError::Brackets);
            }
            (Some(&v[..end]), rest)
        } else if let Some(lt) = memchr::memchr(b'<', v) {
            let d = trim(&v[..lt]);
            if !d.iter().all(|&c| is_token(c) || is_lws(c)) {
                return Err(AddrError::DisplayName);
            }
            ((!d.is_empty()).then_some(d), &v[lt..])
        } else {
            (None, v)
        };

        if rest.first() == Some(&b'<') {
            let gt = memchr::memchr(b'>', rest).ok_or(AddrError::Brackets)?;
            let uri = &rest[1..gt];
            if uri.is_empty() || uri.iter().any(|&c| is_lws(c)) {
                return Err(AddrError::Brackets);
            }
            let after = trim_start(&rest[gt + 1..]);
            let params = match after {
                [] => Params(b""),
                [b';', p @ ..] => Params(p),
                _ => return Err(AddrError::Brackets),
            };
            return Ok(NameAddr {
                display,
                uri,
                params,
            });
        }

        // addr-spec: the URI ends at the first ';' or whitespace.
        let end = rest
            .iter()
            .position(|&c| c == b';' || is_lws(c))
            .unwrap_or(rest.len());
        let uri = &rest[..end];
        if uri.iter().any(|&c| c == b',' || c == b'?' || c == b'>') {
            return Err(AddrError::NeedsBrackets);
        }
        if uri.is_empty() {
            return Err(AddrError::Empty);
        }
        let after = trim_start(&rest[end..]);
        let params = match after {
            [] => Params(b""),
            [b';', p @ ..] => Params(p),
            _ => return Err(AddrError::Brackets),
        };
        Ok(NameAddr {
            display: None,
            uri,
            params,
        })
    }

    /// The decoded URI.
    pub fn parsed_uri(&self) -> Result<Uri<'a>, UriError> {
        Uri::parse(self.uri)
    }

    /// The URI of an address validation has already accepted, decoded
    /// without checking its grammar again (see [`Uri::decode`]).
    pub fn decoded_uri(&self) -> Result<Uri<'a>, UriError> {
        Uri::decode(self.uri)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.params.get(b"tag").flatten()
    }
}

/// One value of a Contact header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (only valid in a REGISTER with `Expires: 0`).
    Wildcard,
    /// An address with its contact parameters.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Decodes one comma-separated element of a Contact header, checking
    /// the URI and parameters too (see [`NameAddr::parse_strict`]).
    pub fn parse(v: &'a [u8]) -> Result<Contact<'a>, AddrError> {
        if trim(v) == b"*" {
            return Ok(Contact::Wildcard);
        }
        NameAddr::parse_strict(v).map(Contact::Addr)
    }

    /// The `expires` contact parameter, saturated to `u32::MAX` when larger
    /// (RFC 4475 `scalar02`: no wrap-around); `None` if absent or not a
    /// number.
    pub fn expires(&self) -> Option<u32> {
        match self {
            Contact::Addr(a) => a.params.get(b"expires").flatten().and_then(parse_delta),
            Contact::Wildcard => None,
        }
    }

    /// The `q` parameter in thousandths (`q=0.5` is 500); `None` if absent
    /// or malformed.
    pub fn q(&self) -> Option<u16> {
        let Contact::Addr(a) = self else { return None };
        let v = a.params.get(b"q").flatten()?;
        let (int, frac) = match v.iter().position(|&c| c == b'.') {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, &b""[..]),
        };
        if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut thousandths: u16 = 0;
        for i in 0..3 {
            thousandths = thousandths * 10 + frac.get(i).map_or(0, |&c| u16::from(c - b'0'));
        }
        match int {
            b"0" => Some(thousandths),
            b"1" if thousandths == 0 => Some(1000),
            _ => None,
        }
    }
}

/// A `delta-seconds` value, saturating at `u32::MAX`.
pub fn parse_delta(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(super::scan::parse_u32(v).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse(
            b"\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(a.uri, b"sip:jdrosen@example.com");
        assert_eq!(a.tag(), Some(&b"98asjd8"[..]));
        let a = NameAddr::parse(b"caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display, Some(&b"caller"[..]));
        let a =
            NameAddr::parse(b"sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(a.tag(), Some(&b"1918181833n"[..]));
        let a = NameAddr::parse(b"isbn:2983792873").unwrap();
        assert!(matches!(a.parsed_uri(), Ok(Uri::Other { .. })));
    }

    #[test]
    fn rejects_torture_cases() {
        assert_eq!(
            NameAddr::parse(b"\"Mr. J. User <sip:j.user@example.com>"),
            Err(AddrError::UnbalancedQuote)
        );
        assert_eq!(
            NameAddr::parse(b"Watson, Thomas <sip:t.watson@example.org>"),
            Err(AddrError::DisplayName)
        );
        assert_eq!(
            NameAddr::parse_strict(b"\"Watson, Thomas\" < sip:t.watson@example.org >"),
            Err(AddrError::Brackets)
        );
        assert_eq!(
            Contact::parse(b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
            Err(AddrError::NeedsBrackets)
        );
        assert_eq!(
            Contact::parse(b"\"Joe\" <sip:joe@example.org>;;;;"),
            Err(AddrError::Params)
        );
    }

    #[test]
    fn contact_params() {
        let c = Contact::parse(b"<sip:u@h>;expires=280297596632815;q=0.33").unwrap();
        assert_eq!(c.expires(), Some(u32::MAX));
        assert_eq!(c.q(), Some(330));
        assert_eq!(Contact::parse(b" * ").unwrap(), Contact::Wildcard);
        // cparam01: the parameter belongs to the contact, not the URI.
        let Contact::Addr(a) =
            Contact::parse(b"sip:+19725552222@gw1.example.net;unknownparam").unwrap()
        else {
            panic!()
        };
        assert_eq!(a.uri, b"sip:+19725552222@gw1.example.net");
        assert!(a.params.has(b"unknownparam"));
    }
}
