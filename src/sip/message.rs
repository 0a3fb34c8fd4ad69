//! Framing: finds the start line, indexes the header fields and frames the
//! body, without copying or allocating.
//!
//! A parsed [`Message`] is the received [`Bytes`] plus a fixed-size index of
//! spans ([`Head`]). Nothing is decoded until asked for: the typed views in
//! [`super::values`], [`super::addr`] and [`super::uri`] borrow from the
//! buffer.
//!
//! Grammar (RFC 3261 §7, §25):
//!
//! ```text
//! message      = start-line *message-header CRLF [ message-body ]
//! Request-Line = Method SP Request-URI SP SIP-Version CRLF
//! Status-Line  = SIP-Version SP Status-Code SP Reason-Phrase CRLF
//! message-header = header-name HCOLON header-value CRLF   ; HCOLON = *( SP / HTAB ) ":" SWS
//! ```
//!
//! Framing rules that matter for safety:
//! - On a datagram, the body is `Content-Length` bytes and anything after it
//!   is ignored (RFC 4475 `dblreq`); a missing Content-Length means "the rest
//!   of the datagram" (RFC 3261 §18.3); a Content-Length past the end of the
//!   datagram is an error (`clerr`).
//! - On a stream, incomplete input is [`Status::Partial`], never an error; a
//!   missing Content-Length means an empty body.
//! - A Content-Length that is not a plain decimal (`-999`, `five`) or that
//!   appears twice is an error, never a guess (`ncl`, `mcl01`): picking one
//!   of two lengths is how request smuggling starts.

use bytes::Bytes;
use memchr::memchr;

use super::header::HeaderName;
use super::method::Method;
use super::scan::{self, is_token, parse_u32};
use super::status::StatusCode;
use super::ParseError;

/// The largest message Tandem accepts, head and body (the UDP payload limit;
/// a TCP peer sending more is cut off).
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// The most header fields one message may carry.
pub const MAX_HEADERS: usize = 96;

/// How the bytes arrived, which decides how the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One UDP datagram holds exactly one message (plus ignorable trailing
    /// bytes).
    Datagram,
    /// A TCP byte stream: the message may be incomplete or followed by the
    /// next one.
    Stream,
}

/// The outcome of framing input that may be incomplete.
#[derive(Debug)]
pub enum Status<T> {
    /// A whole message.
    Complete(T),
    /// Stream input ends before the message does; read more and call again.
    Partial,
}

/// A `[start, end)` byte range into the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    #[inline]
    fn new(start: usize, end: usize) -> Self {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// As a `usize` range.
    #[inline]
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One indexed header field line: 8 bytes, since a message is at most
/// [`MAX_MESSAGE_LEN`] bytes and names at most 255 (a smaller index is
/// cheaper to build and to move: 768 bytes for [`MAX_HEADERS`]).
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The recognised name.
    pub name: HeaderName,
    /// Length of the name as written, from `line`.
    pub name_len: u8,
    line: u16,
    value_start: u16,
    value_end: u16,
}

impl Entry {
    /// Start of the line (the first byte of the name).
    #[inline]
    pub fn line(&self) -> u32 {
        u32::from(self.line)
    }

    /// The value, without surrounding whitespace (may include folds).
    #[inline]
    pub fn value(&self) -> Span {
        Span {
            start: u32::from(self.value_start),
            end: u32::from(self.value_end),
        }
    }
}

const EMPTY_ENTRY: Entry = Entry {
    name: HeaderName::Other,
    name_len: 0,
    line: 0,
    value_start: 0,
    value_end: 0,
};

