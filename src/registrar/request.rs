//! Decoding a REGISTER into an [`Update`].
//!
//! The message has already passed [`crate::sip::validate`], so its Contact,
//! Expires, Call-ID and CSeq headers are well-formed; decoding still
//! refuses rather than panics if they are not, so it is safe on any
//! message.
//!
//! Contact headers may repeat and each may hold a comma-separated list
//! (RFC 3261 §7.3.1); every value becomes one [`ContactSpec`]. A contact's
//! URI is kept exactly as sent, without the `<>` and without the header
//! parameters that follow them (RFC 4475 `cparam01`: `;unknownparam` after
//! an addr-spec belongs to the header, not the URI; `cparam02`: inside `<>`
//! it belongs to the URI and stays; `regescrt`: an escaped `?Route=` header
//! stays), because it becomes the Request-URI of calls to the binding.

use crate::proxy::Peer;
use crate::sip::{parse_expires, CSeq, Contact, HeaderName, Message, Uri};

use super::{ContactSpec, Update, UpdateError};

/// What [`contacts`] reads from a REGISTER: its contacts (empty: a fetch),
/// the Expires header, the Call-ID and the CSeq number.
pub type Parts<'m> = (Vec<ContactSpec<'m>>, Option<u32>, &'m str, u32);

/// The parts of a REGISTER the registrar needs (see [`Parts`]); the AoR,
/// source, transport, connection and worker are the caller's to fill in
/// (or use [`decode`]).
pub fn contacts(msg: &Message) -> Result<Parts<'_>, UpdateError> {
    let mut specs = Vec::new();
    for v in msg.values(HeaderName::Contact) {
        let v = v.map_err(|_| UpdateError::Invalid("Malformed Contact header"))?;
        let c = Contact::parse(v).map_err(|_| UpdateError::Invalid("Malformed Contact header"))?;
        specs.push(match c {
            Contact::Wildcard => ContactSpec::Wildcard,
            Contact::Addr(a) => {
                // A binding is called through its URI: a scheme Tandem cannot
                // send a request to (RFC 4475 `unksm2`'s `name:`) is refused.
                match Uri::parse(a.uri) {
                    // Reached only over TLS (RFC 3261 §26.2.2), which this
                    // switch does not offer: calls to it could not be made.
                    Ok(Uri::Sip(u))
                        if u.secure
                            || u.params
                                .get(b"transport")
                                .flatten()
                                .is_some_and(|t| t.eq_ignore_ascii_case(b"tls")) =>
                    {
                        return Err(UpdateError::Invalid("Contact needs TLS (not offered)"));
                    }
                    Ok(Uri::Sip(_)) => {}
                    _ => return Err(UpdateError::Invalid("Contact URI is not sip")),
                }
                let uri = std::str::from_utf8(a.uri)
                    .map_err(|_| UpdateError::Invalid("Malformed Contact header"))?;
                ContactSpec::Uri {
                    uri,
                    expires: c.expires(),
                    q: c.q(),
                }
            }
        });
    }
    let expires = match msg.header(HeaderName::Expires) {
        Some(v) => Some(parse_expires(v).ok_or(UpdateError::Invalid("Malformed Expires header"))?),
        None => None,
    };
    let call_id = msg
        .header(HeaderName::CallId)
        .and_then(|v| std::str::from_utf8(v).ok())
        .ok_or(UpdateError::Invalid("Missing Call-ID header"))?;
    let cseq = msg
        .header(HeaderName::CSeq)
        .and_then(CSeq::parse)
        .ok_or(UpdateError::Invalid("Malformed CSeq header"))?;
    Ok((specs, expires, call_id, cseq.seq))
}

/// Decodes a REGISTER from `peer`, received by `worker`, for the
/// (authenticated) address of record `aor`.
pub fn decode<'m>(
    msg: &'m Message,
    aor: &'m str,
    peer: Peer,
    worker: u16,
) -> Result<Update<'m>, UpdateError> {
    let (contacts, expires, call_id, cseq) = contacts(msg)?;
    Ok(Update {
        aor,
        contacts,
        expires,
        call_id,
        cseq,
        source: peer.addr,
        transport: peer.transport,
        conn: peer.conn,
        worker,
    })
}
