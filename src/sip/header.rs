//! Header names: the known ones as an enum, recognised case-insensitively in
//! long and compact form (RFC 3261 §7.3.3 and later extensions), and `Other`
//! for everything else (kept verbatim in the message, never lost).

macro_rules! header_names {
    ($( $variant:ident => $name:literal $(, $compact:literal)? ; )*) => {
        /// A header field name. `Other` covers every header Tandem does not
        /// interpret; its bytes stay in the message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        #[allow(missing_docs)]
        pub enum HeaderName {
            $( $variant, )*
            Other,
        }

        const KNOWN: &[(HeaderName, &str, Option<u8>)] = &[
            $( (HeaderName::$variant, $name, header_names!(@compact $($compact)?)), )*
        ];
        // A set of names fits in a `u128` (validation's duplicate check).
        const _: () = assert!(KNOWN.len() < 128);
    };
    (@compact $c:literal) => { Some($c) };
    (@compact) => { None };
}

header_names! {
    Accept => "Accept";
    AcceptContact => "Accept-Contact", b'a';
    AcceptEncoding => "Accept-Encoding";
    AcceptLanguage => "Accept-Language";
    AlertInfo => "Alert-Info";
    Allow => "Allow";
    AllowEvents => "Allow-Events", b'u';
    AuthenticationInfo => "Authentication-Info";
    Authorization => "Authorization";
    CallId => "Call-ID", b'i';
    CallInfo => "Call-Info";
    Diversion => "Diversion";
    Contact => "Contact", b'm';
    ContentDisposition => "Content-Disposition";
    ContentEncoding => "Content-Encoding", b'e';
    ContentLanguage => "Content-Language";
    ContentLength => "Content-Length", b'l';
    ContentType => "Content-Type", b'c';
    CSeq => "CSeq";
    Date => "Date";
    ErrorInfo => "Error-Info";
    Event => "Event", b'o';
    Expires => "Expires";
    From => "From", b'f';
    Identity => "Identity", b'y';
    IdentityInfo => "Identity-Info", b'n';
    InReplyTo => "In-Reply-To";
    MaxForwards => "Max-Forwards";
    MimeVersion => "MIME-Version";
    MinExpires => "Min-Expires";
    MinSe => "Min-SE";
    Organization => "Organization";
    PAssertedIdentity => "P-Asserted-Identity";
    PPreferredIdentity => "P-Preferred-Identity";
    Path => "Path";
    Priority => "Priority";
    Privacy => "Privacy";
    ProxyAuthenticate => "Proxy-Authenticate";
    ProxyAuthorization => "Proxy-Authorization";
    ProxyRequire => "Proxy-Require";
    RAck => "RAck";
    Reason => "Reason";
    RecordRoute => "Record-Route";
    RemotePartyId => "Remote-Party-ID";
    ReferTo => "Refer-To", b'r';
    ReferredBy => "Referred-By", b'b';
    RejectContact => "Reject-Contact", b'j';
    ReplyTo => "Reply-To";
    RequestDisposition => "Request-Disposition", b'd';
    Require => "Require";
    RetryAfter => "Retry-After";
    Route => "Route";
    RSeq => "RSeq";
    Server => "Server";
    SessionExpires => "Session-Expires", b'x';
    Subject => "Subject", b's';
    Supported => "Supported", b'k';
    Timestamp => "Timestamp";
    To => "To", b't';
    Unsupported => "Unsupported";
    UserAgent => "User-Agent";
    Via => "Via", b'v';
    Warning => "Warning";
    WwwAuthenticate => "WWW-Authenticate";
}

const SLOTS: usize = 256;

/// Hash of a header name from its length and its first and last bytes,
/// case-folded with `| 0x20` (which folds ASCII letters and maps the other
/// token characters to fixed values). O(1) whatever the name's length; a
/// collision costs one more comparison, and a match is always confirmed with
/// `eq_ignore_ascii_case`. (A full FNV over the name cost 18% of a whole
/// INVITE parse in `benches/parse.rs`.)
const fn fold_hash(name: &[u8]) -> usize {
    let n = name.len();
    let first = (name[0] | 0x20) as usize;
    let last = (name[n - 1] | 0x20) as usize;
    (n.wrapping_mul(53) ^ first.wrapping_mul(7) ^ last.wrapping_mul(131)) % SLOTS
}

/// Open-addressed table from `fold_hash(long name)` to `index + 1` in `KNOWN`,
/// built at compile time.
const TABLE: [u8; SLOTS] = {
    let mut t = [0u8; SLOTS];
    let mut k = 0;
    while k < KNOWN.len() {
        let mut slot = fold_hash(KNOWN[k].1.as_bytes());
        while t[slot] != 0 {
            slot = (slot + 1) % SLOTS;
        }
        t[slot] = (k + 1) as u8;
        k += 1;
    }
    t
};

