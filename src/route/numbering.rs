//! Number normalisation (DOMAIN.md §5): dialled digits to E.164 and back.
//!
//! Both directions write into [`NumberBuf`], a fixed 24-byte buffer on the
//! stack, so the routing hot path never allocates for a number.
//!
//! ```
//! use tandem::route::Numbering;
//! let es = Numbering::new("34", Some("94"), "00", "", 9);
//! assert_eq!(es.to_e164("944123456").unwrap().as_str(), "+34944123456");
//! assert_eq!(es.to_e164("4123456").unwrap().as_str(), "+34944123456");
//! assert_eq!(es.to_local("+33123456789").as_str(), "0033123456789");
//! ```

use std::fmt;

/// A number of at most 24 ASCII bytes, kept inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NumberBuf {
    len: u8,
    buf: [u8; 24],
}

impl NumberBuf {
    const EMPTY: NumberBuf = NumberBuf {
        len: 0,
        buf: [0; 24],
    };

    /// Builds a number from parts; `None` when longer than 24 bytes.
    fn from_parts(parts: &[&str]) -> Option<NumberBuf> {
        let mut n = NumberBuf::EMPTY;
        for p in parts {
            let end = n.len as usize + p.len();
            if end > n.buf.len() {
                return None;
            }
            n.buf[n.len as usize..end].copy_from_slice(p.as_bytes());
            n.len = end as u8;
        }
        Some(n)
    }

    /// The number as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII from `&str` parts is ever copied in, at part boundaries.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Display for NumberBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NumberBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// An E.164 number: `+` and 7 to 15 digits, kept inline. Fifteen is
/// E.164's maximum; the shortest numbers in service are seven digits with
/// their country code (Niue, Tokelau: `+683 4002`), so anything shorter —
/// `+34`, a country code alone, or `001` dialled — is no number at all.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct E164(NumberBuf);

impl E164 {
    /// Parses `+` followed by 7 to 15 digits.
    pub fn parse(s: &str) -> Option<E164> {
        let digits = s.strip_prefix('+')?;
        if !(MIN_DIGITS..=15).contains(&digits.len()) || !all_digits(digits) {
            return None;
        }
        NumberBuf::from_parts(&[s]).map(E164)
    }

    /// The number with its `+`.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A dialled telephone-subscriber (RFC 3966 §3) as routing reads it:
/// visual separators (`-` `.` `(` `)`) dropped from a number made only of
/// digits, `+`, `*`, `#` and separators (a name such as `alice.b` is left
/// alone), and a local number with a global `phone-context` (`+3391`,
/// RFC 3966 §5.1.5) prefixed with it, making it global. The context is
/// the number's own parameter (`4123456;phone-context=+3494`, as a SIP
/// URI's user part carries it with `user=phone`), else `uri_context` (a
/// `tel:` URI's). A domain-name context leaves the number local (read with
/// the caller's numbering). Borrows when nothing changes.
pub fn dialled_number<'a>(user: &'a str, uri_context: Option<&str>) -> std::borrow::Cow<'a, str> {
    use std::borrow::Cow;
    let separator = |c: char| matches!(c, '-' | '.' | '(' | ')');
    let phone_like = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#') || separator(c))
    };
    let (number, own_context) = match user.split_once(';') {
        Some((n, params)) if phone_like(n) => (
            n,
            params.split(';').find_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.eq_ignore_ascii_case("phone-context").then_some(value)
            }),
        ),
        _ => (user, None),
    };
    if !phone_like(number) {
        return Cow::Borrowed(user);
    }
    let digits: Cow<'a, str> = if number.contains(separator) {
        Cow::Owned(number.chars().filter(|&c| !separator(c)).collect())
    } else {
        Cow::Borrowed(number)
    };
    match own_context.or(uri_context) {
        Some(ctx) if ctx.starts_with('+') && !digits.starts_with('+') && phone_like(ctx) => {
            let ctx: String = ctx.chars().filter(|&c| !separator(c)).collect();
            Cow::Owned(format!("{ctx}{digits}"))
        }
        _ => digits,
    }
}

