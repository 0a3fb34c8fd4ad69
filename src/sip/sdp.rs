//! Codec filtering of an SDP body (RFC 4566): keep only the payload types
//! whose encoding is allowed, everything else byte for byte.
//!
//! For each `m=` line, each payload type is named by its `a=rtpmap` line
//! in that media section, or, for static payload types without one, by the
//! RFC 3551 table. Payload types not allowed are removed from the `m=`
//! line together with their `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines.
//! Names compare case-insensitively (`pcma` = `PCMA`). A media section left
//! without any allowed payload type is disabled (port 0, one format kept so
//! the line stays valid, RFC 3264 §6); sections already at port 0 are left
//! alone. Only when no usable section remains is the offer unacceptable
//! ([`Filtered::NothingLeft`]: the caller answers 488). In a multipart
//! body (SIP-I/SIP-T: SDP beside ISUP) each `application/sdp` part is
//! filtered so ([`filter_multipart`]), the rest kept byte for byte.

/// A list of codec names (shared: a friend's list is built once, with the
/// routing table, and every call's rewrite only counts a reference).
pub type Codecs = std::sync::Arc<[Box<str>]>;

/// The outcome of [`filter_codecs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every payload type was allowed: send the body as it is.
    Unchanged,
    /// The filtered body.
    Changed(Vec<u8>),
    /// A media section has no allowed payload type left.
    NothingLeft,
}

/// The encoding name of a static RTP payload type (RFC 3551 §6).
fn static_name(pt: u32) -> Option<&'static str> {
    Some(match pt {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        5 | 6 => "DVI4",
        7 => "LPC",
        8 => "PCMA",
        9 => "G722",
        10 | 11 => "L16",
        12 => "QCELP",
        13 => "CN",
        14 => "MPA",
        15 => "G728",
        16 | 17 => "DVI4",
        18 => "G729",
        25 => "CelB",
        26 => "JPEG",
        28 => "nv",
        31 => "H261",
        32 => "MPV",
        33 => "MP2T",
        34 => "H263",
        _ => return None,
    })
}

/// `a=<attr>:<pt> ...` → `pt`, for the per-payload-type attributes.
fn attr_pt(line: &[u8]) -> Option<u32> {
    let rest = [&b"a=rtpmap:"[..], b"a=fmtp:", b"a=rtcp-fb:"]
        .iter()
        .find_map(|p| line.strip_prefix(*p))?;
    let end = rest
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// `a=rtpmap:<pt> <name>/...` → `(pt, name)`.
fn rtpmap(line: &[u8]) -> Option<(u32, &[u8])> {
    let rest = line.strip_prefix(b"a=rtpmap:")?;
    let sp = rest.iter().position(|&c| c == b' ')?;
    let pt = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
    let enc = &rest[sp + 1..];
    let end = enc.iter().position(|&c| c == b'/').unwrap_or(enc.len());
    Some((pt, enc[..end].trim_ascii()))
}

/// Splits `body` into lines, each with its line ending.
fn lines(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &c) in body.iter().enumerate() {
        if c == b'\n' {
            out.push(&body[start..=i]);
            start = i + 1;
        }
    }
    if start < body.len() {
        out.push(&body[start..]);
    }
    out
}

