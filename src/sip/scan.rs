//! Byte-level predicates and small scanners shared by the SIP decoders.
//!
//! Everything here works on `&[u8]` spans of a received message and never
//! allocates. Header values may contain folded lines (`CRLF` followed by
//! whitespace, RFC 3261 §7.3.1); inside a value span the framer guarantees a
//! CR or LF is always part of such a fold, so the decoders simply treat CR
//! and LF as whitespace.

/// A `[bool; 256]` table, built at compile time, of the bytes `c` for
/// which the predicate holds: one load per byte where a grammar's character
/// class would be a chain of comparisons.
macro_rules! byte_table {
    (|$c:ident| $pred:expr) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $c = i as u8;
            t[i] = $pred;
            i += 1;
        }
        t
    }};
}
pub(crate) use byte_table;

/// `token` characters (RFC 3261 §25.1):
/// `alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"`.
const TOKEN: [bool; 256] = byte_table!(|c| c.is_ascii_alphanumeric()
    || matches!(
        c,
        b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
    ));

/// Whether `c` is a `token` character.
#[inline]
pub fn is_token(c: u8) -> bool {
    TOKEN[c as usize]
}

/// Whether every byte of a non-empty `s` is a token character.
#[inline]
pub fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is_token(c))
}

/// Whitespace inside a header value: SP, HTAB, and the CR/LF of a fold.
#[inline]
pub fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing linear whitespace.
#[inline]
pub fn trim(s: &[u8]) -> &[u8] {
    trim_end(trim_start(s))
}

/// `s` without leading linear whitespace.
#[inline]
pub fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| is_lws(c)).count();
    &s[n..]
}

/// `s` without trailing linear whitespace.
#[inline]
pub fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&c| is_lws(c)).count();
    &s[..s.len() - n]
}

/// Parses a decimal number of at most `u32::MAX`; `None` when empty, not all
/// digits, or too large (RFC 4475 `scalar02`/`scalarlg`: no wrap-around).
/// Leading zeros are allowed (`0068`, RFC 4475 `wsinv`).
#[inline]
pub fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
        if v > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(v as u32)
}

/// Parses a port number (`1*DIGIT` that fits in 16 bits).
#[inline]
pub fn parse_u16(s: &[u8]) -> Option<u16> {
    parse_u32(s).and_then(|v| u16::try_from(v).ok())
}

/// Finds the end of a quoted string that starts at `s[0] == b'"'`, honouring
/// `quoted-pair` escapes. Returns the index one past the closing quote, or
/// `None` when the string is unterminated (RFC 4475 `quotbal`).
pub fn quoted_end(s: &[u8]) -> Option<usize> {
    debug_assert_eq!(s.first(), Some(&b'"'));
    // Jump between quotes and backslashes (SIMD): a digest's nonce and
    // response are long quoted strings.
    let mut i = 1;
    while let Some(j) = memchr::memchr2(b'"', b'\\', s.get(i..)?) {
        let at = i + j;
        if s[at] == b'"' {
            return Some(at + 1);
        }
        i = at + 2; // a quoted-pair: the escaped byte is skipped
    }
    None
}

/// Finds the first occurrence of `delim` at nesting level zero: outside
/// quoted strings and outside `<...>`. Used to split comma-separated header
/// values and `;` parameters without breaking `"a, b" <sip:x;y>`.
///
/// Returns `Err(Unbalanced)` on an unterminated quote, so callers can
/// reject the message instead of guessing.
pub fn find_unquoted(s: &[u8], delim: u8) -> Result<Option<usize>, Unbalanced> {
    // Jump between the only bytes that matter (memchr3 is SIMD); most
    // values have no quotes or brackets, so this is one search.
    let mut i = 0;
    while let Some(j) = memchr::memchr3(delim, b'"', b'<', &s[i..]) {
        let at = i + j;
        match s[at] {
            b'"' => i = at + quoted_end(&s[at..]).ok_or(Unbalanced)?,
            b'<' => match memchr::memchr(b'>', &s[at..]) {
                Some(k) => i = at + k + 1,
                None => return Ok(None),
            },
            _ => return Ok(Some(at)),
        }
    }
    Ok(None)
}

/// A quoted string that is never closed (RFC 4475 `quotbal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unbalanced;

/// Iterator over the comma-separated elements of a header value, split
/// outside quotes and angle brackets. Elements are trimmed; an empty element
/// (`a,,b`) is yielded as an empty slice so the caller can reject it.
#[derive(Debug, Clone)]
pub struct CommaSplit<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CommaSplit<'a> {
    /// Splits `value`.
    pub fn new(value: &'a [u8]) -> Self {
        Self { rest: Some(value) }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    /// One element, or `Err` on an unterminated quoted string.
    type Item = Result<&'a [u8], Unbalanced>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest?;
        match find_unquoted(rest, b',') {
            Ok(Some(i)) => {
                self.rest = Some(&rest[i + 1..]);
                Some(Ok(trim(&rest[..i])))
            }
            Ok(None) => {
                self.rest = None;
                Some(Ok(trim(rest)))
            }
            Err(e) => {
                self.rest = None;
                Some(Err(e))
            }
        }
    }
}

/// Case-insensitive ASCII comparison.
#[inline]
pub fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_do_not_wrap() {
        assert_eq!(parse_u32(b"0068"), Some(68));
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"36893488147419103232"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u16(b"65536"), None);
    }

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        let v: Vec<_> = CommaSplit::new(b"\"a, b\" <sip:x,y>;p=1 , <sip:z>")
            .map(Result::unwrap)
            .collect();
        assert_eq!(v, [&b"\"a, b\" <sip:x,y>;p=1"[..], b"<sip:z>"]);
        assert!(CommaSplit::new(b"\"open, x").any(|r| r.is_err()));
    }

    #[test]
    fn quoted_pairs_do_not_end_a_string() {
        assert_eq!(quoted_end(b"\"a\\\"b\" x"), Some(6));
        assert_eq!(quoted_end(b"\"abc"), None);
        assert_eq!(quoted_end(b"\"abc\\"), None);
        assert_eq!(quoted_end(b"\"\\\\\""), Some(4));
    }

    /// The byte-at-a-time scan the SIMD one replaced.
    fn quoted_end_reference(s: &[u8]) -> Option<usize> {
        let mut i = 1;
        while i < s.len() {
            match s[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    }

    #[test]
    fn quoted_end_agrees_with_the_byte_scan() {
        let mut rng = crate::sip::test_rng(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"ab\"\\ ,=";
        for _ in 0..200_000 {
            let len = 1 + rng(80);
            let mut s = vec![b'"'];
            s.extend((1..len).map(|_| alphabet[rng(alphabet.len())]));
            assert_eq!(
                quoted_end(&s),
                quoted_end_reference(&s),
                "{:?}",
                String::from_utf8_lossy(&s)
            );
        }
    }
}

/// Decimal digits of `n` without the formatting machinery (hot paths
/// write numbers into messages).
pub fn itoa(mut n: u64) -> Itoa {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Itoa { buf, start: i }
}

/// The digits written by [`itoa`].
#[derive(Debug, Clone, Copy)]
pub struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    /// The digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.start..]).expect("digits")
    }
}