/// The fewest digits an E.164 number has (see [`E164`]).
const MIN_DIGITS: usize = 7;

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `s` without `prefix`; a byte loop, because these prefixes are one to
/// four bytes and a `memcmp` call costs more than the comparison.
#[inline]
fn strip<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let (s, p) = (s.as_bytes(), prefix.as_bytes());
    if s.len() < p.len() || s.iter().zip(p).any(|(a, b)| a != b) {
        return None;
    }
    // Digits only (validated config), so `p.len()` is a char boundary.
    std::str::from_utf8(&s[p.len()..]).ok()
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

/// The numbering settings of a caller or friend (DOMAIN.md §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbering {
    cc: Box<str>,
    area: Option<Box<str>>,
    intl: Box<str>,
    trunk: Box<str>,
    len: usize,
}

impl Numbering {
    /// Settings from their parts: country code, optional area code,
    /// international prefix, trunk prefix (may be empty) and national
    /// significant number length.
    pub fn new(cc: &str, area: Option<&str>, intl: &str, trunk: &str, len: u32) -> Numbering {
        Numbering {
            cc: cc.into(),
            area: area.filter(|a| !a.is_empty()).map(Into::into),
            intl: intl.into(),
            trunk: trunk.into(),
            len: len as usize,
        }
    }

    /// Inbound normalisation, rules tried in this order:
    /// `+D…` stays; `intl D…` → `+D…`; `trunk D…` with `len` digits after
    /// the trunk prefix → `+cc D…`; exactly `len` digits → `+cc N`; with an
    /// area code, a number that completes to `len` digits after it →
    /// `+cc area N`. Anything else (letters, wrong length, more than 15
    /// digits in the result) is not dialable: `None`.
    ///
    /// The area rule requires `area + N` to have exactly `len` digits, so a
    /// short string such as `12` is not turned into a bogus `+349412`.
    pub fn to_e164(&self, dialled: &str) -> Option<E164> {
        if dialled.starts_with('+') {
            return E164::parse(dialled);
        }
        if dialled.is_empty() || !all_digits(dialled) {
            return None;
        }
        // `dialled` is all digits from here on, so every candidate is `+`
        // and digits: only its length remains to be checked.
        let candidate = if let Some(rest) = strip(dialled, &self.intl) {
            NumberBuf::from_parts(&["+", rest])
        } else if let Some(rest) =
            strip(dialled, &self.trunk).filter(|r| !self.trunk.is_empty() && r.len() == self.len)
        {
            NumberBuf::from_parts(&["+", &self.cc, rest])
        } else if dialled.len() == self.len {
            NumberBuf::from_parts(&["+", &self.cc, dialled])
        } else {
            match &self.area {
                Some(area) if area.len() + dialled.len() == self.len => {
                    NumberBuf::from_parts(&["+", &self.cc, area, dialled])
                }
                _ => None,
            }
        }?;
        (MIN_DIGITS + 1..=16)
            .contains(&usize::from(candidate.len))
            .then_some(E164(candidate))
    }

    /// Outbound: `+cc N` → `trunk N`; any other `+D…` → `intl D…`.
    pub fn to_local(&self, e164: &str) -> NumberBuf {
        let digits = e164.strip_prefix('+').unwrap_or(e164);
        let parts: [&str; 2] = match strip(digits, &self.cc) {
            Some(national) => [&self.trunk, national],
            None => [&self.intl, digits],
        };
        NumberBuf::from_parts(&parts).unwrap_or(NumberBuf::EMPTY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialled_numbers_read_as_rfc_3966() {
        for (number, ctx, want) in [
            ("944123456", None, "944123456"),
            ("944-123-456", None, "944123456"),
            ("+34-944-000-100", None, "+34944000100"),
            ("(94)4.12.34.56", None, "944123456"),
            ("1234567", Some("+3391"), "+33911234567"),
            ("1234567", Some("+33-91"), "+33911234567"),
            ("+34944123456", Some("+3391"), "+34944123456"),
            ("1234567", Some("example.com"), "1234567"),
            ("alice.b", None, "alice.b"),
            ("*21#", None, "*21#"),
            ("4123456;phone-context=+3494", None, "+34944123456"),
            ("4123456;Phone-Context=+34-94", Some("+33"), "+34944123456"),
            ("4123456;phone-context=pbx.example.com", None, "4123456"),
            ("alice;x=1", None, "alice;x=1"),
        ] {
            assert_eq!(dialled_number(number, ctx), want, "{number} {ctx:?}");
        }
    }
}