fn content(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Keeps only the payload types whose encoding name is in `allowed`.
pub fn filter_codecs<S: AsRef<str>>(body: &[u8], allowed: &[S]) -> Filtered {
    let is_allowed = |name: &[u8]| {
        allowed
            .iter()
            .any(|a| a.as_ref().as_bytes().eq_ignore_ascii_case(name))
    };
    let ls = lines(body);
    // Media sections: [start, end) line ranges beginning with `m=`.
    let mut sections: Vec<(usize, usize)> = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        if l.starts_with(b"m=") {
            if let Some(last) = sections.last_mut() {
                last.1 = i;
            }
            sections.push((i, ls.len()));
        }
    }
    if sections.is_empty() {
        return Filtered::Unchanged;
    }
    let mut drop_line = vec![false; ls.len()];
    let mut new_m: Vec<Option<Vec<u8>>> = vec![None; ls.len()];
    let mut changed = false;
    // Media sections still usable after filtering.
    let mut active = 0;
    for &(start, end) in &sections {
        let m = content(ls[start]);
        // m=<media> <port> <proto> <fmt> ...
        let fields: Vec<&[u8]> = m.split(|&c| c == b' ').filter(|f| !f.is_empty()).collect();
        if fields.len() < 4 {
            continue;
        }
        let proto = fields[2];
        if !proto.starts_with(b"RTP/") && !proto.starts_with(b"UDP/TLS/RTP/") {
            active += 1;
            continue; // not RTP payload types (e.g. an image/T.38 stream)
        }
        if fields[1] == b"0" {
            continue; // a stream refused or disabled already: left alone
        }
        let names: Vec<(u32, &[u8])> = ls[start + 1..end]
            .iter()
            .filter_map(|l| rtpmap(content(l)))
            .collect();
        let mut kept = Vec::new();
        // Kept formats that carry voice: telephone-event (RFC 4733) and
        // comfort noise (RFC 3389) alone make no call.
        let mut voice = 0;
        let mut removed = Vec::new();
        for f in &fields[3..] {
            let Some(pt) = std::str::from_utf8(f)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                kept.push(*f);
                voice += 1;
                continue;
            };
            let name = names
                .iter()
                .find(|(p, _)| *p == pt)
                .map(|(_, n)| *n)
                .or_else(|| static_name(pt).map(str::as_bytes));
            if name.is_some_and(is_allowed) {
                kept.push(*f);
                voice += usize::from(!name.is_some_and(|n| {
                    n.eq_ignore_ascii_case(b"telephone-event") || n.eq_ignore_ascii_case(b"CN")
                }));
            } else {
                removed.push(pt);
            }
        }
        if removed.is_empty() && voice > 0 {
            active += 1;
            continue;
        }
        changed = true;
        let mut line;
        if voice == 0 {
            // Nothing allowed in this stream (or only DTMF and comfort
            // noise): disabled (port 0, RFC 3264 §6), keeping one format so
            // the line stays well-formed.
            line = [fields[0], b"0", fields[2], fields[3]].join(&b' ');
            let ending = &ls[start][m.len()..];
            line.extend_from_slice(ending);
            new_m[start] = Some(line);
            continue;
        }
        active += 1;
        line = fields[..3].join(&b' ');
        for k in &kept {
            line.push(b' ');
            line.extend_from_slice(k);
        }
        let ending = &ls[start][m.len()..];
        line.extend_from_slice(ending);
        new_m[start] = Some(line);
        for (j, l) in ls.iter().enumerate().take(end).skip(start + 1) {
            if attr_pt(content(l)).is_some_and(|pt| removed.contains(&pt)) {
                drop_line[j] = true;
            }
        }
    }
    if !changed {
        return Filtered::Unchanged;
    }
    if active == 0 {
        return Filtered::NothingLeft;
    }
    let mut out = Vec::with_capacity(body.len());
    for (i, l) in ls.iter().enumerate() {
        if drop_line[i] {
            continue;
        }
        match &new_m[i] {
            Some(m) => out.extend_from_slice(m),
            None => out.extend_from_slice(l),
        }
    }
    Filtered::Changed(out)
}