/// The long names in lower case, padded, for [`eq_folded`].
const LOWER: [[u8; 24]; KNOWN.len()] = {
    let mut t = [[0u8; 24]; KNOWN.len()];
    let mut k = 0;
    while k < KNOWN.len() {
        let name = KNOWN[k].1.as_bytes();
        assert!(name.len() <= 24);
        let mut i = 0;
        while i < name.len() {
            assert!(name[i].is_ascii_alphabetic() || name[i] == b'-');
            t[k][i] = name[i].to_ascii_lowercase();
            i += 1;
        }
        k += 1;
    }
    t
};

/// Whether `input` equals the lower-case known name `lower` ignoring ASCII
/// case, eight bytes at a time. Exact because known names hold only letters
/// and `-`: OR-ing `0x20` folds letters, keeps `-`, and maps no other byte
/// onto a letter or `-` except CR (0x0D), which cannot be in a header name.
#[inline]
fn eq_folded(input: &[u8], lower: &[u8; 24]) -> bool {
    let n = input.len();
    let mut i = 0;
    while i + 8 <= n {
        let a = u64::from_le_bytes(input[i..i + 8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(lower[i..i + 8].try_into().expect("8 bytes"));
        if a | 0x2020_2020_2020_2020 != b {
            return false;
        }
        i += 8;
    }
    while i < n {
        if input[i] | 0x20 != lower[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Compact form letter (lower-cased) to header, `a`..=`z`.
const COMPACT: [HeaderName; 26] = {
    let mut t = [HeaderName::Other; 26];
    let mut k = 0;
    while k < KNOWN.len() {
        if let Some(c) = KNOWN[k].2 {
            t[(c - b'a') as usize] = KNOWN[k].0;
        }
        k += 1;
    }
    t
};

impl HeaderName {
    /// Recognises a header name, case-insensitively, in long or compact form.
    #[inline]
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if name.is_empty() {
            return HeaderName::Other;
        }
        if name.len() == 1 {
            let c = name[0] | 0x20;
            return if c.is_ascii_lowercase() {
                COMPACT[(c - b'a') as usize]
            } else {
                HeaderName::Other
            };
        }
        let mut slot = fold_hash(name);
        loop {
            let k = TABLE[slot];
            if k == 0 {
                return HeaderName::Other;
            }
            let (h, long, _) = KNOWN[k as usize - 1];
            if long.len() == name.len() && eq_folded(name, &LOWER[k as usize - 1]) {
                return h;
            }
            slot = (slot + 1) % SLOTS;
        }
    }

    /// The canonical long name (`"Call-ID"`), or `None` for `Other`.
    pub fn as_str(self) -> Option<&'static str> {
        KNOWN.get(self as usize).map(|k| k.1)
    }

    /// The compact form letter, if the header has one.
    pub fn compact(self) -> Option<char> {
        KNOWN.get(self as usize).and_then(|k| k.2).map(char::from)
    }

    /// Headers that may appear at most once in a message (RFC 3261 §7.3.1:
    /// those whose grammar is not a comma-separated list). A second copy is
    /// a `400` (RFC 4475 `multi01`, `mcl01`).
    pub fn is_single(self) -> bool {
        matches!(
            self,
            HeaderName::CallId
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::CSeq
                | HeaderName::Expires
                | HeaderName::From
                | HeaderName::MaxForwards
                | HeaderName::MinExpires
                | HeaderName::To
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_round_trips_in_any_case() {
        for &(h, long, compact) in KNOWN {
            assert_eq!(HeaderName::from_bytes(long.as_bytes()), h, "{long}");
            let upper = long.to_ascii_uppercase();
            assert_eq!(HeaderName::from_bytes(upper.as_bytes()), h, "{upper}");
            if let Some(c) = compact {
                assert_eq!(HeaderName::from_bytes(&[c]), h);
                assert_eq!(HeaderName::from_bytes(&[c.to_ascii_uppercase()]), h);
            }
            assert_eq!(h.as_str(), Some(long));
        }
    }

    #[test]
    fn unknown_names_are_other() {
        for n in [
            &b"X-Foo"[..],
            b"q",
            b"C%6Fntact",
            b"Vias",
            b"extensionHeader-!.%*+_`'~",
        ] {
            assert_eq!(HeaderName::from_bytes(n), HeaderName::Other);
        }
        assert_eq!(HeaderName::Other.as_str(), None);
    }
}
