//! The SIP wire format: framing, typed views, edits and validation, over
//! [`bytes::Bytes`] without copying.
//!
//! This module has no policy: it does not know about companies, friends or
//! transactions. It answers three questions about a received buffer:
//!
//! 1. *Where is the message?* [`Message::parse`] frames it (start line,
//!    header index, body by Content-Length) and allocates nothing.
//! 2. *What does it say?* Typed views decode a header value on demand,
//!    borrowing from the buffer: [`Via`], [`NameAddr`], [`Contact`], [`CSeq`],
//!    [`Uri`], [`AuthValue`], [`ContentType`].
//! 3. *May a proxy handle it?* [`validate`] classifies it as accept, reject
//!    with a status and a reason phrase, or drop.
//!
//! Outgoing messages are built by [`Editor`], which copies the unchanged
//! byte ranges of the received message and splices in only what changed,
//! and by [`response_to`].
//!
//! ```
//! use bytes::Bytes;
//! use tandem::sip::{validate, HeaderName, Message, Verdict, Via};
//!
//! let raw = Bytes::from_static(
//!     b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//!       v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776\r\n\
//!       Max-Forwards: 70\r\n\
//!       f: <sip:alice@example.com>;tag=1\r\nt: <sip:bob@example.com>\r\n\
//!       i: a84b4c76e66710\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n",
//! );
//! let msg = Message::parse_datagram(raw).unwrap();
//! assert_eq!(validate(&msg), Verdict::Accept);
//! let via = Via::parse(msg.header(HeaderName::Via).unwrap()).unwrap();
//! assert_eq!(via.branch(), Some(&b"z9hG4bK776"[..]));
//! ```

mod addr;
mod edit;
mod header;
mod message;
mod method;
mod params;
pub mod scan;
pub mod sdp;
pub use sdp::Codecs;
mod status;
mod uri;
mod validate;
mod values;

pub use addr::{parse_delta, AddrError, Contact, NameAddr};
pub use edit::{response_to, Editor};
pub use header::HeaderName;
pub use message::{
    Entry, Framing, Head, Message, Span, StartLine, Status, MAX_HEADERS, MAX_MESSAGE_LEN,
};
pub use method::Method;
pub use params::{unquote, Param, ParamIter, Params};
pub use status::StatusCode;
pub use uri::{escape_user, unescape, Host, SipUri, TelUri, Uri, UriError, MAX_URI_LEN};
pub use validate::{required_extensions, unsupported_proxy_require, validate, Verdict};
pub use values::{
    is_valid_call_id, option_tags, parse_expires, parse_max_forwards, sip_date, AuthError,
    AuthValue, CSeq, ContentType, Via, ViaError,
};

use std::fmt;

/// Why a buffer could not be framed as a SIP message.
///
/// Each variant maps to what goes on the wire through
/// [`ParseError::status`]: a request gets that status with
/// [`ParseError::reason`] as its reason phrase; a response is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The datagram held nothing but line breaks (a keep-alive); ignore it.
    Empty,
    /// A datagram ended before the empty line that closes the header section.
    Truncated,
    /// The message (or the header section of a stream message) is longer
    /// than [`MAX_MESSAGE_LEN`].
    TooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    TooManyHeaders,
    /// The Request-Line is not `Method SP Request-URI SP SIP-Version` with
    /// single spaces (RFC 4475 `lwsstart`, `trws`, `lwsruri`).
    BadRequestLine,
    /// The Status-Line is malformed or its code is not three digits in
    /// 100..=699 (RFC 4475 `bigcode`).
    BadStatusLine,
    /// A header line has no `:` or a name that is not a token.
    BadHeaderLine,
    /// Content-Length is not a decimal number (RFC 4475 `ncl`).
    BadContentLength,
    /// Content-Length appears more than once (RFC 4475 `mcl01`).
    MultipleContentLength,
    /// A datagram's Content-Length goes past its end (RFC 4475 `clerr`).
    ContentLengthMismatch,
}

impl ParseError {
    /// The status a request with this error is answered with; `None` when
    /// nothing should be sent.
    pub fn status(self) -> Option<StatusCode> {
        match self {
            ParseError::Empty | ParseError::BadStatusLine => None,
            ParseError::TooLarge => Some(StatusCode::MESSAGE_TOO_LARGE),
            _ => Some(StatusCode::BAD_REQUEST),
        }
    }

    /// The reason phrase naming the problem.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::Empty => "Empty message",
            ParseError::Truncated => "Truncated message",
            ParseError::TooLarge => "Message Too Large",
            ParseError::TooManyHeaders => "Too many header fields",
            ParseError::BadRequestLine => "Malformed Request-Line",
            ParseError::BadStatusLine => "Malformed Status-Line",
            ParseError::BadHeaderLine => "Malformed header line",
            ParseError::BadContentLength => "Invalid Content-Length",
            ParseError::MultipleContentLength => "Multiple Content-Length values",
            ParseError::ContentLengthMismatch => "Content-Length larger than message",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ParseError {}

/// A small deterministic generator for the parsers' differential tests:
/// `next(n)` is a pseudo-random number below `n` (xorshift64).
#[cfg(test)]
fn test_rng(mut x: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    }
}