/// [`filter_codecs`] for the SDP parts of a multipart body (RFC 2046 §5.1)
/// with delimiter `boundary`: SIP-I and SIP-T carry the SDP beside an ISUP
/// part (RFC 3204), as many carriers send it. Every other byte, the other
/// parts and the delimiters included, is kept. [`Filtered::NothingLeft`]
/// when every SDP part has nothing left (an alternative may be usable).
pub fn filter_multipart<S: AsRef<str>>(body: &[u8], boundary: &[u8], allowed: &[S]) -> Filtered {
    if boundary.is_empty() {
        return Filtered::Unchanged;
    }
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    // Delimiter lines: `--boundary` at the start of a line.
    let starts: Vec<usize> = memchr::memmem::find_iter(body, &delim)
        .filter(|&at| at == 0 || body[at - 1] == b'\n')
        .collect();
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    // SDP parts, and those with nothing left (multipart/alternative may
    // offer a usable one beside them).
    let (mut sdp_parts, mut empty_parts) = (0, 0);
    for pair in starts.windows(2) {
        let (open, close) = (pair[0], pair[1]);
        // The part: after the delimiter line, up to the line break that
        // belongs to the next delimiter.
        let Some(eol) = memchr::memchr(b'\n', &body[open..close]) else {
            continue;
        };
        let part_start = open + eol + 1;
        let mut part_end = close;
        if part_end > part_start && body[part_end - 1] == b'\n' {
            part_end -= 1;
            if part_end > part_start && body[part_end - 1] == b'\r' {
                part_end -= 1;
            }
        }
        let part = &body[part_start..part_end];
        // Its headers end at the first empty line (none: it starts with one).
        let head = lines(part);
        let Some(head_len) = head.iter().position(|l| content(l).is_empty()) else {
            continue;
        };
        let is_sdp = head[..head_len].iter().any(|l| {
            let l = content(l);
            let Some(colon) = memchr::memchr(b':', l) else {
                return false;
            };
            crate::sip::scan::trim(&l[..colon]).eq_ignore_ascii_case(b"content-type")
                && super::ContentType::parse(&l[colon + 1..])
                    .is_some_and(|c| c.is("application", "sdp"))
        });
        if !is_sdp {
            continue;
        }
        let body_at = part_start + head[..=head_len].iter().map(|l| l.len()).sum::<usize>();
        sdp_parts += 1;
        match filter_codecs(&body[body_at..part_end], allowed) {
            Filtered::Unchanged => {}
            Filtered::NothingLeft => empty_parts += 1,
            Filtered::Changed(new) => edits.push((body_at, part_end, new)),
        }
    }
    if empty_parts > 0 && empty_parts == sdp_parts {
        return Filtered::NothingLeft;
    }
    if edits.is_empty() {
        return Filtered::Unchanged;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    for (start, end, new) in edits {
        out.extend_from_slice(&body[at..start]);
        out.extend_from_slice(&new);
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    Filtered::Changed(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 8 0 18 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:18 G729/8000\r\n\
        a=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";

    #[test]
    fn keeps_allowed_static_and_dynamic_types() {
        let Filtered::Changed(out) =
            filter_codecs(OFFER.as_bytes(), &["pcma", "PCMU", "telephone-event"])
        else {
            panic!("expected a change")
        };
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("m=audio 4000 RTP/AVP 8 0 101\r\n"), "{out}");
        assert!(!out.contains("G729") && !out.contains("annexb"), "{out}");
        assert!(out.contains("a=fmtp:101 0-16\r\n") && out.contains("a=sendrecv\r\n"));
        assert!(out.starts_with("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"));
    }

    #[test]
    fn unchanged_and_nothing_left() {
        assert_eq!(
            filter_codecs(
                OFFER.as_bytes(),
                &["PCMA", "PCMU", "G729", "telephone-event"]
            ),
            Filtered::Unchanged
        );
        assert_eq!(
            filter_codecs(OFFER.as_bytes(), &["G722"]),
            Filtered::NothingLeft
        );
        assert_eq!(filter_codecs(b"v=0\r\n", &["PCMA"]), Filtered::Unchanged);
    }

    /// RFC 4733 telephone-event (and comfort noise) alone is no codec: an
    /// offer left with only those has nothing to talk with.
    #[test]
    fn dtmf_alone_is_nothing_left() {
        let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                     m=audio 4000 RTP/AVP 18 101 13\r\na=rtpmap:18 G729/8000\r\n\
                     a=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(
            filter_codecs(offer.as_bytes(), &["PCMA", "telephone-event", "CN"]),
            Filtered::NothingLeft
        );
        assert!(matches!(
            filter_codecs(offer.as_bytes(), &["G729", "PCMA"]),
            Filtered::Changed(_)
        ));
        // The same when nothing had to be removed: DTMF alone is no call.
        let dtmf = "v=0\r\nm=audio 4000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(
            filter_codecs(dtmf.as_bytes(), &["PCMA", "telephone-event"]),
            Filtered::NothingLeft
        );
    }

    /// multipart/alternative: one SDP with nothing left beside a usable
    /// one is no reason to refuse the offer.
    #[test]
    fn one_usable_alternative_is_enough() {
        let part = |pt: u32, name: &str| {
            format!(
                "--alt\r\nContent-Type: application/sdp\r\n\r\n\
                 v=0\r\nm=audio 4000 RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\n\r\n"
            )
        };
        let body = format!("{}{}--alt--\r\n", part(18, "G729"), part(8, "PCMA"));
        assert_eq!(
            filter_multipart(body.as_bytes(), b"alt", &["PCMA"]),
            Filtered::Unchanged
        );
        assert_eq!(
            filter_multipart(body.as_bytes(), b"alt", &["G722"]),
            Filtered::NothingLeft
        );
    }

    /// SIP-I: the SDP part of a multipart/mixed body is filtered, the ISUP
    /// part and the delimiters kept byte for byte.
    #[test]
    fn the_sdp_part_of_a_multipart_body_is_filtered() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                   m=audio 4000 RTP/AVP 18 8 101\r\na=rtpmap:18 G729/8000\r\n\
                   a=rtpmap:101 telephone-event/8000\r\n";
        let body = format!(
            "--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n\
             --unique-boundary-1\r\nContent-Type: application/ISUP;version=itu-t92+\r\n\
             Content-Disposition: signal;handling=optional\r\n\r\n\x01\x00\x49\x00\r\n\
             --unique-boundary-1--\r\n"
        );
        let allowed = ["PCMA", "telephone-event"];
        let Filtered::Changed(out) =
            filter_multipart(body.as_bytes(), b"unique-boundary-1", &allowed)
        else {
            panic!("expected a change")
        };
        let Filtered::Changed(filtered) = filter_codecs(sdp.as_bytes(), &allowed) else {
            panic!("expected a change")
        };
        let want = body.replace(sdp, std::str::from_utf8(&filtered).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert!(want.contains("m=audio 4000 RTP/AVP 8 101\r\n"), "{want}");
        assert_eq!(
            filter_multipart(body.as_bytes(), b"unique-boundary-1", &["G722"]),
            Filtered::NothingLeft
        );
        assert_eq!(
            filter_multipart(body.as_bytes(), b"other", &["G722"]),
            Filtered::Unchanged
        );
    }
}