/// The start line, as spans.
#[derive(Debug, Clone, Copy)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP-Version`.
    Request {
        /// The method token.
        method: Span,
        /// The Request-URI, undecoded.
        uri: Span,
        /// `SIP/2.0` (checked by validation, not here).
        version: Span,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`.
    Response {
        /// The SIP version.
        version: Span,
        /// The status code, 100..=699.
        code: StatusCode,
        /// The reason phrase, possibly empty, opaque UTF-8.
        reason: Span,
    },
}

/// The index of a message: start line, header fields and body, as offsets
/// into the buffer it was parsed from.
#[derive(Clone)]
pub struct Head {
    /// Where the message starts (after ignored leading CRLFs).
    pub msg_start: u32,
    /// The start line.
    pub start_line: StartLine,
    /// End of the start line including its line break (first header line).
    pub start_line_end: u32,
    entries: [Entry; MAX_HEADERS],
    len: u8,
    /// Start of the empty line that ends the header section.
    pub headers_end: u32,
    /// The body.
    pub body: Span,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("start_line", &self.start_line)
            .field("headers", &self.entries())
            .field("body", &self.body)
            .finish()
    }
}

impl Head {
    /// The indexed header fields, in message order.
    #[inline]
    pub fn entries(&self) -> &[Entry] {
        &self.entries[..self.len as usize]
    }

    /// Total length of the message from `msg_start` to the end of its body:
    /// on a stream, how many bytes to take off the buffer (plus `msg_start`).
    #[inline]
    pub fn end(&self) -> usize {
        self.body.end as usize
    }

    /// Frames and indexes one message in `buf`.
    ///
    /// Allocates nothing. On a stream, returns [`Status::Partial`] until the
    /// whole message (head and `Content-Length` bytes of body) is in `buf`.
    pub fn parse(buf: &[u8], framing: Framing) -> Result<Status<Head>, ParseError> {
        let stream = framing == Framing::Stream;
        let incomplete = |limit_hit: bool| {
            if limit_hit {
                Err(ParseError::TooLarge)
            } else if stream {
                Ok(Status::Partial)
            } else {
                Err(ParseError::Truncated)
            }
        };

        // RFC 3261 §7.5: CRLFs before the start line are ignored (also the
        // RFC 5626 keep-alive on streams).
        let msg_start = buf
            .iter()
            .take_while(|&&c| c == b'\r' || c == b'\n')
            .count();
        if msg_start == buf.len() {
            return if stream {
                Ok(Status::Partial)
            } else {
                Err(ParseError::Empty)
            };
        }
        // Offsets fit in 16 bits: leading CRLFs count towards the limit.
        let window = &buf[..buf.len().min(MAX_MESSAGE_LEN)];
        let full = window.len() == MAX_MESSAGE_LEN;

        let Some(nl) = memchr(b'\n', &window[msg_start..]).map(|i| i + msg_start) else {
            return incomplete(full);
        };
        let line_end = if nl > msg_start && window[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let start_line = parse_start_line(window, msg_start, line_end)?;

        let mut head = Head {
            msg_start: msg_start as u32,
            start_line,
            start_line_end: (nl + 1) as u32,
            entries: [EMPTY_ENTRY; MAX_HEADERS],
            len: 0,
            headers_end: 0,
            body: Span::default(),
        };
        let mut content_length: Option<u32> = None;
        let mut pos = nl + 1;
        loop {
            // End of the header section: an empty line.
            match window.get(pos) {
                None => return incomplete(full),
                Some(b'\n') => {
                    head.headers_end = pos as u32;
                    pos += 1;
                    break;
                }
                Some(b'\r') => match window.get(pos + 1) {
                    None => return incomplete(full),
                    Some(b'\n') => {
                        head.headers_end = pos as u32;
                        pos += 2;
                        break;
                    }
                    Some(_) => return Err(ParseError::BadHeaderLine),
                },
                Some(b' ' | b'\t') => return Err(ParseError::BadHeaderLine),
                Some(_) => {}
            }
            // One logical line, following folds (CRLF + SP/HTAB).
            let line = pos;
            let mut nl = match memchr(b'\n', &window[pos..]) {
                Some(i) => pos + i,
                None => return incomplete(full),
            };
            loop {
                match window.get(nl + 1) {
                    None => return incomplete(full),
                    Some(b' ' | b'\t') => match memchr(b'\n', &window[nl + 1..]) {
                        Some(i) => nl = nl + 1 + i,
                        None => return incomplete(full),
                    },
                    Some(_) => break,
                }
            }
            let next = nl + 1;

            // header-name *(SP / HTAB) ":"
            let name_end = line
                + window[line..nl]
                    .iter()
                    .take_while(|&&c| is_token(c))
                    .count();
            if name_end == line {
                return Err(ParseError::BadHeaderLine);
            }
            let mut colon = name_end;
            while matches!(window[colon], b' ' | b'\t') {
                colon += 1;
            }
            if window[colon] != b':' {
                return Err(ParseError::BadHeaderLine);
            }
            let raw = &window[colon + 1..nl];
            let lead = raw.len() - scan::trim_start(raw).len();
            let value_start = colon + 1 + lead;
            let value_end = value_start + scan::trim_end(&raw[lead..]).len();

            let name = HeaderName::from_bytes(&window[line..name_end]);
            if name == HeaderName::ContentLength {
                if content_length.is_some() {
                    return Err(ParseError::MultipleContentLength);
                }
                let v = parse_u32(&window[value_start..value_end])
                    .ok_or(ParseError::BadContentLength)?;
                content_length = Some(v);
            }
            if head.len as usize == MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            // All offsets are below MAX_MESSAGE_LEN (the window), so the
            // casts to u16 are exact.
            head.entries[head.len as usize] = Entry {
                name,
                name_len: u8::try_from(name_end - line).map_err(|_| ParseError::BadHeaderLine)?,
                line: line as u16,
                value_start: value_start as u16,
                value_end: value_end as u16,
            };
            head.len += 1;
            pos = next;
        }

        let body_start = pos;
        let body_end = match (content_length, framing) {
            (Some(cl), _) => {
                let end = body_start + cl as usize;
                // A datagram is all there is: a Content-Length past its end
                // is a malformed message (400), however large the number.
                if !stream && end > buf.len() {
                    return Err(ParseError::ContentLengthMismatch);
                }
                if end > MAX_MESSAGE_LEN {
                    return Err(ParseError::TooLarge);
                }
                if end > buf.len() {
                    return Ok(Status::Partial);
                }
                end
            }
            (None, Framing::Datagram) if buf.len() > MAX_MESSAGE_LEN => {
                return Err(ParseError::TooLarge)
            }
            (None, Framing::Datagram) => buf.len(),
            (None, Framing::Stream) => body_start,
        };
        head.body = Span::new(body_start, body_end);
        Ok(Status::Complete(head))
    }

    /// The first field named `name`.
    #[inline]
    pub fn find(&self, name: HeaderName) -> Option<&Entry> {
        self.entries().iter().find(|e| e.name == name)
    }

    /// End of the line of entry `i` (start of the next line).
    #[inline]
    pub fn line_end(&self, i: usize) -> u32 {
        match self.entries().get(i + 1) {
            Some(e) => e.line(),
            None => self.headers_end,
        }
    }
}

fn parse_start_line(buf: &[u8], start: usize, end: usize) -> Result<StartLine, ParseError> {
    let line = &buf[start..end];
    if line.len() > 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line. Status-Code is exactly 3 digits in 100..=699
        // (RFC 4475 `bigcode`: 4294967301 must not wrap to 5).
        let sp = memchr(b' ', line).ok_or(ParseError::BadStatusLine)?;
        let rest = &line[sp + 1..];
        let code_len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
        if code_len != 3 || rest.get(3).is_some_and(|&c| c != b' ') {
            return Err(ParseError::BadStatusLine);
        }
        let code = parse_u32(&rest[..3]).ok_or(ParseError::BadStatusLine)? as u16;
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStatusLine);
        }
        let reason_start = (start + sp + 1 + 4).min(end);
        return Ok(StartLine::Response {
            version: Span::new(start, start + sp),
            code: StatusCode(code),
            reason: Span::new(reason_start, end),
        });
    }
    // Request-Line: exactly three elements separated by single SPs
    // (RFC 4475 `lwsstart`, `trws`, `lwsruri` are rejected, not guessed).
    let sp1 = memchr(b' ', line).ok_or(ParseError::BadRequestLine)?;
    let method = &line[..sp1];
    if !scan::is_token_str(method) {
        return Err(ParseError::BadRequestLine);
    }
    let rest = &line[sp1 + 1..];
    let sp2 = memchr(b' ', rest).ok_or(ParseError::BadRequestLine)?;
    let uri = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if uri.is_empty()
        || version.is_empty()
        || uri.iter().chain(version).any(|&c| c <= b' ' || c == 0x7f)
    {
        return Err(ParseError::BadRequestLine);
    }
    let uri_start = start + sp1 + 1;
    let version_start = uri_start + sp2 + 1;
    Ok(StartLine::Request {
        method: Span::new(start, start + sp1),
        uri: Span::new(uri_start, uri_start + sp2),
        version: Span::new(version_start, end),
    })
}

/// A framed and indexed SIP message over its received buffer.
///
/// Cloning is cheap (a reference count and a copy of the index).
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    head: Head,
    /// The `tag` parameters of From and To, found on first use (a proxy
    /// asks for them many times per request: transaction keys, loop hash,
    /// dialog checks, tokens), as byte ranges of `buf`.
    tags: [std::cell::OnceCell<Option<(u32, u32)>>; 2],
    /// The top Via value as the receiving server stamped it (`received`,
    /// `rport`), written in its place by [`Message::edit`] and
    /// [`crate::sip::response_to`]; `None`: as received.
    top_via: Option<Box<[u8]>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("text", &String::from_utf8_lossy(self.as_bytes()))
            .finish()
    }
}

impl Message {
    /// Frames and indexes the message at the start of `buf`.
    ///
    /// Zero-copy: the message keeps `buf` and spans into it. On a
    /// [`Framing::Stream`] the result may be [`Status::Partial`]; then
    /// [`Head::parse`] over the growing buffer avoids re-wrapping it.
    pub fn parse(buf: Bytes, framing: Framing) -> Result<Status<Message>, ParseError> {
        Ok(match Head::parse(&buf, framing)? {
            Status::Complete(head) => Status::Complete(Message::new(buf, head)),
            Status::Partial => Status::Partial,
        })
    }

    /// Parses one whole datagram.
    pub fn parse_datagram(buf: Bytes) -> Result<Message, ParseError> {
        match Self::parse(buf, Framing::Datagram)? {
            Status::Complete(m) => Ok(m),
            Status::Partial => Err(ParseError::Truncated),
        }
    }

    /// Joins a buffer and the head [`Head::parse`] made of it.
    pub fn from_parts(buf: Bytes, head: Head) -> Message {
        assert!(
            head.end() <= buf.len(),
            "head does not belong to this buffer"
        );
        Message::new(buf, head)
    }

    fn new(buf: Bytes, head: Head) -> Message {
        Message {
            buf,
            head,
            tags: Default::default(),
            top_via: None,
        }
    }

    /// Replaces, in every copy and response made from this message, the
    /// first value of its first Via with `value` (RFC 3261 §18.2.1, RFC
    /// 3581 §4). The buffer and its index stay as received.
    pub fn stamp_top_via(&mut self, value: Vec<u8>) {
        self.top_via = Some(value.into_boxed_slice());
    }

    /// The stamped top Via value, if any ([`Message::stamp_top_via`]).
    pub fn stamped_top_via(&self) -> Option<&[u8]> {
        self.top_via.as_deref()
    }

    /// The `tag` parameter of the From (`HeaderName::From`) or To
    /// (`HeaderName::To`) header, decoded once per message; `None` for any
    /// other header, a missing or malformed header, or no tag.
    pub fn tag(&self, name: HeaderName) -> Option<&[u8]> {
        let cell = match name {
            HeaderName::From => &self.tags[0],
            HeaderName::To => &self.tags[1],
            _ => return None,
        };
        let range = cell.get_or_init(|| {
            let v = self.header(name)?;
            let t = super::addr::NameAddr::parse(v).ok()?.tag()?;
            // The tag is a slice of `buf`: keep its place, not a borrow.
            let start = (t.as_ptr() as usize).checked_sub(self.buf.as_ptr() as usize)?;
            let end = start + t.len();
            (end <= self.buf.len()).then_some((start as u32, end as u32))
        });
        range.map(|(a, b)| &self.buf[a as usize..b as usize])
    }

    /// The index.
    #[inline]
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The whole buffer the message was parsed from.
    #[inline]
    pub fn buffer(&self) -> &Bytes {
        &self.buf
    }

    /// The bytes of a span.
    #[inline]
    pub fn slice(&self, s: Span) -> &[u8] {
        &self.buf[s.range()]
    }

    /// The message as received, from its start line to the end of its body
    /// (leading CRLFs and trailing datagram bytes excluded).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.head.msg_start as usize..self.head.body.end as usize]
    }

    /// Whether this is a request.
    #[inline]
    pub fn is_request(&self) -> bool {
        matches!(self.head.start_line, StartLine::Request { .. })
    }

    /// The request method; `None` for a response.
    #[inline]
    pub fn method(&self) -> Option<Method<'_>> {
        match self.head.start_line {
            StartLine::Request { method, .. } => Some(Method::new(self.slice(method))),
            StartLine::Response { .. } => None,
        }
    }

    /// The undecoded Request-URI; `None` for a response.
    #[inline]
    pub fn request_uri(&self) -> Option<&[u8]> {
        match self.head.start_line {
            StartLine::Request { uri, .. } => Some(self.slice(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code; `None` for a request.
    #[inline]
    pub fn status(&self) -> Option<StatusCode> {
        match self.head.start_line {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase; `None` for a request.
    pub fn reason(&self) -> Option<&[u8]> {
        match self.head.start_line {
            StartLine::Response { reason, .. } => Some(self.slice(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// The SIP version of the start line.
    pub fn version(&self) -> &[u8] {
        match self.head.start_line {
            StartLine::Request { version, .. } | StartLine::Response { version, .. } => {
                self.slice(version)
            }
        }
    }

    /// The value of the first field named `name`.
    #[inline]
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        self.head.find(name).map(|e| self.slice(e.value()))
    }

    /// The values of every field named `name` (one per line, not split at
    /// commas; see [`Message::values`]).
    pub fn headers(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        self.head
            .entries()
            .iter()
            .filter(move |e| e.name == name)
            .map(move |e| self.slice(e.value()))
    }

    /// Every comma-separated value of every field named `name`, in order
    /// (RFC 3261 §7.3.1: `Via: a, b` equals two Via lines).
    pub fn values(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<&[u8], scan::Unbalanced>> + '_ {
        self.headers(name).flat_map(scan::CommaSplit::new)
    }

    /// Every field, as `(name, name as written, value)`.
    pub fn fields(&self) -> impl Iterator<Item = (HeaderName, &[u8], &[u8])> + '_ {
        self.head.entries().iter().map(move |e| {
            let l = e.line as usize;
            (
                e.name,
                &self.buf[l..l + e.name_len as usize],
                self.slice(e.value()),
            )
        })
    }

    /// The value of the first field whose name (as written) equals `name`,
    /// case-insensitively; for headers Tandem does not know by name.
    pub fn header_by_name(&self, name: &[u8]) -> Option<&[u8]> {
        let known = HeaderName::from_bytes(name);
        self.fields()
            .find(|&(h, n, _)| {
                h == known && (known != HeaderName::Other || n.eq_ignore_ascii_case(name))
            })
            .map(|(_, _, v)| v)
    }

    /// The body.
    #[inline]
    pub fn body(&self) -> &[u8] {
        self.slice(self.head.body)
    }

    /// The body as a zero-copy [`Bytes`].
    pub fn body_bytes(&self) -> Bytes {
        self.buf.slice(self.head.body.range())
    }
}
