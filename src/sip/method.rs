//! Request methods as an open newtype: the RFC 3261 and extension methods
//! are constants, any other `token` is kept as it came (RFC 4475 `intmeth`,
//! `esc02`: `RE%47IST%45R` is not `REGISTER`).

use std::fmt;

/// A SIP method. Methods are case-sensitive (RFC 3261 §7.1), so comparison
/// is byte equality.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method<'a>(&'a [u8]);

#[allow(missing_docs)]
impl Method<'static> {
    pub const ACK: Method<'static> = Method(b"ACK");
    pub const BYE: Method<'static> = Method(b"BYE");
    pub const CANCEL: Method<'static> = Method(b"CANCEL");
    pub const INFO: Method<'static> = Method(b"INFO");
    pub const INVITE: Method<'static> = Method(b"INVITE");
    pub const MESSAGE: Method<'static> = Method(b"MESSAGE");
    pub const NOTIFY: Method<'static> = Method(b"NOTIFY");
    pub const OPTIONS: Method<'static> = Method(b"OPTIONS");
    pub const PRACK: Method<'static> = Method(b"PRACK");
    pub const PUBLISH: Method<'static> = Method(b"PUBLISH");
    pub const REFER: Method<'static> = Method(b"REFER");
    pub const REGISTER: Method<'static> = Method(b"REGISTER");
    pub const SUBSCRIBE: Method<'static> = Method(b"SUBSCRIBE");
    pub const UPDATE: Method<'static> = Method(b"UPDATE");
}

const KNOWN: [Method<'static>; 14] = [
    Method::ACK,
    Method::BYE,
    Method::CANCEL,
    Method::INFO,
    Method::INVITE,
    Method::MESSAGE,
    Method::NOTIFY,
    Method::OPTIONS,
    Method::PRACK,
    Method::PUBLISH,
    Method::REFER,
    Method::REGISTER,
    Method::SUBSCRIBE,
    Method::UPDATE,
];

impl<'a> Method<'a> {
    /// Wraps a method token. The caller has checked it is a `token`.
    pub const fn new(token: &'a [u8]) -> Self {
        Method(token)
    }

    /// The method's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Whether this is one of the methods Tandem knows by name.
    pub fn is_known(&self) -> bool {
        KNOWN.contains(self)
    }

    /// Requests that may create a dialog, and so get a Record-Route.
    pub fn creates_dialog(&self) -> bool {
        *self == Method::INVITE || *self == Method::SUBSCRIBE || *self == Method::REFER
    }
}

impl fmt::Debug for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Method({})", String::from_utf8_lossy(self.0))
    }
}

impl fmt::Display for Method<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}
