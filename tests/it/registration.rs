//! Registration and digest authentication on the wire: SIPp registering
//! with MD5, and a small phone of our own (raw UDP or TCP) for what SIPp cannot
//! do: SHA-256 digest, being called at its binding, replaying a nonce,
//! comparing challenges byte by byte, being banned.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use tandem::auth::{digest_response, Algorithm};

use crate::wire::{
    carrier_calls_expecting, carrier_dials, md5_only, scenario, status_of, uac, uac_auth,
    uac_auth_as, uac_auth_with, uac_error, write_scenario, Sipp, Switch, TempDir, ALICE_DDI,
    BRANCH_DDI,
};

const DOMAIN: &str = "acme.example.com";

/// A SIP phone on a UDP socket of its own, or on a TCP connection to the
/// switch.
struct Phone {
    sock: UdpSocket,
    /// Set: the phone speaks over this connection (and what it has read
    /// but not yet taken as a message); its UDP socket is unused.
    tcp: Option<RefCell<(TcpStream, Vec<u8>)>>,
    switch: SocketAddr,
    cseq: u32,
    call_id: String,
    /// The address the phone believes it has (behind NAT: a private one),
    /// written in the Contact of its answers; `None`: its socket's.
    private: Option<String>,
    /// On TCP, its answers' Contact omits `;transport=tcp` (as SIPp's and
    /// many PBXs' do).
    plain_contact: bool,
    /// The company domain it registers in.
    domain: &'static str,
}

/// A received message, as text.
struct Msg(String);

impl Msg {
    fn status(&self) -> u16 {
        status_of(self.0.as_bytes())
    }

    fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers(name).next()
    }

    fn headers<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.split("\r\n").filter_map(move |l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Header names in order, for comparing the shape of two answers.
    fn shape(&self) -> Vec<String> {
        self.0
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
            .collect()
    }

    fn first_line(&self) -> &str {
        self.0.split("\r\n").next().unwrap_or("")
    }
}

/// `name="value"` or `name=value` from a challenge or credentials value.
fn param<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    v.split(',').find_map(|p| {
        let p = p.trim().trim_start_matches("Digest ").trim();
        let (n, val) = p.split_once('=')?;
        (n.trim() == name).then(|| val.trim().trim_matches('"'))
    })
}

impl Phone {
    fn new(ip: &str, switch: SocketAddr) -> Phone {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let call_id = format!("reg-{}@{}", std::process::id(), sock.local_addr().unwrap());
        Phone {
            sock,
            tcp: None,
            switch,
            cseq: 0,
            call_id,
            private: None,
            plain_contact: false,
            domain: DOMAIN,
        }
    }

    /// A phone (or a friend's PBX) listening at `addr`.
    fn at(addr: &str, switch: SocketAddr) -> Phone {
        let mut p = Phone::new("127.0.0.1", switch);
        p.sock = UdpSocket::bind(addr).unwrap();
        p.sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        p
    }

    /// A phone on a TCP connection to the switch.
    fn new_tcp(switch: SocketAddr) -> Phone {
        let mut p = Phone::new("127.0.0.1", switch);
        let c = TcpStream::connect(switch).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        p.call_id = format!("reg-tcp-{}@{}", std::process::id(), c.local_addr().unwrap());
        p.tcp = Some(RefCell::new((c, Vec::new())));
        p
    }

    fn local(&self) -> SocketAddr {
        match &self.tcp {
            Some(c) => c.borrow().0.local_addr().unwrap(),
            None => self.sock.local_addr().unwrap(),
        }
    }

    /// The transport as a Via names it.
    fn transport(&self) -> &'static str {
        if self.tcp.is_some() {
            "TCP"
        } else {
            "UDP"
        }
    }

    fn send(&self, text: &str) {
        match &self.tcp {
            Some(c) => c.borrow_mut().0.write_all(text.as_bytes()).unwrap(),
            None => {
                self.sock.send_to(text.as_bytes(), self.switch).unwrap();
            }
        }
    }

    /// The next message received, waiting at most one read timeout.
    fn recv_one(&self) -> Option<Msg> {
        let Some(c) = &self.tcp else {
            let mut buf = vec![0u8; 65535];
            let (n, _) = self.sock.recv_from(&mut buf).ok()?;
            return Some(Msg(String::from_utf8_lossy(&buf[..n]).into_owned()));
        };
        let (stream, pending) = &mut *c.borrow_mut();
        loop {
            // Framed by the blank line and Content-Length (RFC 3261 §18.3).
            while pending.starts_with(b"\r\n") {
                pending.drain(..2);
            }
            let text = String::from_utf8_lossy(pending).into_owned();
            if let Some(head) = text.find("\r\n\r\n") {
                let body = text[..head]
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        let n = n.trim();
                        (n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let end = head + 4 + body;
                if pending.len() >= end {
                    let m: Vec<u8> = pending.drain(..end).collect();
                    return Some(Msg(String::from_utf8_lossy(&m).into_owned()));
                }
            }
            let mut buf = [0u8; 8192];
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// The next message within `limit` that `want` accepts (others, such as
    /// 100 Trying, are skipped).
    fn recv_where(&self, limit: Duration, want: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(m) = self.recv_one() {
                if want(&m) {
                    return Some(m);
                }
            }
        }
        None
    }

    /// The final response to our last request, if one comes in time.
    fn final_response(&self) -> Option<Msg> {
        self.recv_where(Duration::from_secs(2), |m| {
            m.0.starts_with("SIP/2.0") && m.status() >= 200
        })
    }

    /// Sends a REGISTER for `user` with `extra` header lines; a new branch
    /// and the next CSeq each time.
    fn register_raw(&mut self, user: &str, contact: &str, extra: &str) -> Option<Msg> {
        self.cseq += 1;
        let local = self.local();
        let text = format!(
            "REGISTER sip:{domain} SIP/2.0\r\n\
             Via: SIP/2.0/{transport} {local};branch=z9hG4bK-ph{cseq}x{port};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{domain}>;tag=ph{port}\r\n\
             To: <sip:{user}@{domain}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             {contact}{extra}{expires}\
             Content-Length: 0\r\n\r\n",
            cseq = self.cseq,
            domain = self.domain,
            transport = self.transport(),
            port = local.port(),
            call_id = self.call_id,
            // No Contact: a fetch of the current bindings (RFC 3261 §10.2.3).
            contact = if contact.is_empty() {
                String::new()
            } else {
                format!("Contact: {contact}\r\n")
            },
            expires = match contact {
                "" => "",
                "*" => "Expires: 0\r\n",
                _ => "Expires: 600\r\n",
            },
        );
        self.send(&text);
        self.final_response()
    }

    /// Credentials answering `challenge` (a WWW-Authenticate value).
    fn credentials(user: &str, password: &str, challenge: &str, nc: &str) -> String {
        let alg = Algorithm::parse(param(challenge, "algorithm").unwrap_or("MD5")).unwrap();
        let nonce = param(challenge, "nonce").unwrap();
        let realm = param(challenge, "realm").unwrap_or(DOMAIN);
        let uri = format!("sip:{realm}");
        let cnonce = "0a4f113b";
        let response = digest_response(
            alg, user, realm, password, "REGISTER", &uri, nonce, nc, cnonce,
        );
        format!(
            "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
            alg.as_str()
        )
    }

    /// Registers with the first challenge's algorithm (SHA-256 in the demo
    /// configuration); returns the challenge used and the 200.
    fn register(&mut self, user: &str, password: &str) -> (String, Msg) {
        let contact = format!("<sip:{user}@{}>", self.local());
        self.register_with(user, password, &contact)
    }

    /// Registers `contact` (which may name another address: a phone behind
    /// NAT writes its private one).
    fn register_with(&mut self, user: &str, password: &str, contact: &str) -> (String, Msg) {
        let contact = contact.to_owned();
        let r = self.register_raw(user, &contact, "").expect("challenge");
        assert_eq!(r.status(), 401, "{}", r.0);
        let challenge = r.header("WWW-Authenticate").unwrap().to_owned();
        let creds = Self::credentials(user, password, &challenge, "00000001");
        let ok = self
            .register_raw(user, &contact, &format!("Authorization: {creds}\r\n"))
            .expect("answer to credentials");
        (challenge, ok)
    }

    /// Answers an INVITE (180 then 200), its ACK, and later the BYE; returns
    /// the INVITE. Keep-alive OPTIONS met meanwhile are answered.
    fn answer_call(&self, limit: Duration) -> Option<Msg> {
        let invite = self.recv_where(limit, |m| {
            if m.0.starts_with("OPTIONS ") {
                self.reply(m, 200, "OK");
            }
            m.0.starts_with("INVITE ")
        })?;
        self.reply(&invite, 180, "Ringing");
        self.reply(&invite, 200, "OK");
        self.end_call()?;
        Some(invite)
    }

    /// After answering a call: takes the caller's ACK, then its BYE, and
    /// answers the BYE. `None` if either does not come in time.
    fn end_call(&self) -> Option<()> {
        self.recv_where(Duration::from_secs(5), |m| m.0.starts_with("ACK "))?;
        let bye = self.recv_where(Duration::from_secs(5), |m| m.0.starts_with("BYE "))?;
        self.reply(&bye, 200, "OK");
        Some(())
    }

    /// A response to `req` sent back to the switch (RFC 3261 §8.2.6).
    fn reply(&self, req: &Msg, code: u16, reason: &str) {
        let mut out = format!("SIP/2.0 {code} {reason}\r\n");
        for name in ["Via", "Record-Route"] {
            for v in req.headers(name) {
                out.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        for name in ["From", "Call-ID", "CSeq"] {
            out.push_str(&format!("{name}: {}\r\n", req.header(name).unwrap_or("")));
        }
        let to = req.header("To").unwrap_or("");
        if to.contains(";tag=") || code == 100 {
            out.push_str(&format!("To: {to}\r\n"));
        } else {
            out.push_str(&format!("To: {to};tag=phone1\r\n"));
        }
        let me = self
            .private
            .clone()
            .unwrap_or_else(|| self.local().to_string());
        let transport = if self.tcp.is_some() && !self.plain_contact {
            ";transport=tcp"
        } else {
            ""
        };
        out.push_str(&format!("Contact: <sip:phone@{me}{transport}>\r\n"));
        out.push_str("Content-Length: 0\r\n\r\n");
        self.send(&out);
    }
}

/// The demo with a DDI for the register-mode friend `legacy`.
fn with_legacy_ddi(c: String) -> String {
    c.replace(
        "  [[company.ddi]]\n  number = \"+34944000200\"",
        "  [[company.ddi]]\n  number = \"+34944000300\"\n  friend = \"legacy\"\n\n  \
         [[company.ddi]]\n  number = \"+34944000200\"",
    )
    .replace("keepalive_s = 30", "keepalive_s = 1")
}

/// SIPp registers with MD5 digest: 401 with the challenge, then 200 OK
/// listing the binding with its lifetime (checked by the scenario).
#[test]
fn sipp_registers_with_md5_digest() {
    let sw = Switch::start_with("reg-sipp", 21600, md5_only);
    let reg = Sipp::spawn(&[
        &sw.addr().to_string(),
        "-sf",
        scenario("register.xml").to_str().unwrap(),
        "-i",
        "127.0.0.1",
        "-au",
        "legacy",
        "-ap",
        "Legacy-Secret-88",
        "-key",
        "aor_user",
        "legacy",
        "-key",
        "domain",
        DOMAIN,
        "-key",
        "expires",
        "600",
        "-m",
        "3",
    ]);
    assert_eq!(
        reg.wait(Duration::from_secs(20)),
        0,
        "SIPp registration failed"
    );
}

/// A register-mode friend: 480 before it registers; once registered with
/// digest, a carrier call to its DDI reaches its binding (the
/// number in the friend's format, keep-alive OPTIONS on the way); after a
/// kill -9 and restart the binding is still there and calls still arrive;
/// a friend's call routed by pattern reaches it too.
#[test]
fn registered_friend_is_called_at_its_binding_across_a_restart() {
    let mut sw = Switch::start_with("reg-call", 21700, |c| md5_only(with_legacy_ddi(c)));
    let dir = TempDir::new("reg-call-scenarios");
    let expect_480 = write_scenario(&dir.0, "uac480.xml", &uac_error(480));
    let switch = sw.addr();
    let carrier = |path: &std::path::Path| {
        uac(
            switch,
            "127.0.0.2",
            path,
            "+34944000300",
            "+34600111222",
            "pstn.example.net",
            1,
        )
    };
    assert_eq!(
        carrier(&expect_480).wait(Duration::from_secs(20)),
        0,
        "an unregistered friend is 480"
    );

    let mut pbx = Phone::new("127.0.0.1", sw.addr());
    let (_, ok) = pbx.register("legacy", "Legacy-Secret-88");
    assert_eq!(ok.status(), 200, "{}", ok.0);
    let bound = ok.header("Contact").unwrap();
    assert!(
        bound.starts_with(&format!("<sip:legacy@{}>;expires=", pbx.local())),
        "{bound}"
    );

    // Keep-alive OPTIONS (every second in this configuration).
    let ka = pbx.recv_where(Duration::from_secs(3), |m| m.0.starts_with("OPTIONS "));
    assert!(ka.is_some(), "no keep-alive OPTIONS to the binding");

    for round in 0..2 {
        let call = carrier(&scenario("uac.xml"));
        let invite = pbx
            .answer_call(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("round {round}: the call did not reach the binding"));
        assert_eq!(
            invite.first_line(),
            format!("INVITE sip:944000300@{} SIP/2.0", pbx.local()),
            "round {round}: Request-URI is the binding with the local number"
        );
        assert_eq!(
            call.wait(Duration::from_secs(20)),
            0,
            "round {round}: carrier side"
        );
        if round == 0 {
            sw.crash_and_restart();
        }
    }

    // Routed by pattern: the direct friend `branch` (SIPp, digest) dials
    // 3001, which only legacy's patterns match.
    let caller = uac_auth(switch, "3001", "branch", "Branch-Secret-77", 1);
    let invite = pbx
        .answer_call(Duration::from_secs(10))
        .expect("the pattern call did not reach the binding");
    assert_eq!(
        invite.first_line(),
        format!("INVITE sip:3001@{} SIP/2.0", pbx.local())
    );
    assert!(
        invite.header("Proxy-Authorization").is_none(),
        "our realm's credentials were forwarded"
    );
    // Friend → friend: the caller's number (branch presents only its
    // name: its fallback DDI) in legacy's local format, at legacy's
    // from_domain.
    assert!(
        invite
            .header("From")
            .unwrap()
            .starts_with("<sip:944000200@pbx.legacy.example>;tag="),
        "{}",
        invite.0
    );
    assert_eq!(caller.wait(Duration::from_secs(20)), 0, "caller side");
}

/// Unknown user and wrong password get the same answer; a replayed nonce
/// count and a forged nonce are refused; an expired nonce gets
/// `stale=true`; repeated failures ban the source (silence), and nobody
/// else.
#[test]
fn digest_attacks_get_nothing() {
    let sw = Switch::start_with("reg-attack", 21800, |c| {
        c.replace("nonce_lifetime_s = 300", "nonce_lifetime_s = 2")
            .replace("max_failures = 10", "max_failures = 4")
    });
    let mut phone = Phone::new("127.0.0.1", sw.addr());
    let (challenge, ok) = phone.register("alice-phone", "Correct-Horse-42");
    // The demo offers SHA-256 first; the phone answers it.
    assert!(challenge.contains("algorithm=SHA-256"), "{challenge}");
    assert_eq!(ok.status(), 200, "{}", ok.0);

    // Replay: the same credentials (same nonce, same nc) again.
    let contact = format!("<sip:alice-phone@{}>", phone.local());
    let creds = Phone::credentials("alice-phone", "Correct-Horse-42", &challenge, "00000001");
    let replay = phone
        .register_raw(
            "alice-phone",
            &contact,
            &format!("Authorization: {creds}\r\n"),
        )
        .unwrap();
    assert_eq!(replay.status(), 401, "replayed nc accepted");
    // A higher nc on the same nonce is fine.
    let creds = Phone::credentials("alice-phone", "Correct-Horse-42", &challenge, "00000002");
    let again = phone
        .register_raw(
            "alice-phone",
            &contact,
            &format!("Authorization: {creds}\r\n"),
        )
        .unwrap();
    assert_eq!(again.status(), 200, "nc 2 refused");

    // Stale: the nonce outlives its 2 s; the right password gets stale=true.
    std::thread::sleep(Duration::from_millis(3100));
    let creds = Phone::credentials("alice-phone", "Correct-Horse-42", &challenge, "00000003");
    let stale = phone
        .register_raw(
            "alice-phone",
            &contact,
            &format!("Authorization: {creds}\r\n"),
        )
        .unwrap();
    assert_eq!(stale.status(), 401);
    assert!(
        stale
            .headers("WWW-Authenticate")
            .all(|v| param(v, "stale") == Some("true")),
        "{}",
        stale.0
    );

    // Wrong password vs unknown user, from another address: same shape.
    let mut mallory = Phone::new("127.0.0.3", sw.addr());
    let probe = |m: &mut Phone, user: &str| {
        let contact = format!("<sip:{user}@{}>", m.local());
        let c = m.register_raw(user, &contact, "").unwrap();
        let ch = c.header("WWW-Authenticate").unwrap().to_owned();
        let creds = Phone::credentials(user, "guess", &ch, "00000001");
        m.register_raw(user, &contact, &format!("Authorization: {creds}\r\n"))
    };
    let wrong = probe(&mut mallory, "alice-phone").unwrap();
    let unknown = probe(&mut mallory, "nobody").unwrap();
    assert_eq!((wrong.status(), unknown.status()), (401, 401));
    assert_eq!(wrong.first_line(), unknown.first_line());
    assert_eq!(wrong.shape(), unknown.shape());
    let names = |m: &Msg| -> Vec<Vec<String>> {
        m.headers("WWW-Authenticate")
            .map(|v| {
                v.trim_start_matches("Digest ")
                    .split(", ")
                    .map(|p| p.split('=').next().unwrap().to_owned())
                    .collect()
            })
            .collect()
    };
    assert_eq!(names(&wrong), names(&unknown));

    // A forged nonce is refused, but not counted: it proves no round trip
    // with the source, which may be forged too. Real guesses count: the
    // third is answered, the fourth bans.
    let forged = challenge.replace("nonce=\"", "nonce=\"x");
    let creds = Phone::credentials("alice-phone", "Correct-Horse-42", &forged, "00000001");
    let contact = format!("<sip:alice-phone@{}>", mallory.local());
    let r = mallory
        .register_raw(
            "alice-phone",
            &contact,
            &format!("Authorization: {creds}\r\n"),
        )
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(probe(&mut mallory, "carol").is_some(), "the 3rd failure");
    assert!(
        probe(&mut mallory, "bob").is_none(),
        "the 4th failure is answered"
    );
    // Banned: silence, even for a request without credentials.
    assert!(
        mallory.register_raw("alice-phone", &contact, "").is_none(),
        "a banned source got an answer"
    );
    // The legitimate phone at another address is not affected.
    let (_, ok) = phone.register("alice-phone", "Correct-Horse-42");
    assert_eq!(ok.status(), 200);
}

/// SIGHUP applies `[registrar]` (keep-alive period included) and `[auth]`
/// changes; a configuration with an error changes nothing.
#[test]
fn a_reload_changes_registrar_and_auth_settings() {
    let sw = Switch::start("reg-reload", 22800);
    let mut phone = Phone::new("127.0.0.1", sw.addr());
    let contact = |p: &Phone| format!("<sip:alice-phone@{}>;expires=30", p.local());
    let c = contact(&phone);
    let (_, r) = phone.register_with("alice-phone", "Correct-Horse-42", &c);
    assert_eq!(r.status(), 423, "{}", r.0);
    assert_eq!(r.header("Min-Expires"), Some("60"));

    sw.reload_with(|c| c.replace("min_expires_s = 60", "min_expires_s = 20"));
    let (_, r) = phone.register_with("alice-phone", "Correct-Horse-42", &c);
    assert_eq!(
        r.status(),
        200,
        "the new min_expires_s is not in force: {}",
        r.0
    );

    // A configuration with an error: refused whole, the running settings
    // stay (30 s is still accepted, the algorithms still both offered).
    sw.reload_with(|c| {
        c.replace("min_expires_s = 20", "min_expires_s = 40")
            .replace(
                "algorithms = [\"SHA-256\", \"MD5\"]",
                "algorithms = [\"SHA-1\"]",
            )
    });
    let (challenge, r) = phone.register_with("alice-phone", "Correct-Horse-42", &c);
    assert_eq!(
        r.status(),
        200,
        "a bad configuration changed the limits: {}",
        r.0
    );
    assert!(challenge.contains("SHA-256"), "{challenge}");
    // Each problem on a log line of its own.
    let log = sw.log();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("reload refused: auth.algorithms[0]: unknown digest algorithm")),
        "{log}"
    );

    // An empty file (a non-atomic write racing the SIGHUP) is refused
    // too: alice's company is still there.
    let text = std::fs::read_to_string(sw.config_path()).unwrap();
    sw.reload_with(|_| String::new());
    assert!(sw.log().contains("no company configured"), "{}", sw.log());
    let (_, r) = phone.register_with("alice-phone", "Correct-Horse-42", &c);
    assert_eq!(
        r.status(),
        200,
        "the empty file replaced the table: {}",
        r.0
    );
    sw.reload_with(|_| text.clone());

    // [auth]: only MD5 offered from now on.
    sw.reload_with(|c| {
        c.replace("algorithms = [\"SHA-1\"]", "algorithms = [\"MD5\"]")
            .replace("min_expires_s = 40", "min_expires_s = 20")
    });
    let r = phone.register_raw("alice-phone", &c, "").unwrap();
    let offered: Vec<&str> = r.headers("WWW-Authenticate").collect();
    assert_eq!(offered.len(), 1, "{}", r.0);
    assert!(offered[0].contains("algorithm=MD5"), "{}", r.0);

    // registrar.keepalive_s: 30 s, so the binding gets no OPTIONS yet;
    // reloaded to 1 s, it gets them at once.
    let options = |limit| phone.recv_where(limit, |m| m.0.starts_with("OPTIONS "));
    assert!(
        options(Duration::from_millis(1500)).is_none(),
        "keep-alive before its time"
    );
    sw.reload_with(|c| c.replace("keepalive_s = 30", "keepalive_s = 1"));
    assert!(
        options(Duration::from_secs(4)).is_some(),
        "the reloaded keepalive_s is not in force"
    );
}

/// RFC 4475 cparam01/cparam02 after authentication: a contact parameter
/// is not part of the bound URI, a URI parameter is.
#[test]
fn contact_parameters_after_authentication() {
    let sw = Switch::start("reg-cparam", 21900);
    let mut phone = Phone::new("127.0.0.1", sw.addr());
    let (challenge, _) = phone.register("alice-phone", "Correct-Horse-42");
    let mut nc = 1;
    let mut bind = |contact: &str| {
        nc += 1;
        let creds = Phone::credentials(
            "alice-phone",
            "Correct-Horse-42",
            &challenge,
            &format!("{nc:08x}"),
        );
        let r = phone
            .register_raw(
                "alice-phone",
                contact,
                &format!("Authorization: {creds}\r\n"),
            )
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.0);
        r.headers("Contact").map(str::to_owned).collect::<Vec<_>>()
    };
    let c = bind("\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam = newvalue ; secondparam ; q = 0.33");
    assert!(
        c.iter()
            .any(|v| v.starts_with("<sip:jdrosen@example.com>;")),
        "{c:?}"
    );
    assert!(!c.iter().any(|v| v.contains("newparam")), "{c:?}");
    let c = bind("<sip:+1-972-555-2222@gw1.example.net;unknownparam>");
    assert!(
        c.iter()
            .any(|v| v.starts_with("<sip:+1-972-555-2222@gw1.example.net;unknownparam>")),
        "{c:?}"
    );
}

/// Friend → extension → user: the user's terminal is reached at its
/// binding (Request-URI = the registered contact).
#[test]
fn friend_calls_a_user_extension_at_its_binding() {
    let sw = Switch::start_with("reg-ext", 22400, md5_only);
    let mut phone = Phone::new("127.0.0.1", sw.addr());
    let (_, ok) = phone.register("alice-phone", "Correct-Horse-42");
    assert_eq!(ok.status(), 200, "{}", ok.0);
    let caller = uac_auth(sw.addr(), "101", "branch", "Branch-Secret-77", 1);
    let invite = phone
        .answer_call(Duration::from_secs(10))
        .expect("the call did not reach alice's binding");
    assert_eq!(
        invite.first_line(),
        format!("INVITE sip:alice-phone@{} SIP/2.0", phone.local())
    );
    assert_eq!(caller.wait(Duration::from_secs(20)), 0, "caller side");
}

/// A phone behind NAT: it registers and answers with its private address
/// in Contact. The call reaches it at the REGISTER's source, its 200's
/// Contact is fixed to that source, so the caller's ACK and BYE (routed
/// by that Contact through the switch) reach it too.
#[test]
fn a_phone_behind_nat_gets_its_whole_call() {
    let sw = Switch::start("reg-nat", 22500);
    let phone = Phone::new("127.0.0.1", sw.addr());
    call_the_phone_behind_nat(&sw, phone, "192.0.2.50:5060", "", 1);
}

/// The same phone behind NAT over TCP: it registers on its connection
/// with a private Contact, the carrier's call reaches it on that
/// connection, and its 200's Contact is fixed to name the connection
/// (`transport=tcp;tnat=<id>`), so the caller's ACK and BYE, routed by
/// that Contact through the switch, are written on the same connection
/// whichever worker receives them (a connect to the private address would
/// go nowhere). Three calls, each from a new SIPp port: the carrier's
/// INVITE, ACK and BYE land on whichever worker its port hashes to, the
/// connection lives on one.
#[test]
fn a_phone_behind_nat_on_tcp_gets_its_whole_call() {
    let sw = Switch::start("reg-nat-tcp", 22900);
    let phone = Phone::new_tcp(sw.addr());
    call_the_phone_behind_nat(&sw, phone, "192.0.2.50:5060", ";transport=tcp", 3);
}

/// A TCP phone not behind NAT whose Contacts name no transport (which
/// means UDP; SIPp writes them so): it takes no connection and listens on
/// no UDP port, so its in-dialog requests must come on its connection all
/// the same.
#[test]
fn a_tcp_phone_whose_contact_names_no_transport_gets_its_whole_call() {
    let sw = Switch::start("reg-tcp-plain", 23200);
    let mut phone = Phone::new_tcp(sw.addr());
    phone.plain_contact = true;
    call_the_phone_behind_nat(&sw, phone, "127.0.0.1:5999", "", 2);
}

/// Nothing is kept for a sender that has not authenticated (RFC 3261
/// §26.3.2.4): INVITEs with credentials the switch cannot use (an unknown
/// scheme, a forged digest) each get one 407 and no more. A kept
/// transaction would repeat its 407 from 500 ms on (Timer G) to an address
/// that may be spoofed, and hold memory for Timer H's 32 s: a flood of
/// them filled the transaction table (503 for everyone).
#[test]
fn unauthenticated_requests_get_one_stateless_challenge() {
    let sw = Switch::start("reg-stateless", 23900);
    let sock = UdpSocket::bind("127.0.0.5:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    for (n, auth) in [
        "Proxy-Authorization: NoOneKnowsThisScheme foo=bar",
        "Proxy-Authorization: Digest username=\"alice-phone\", realm=\"acme.example.com\", \
         nonce=\"forged\", uri=\"sip:2001@acme.example.com\", response=\"0123\", \
         algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"",
    ]
    .iter()
    .enumerate()
    {
        let text = format!(
            "INVITE sip:2001@acme.example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-sl{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice-phone@acme.example.com>;tag=sl{n}\r\n\
             To: <sip:2001@acme.example.com>\r\nCall-ID: sl{n}@probe\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:alice-phone@{local}>\r\n{auth}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        sock.send_to(text.as_bytes(), sw.addr()).unwrap();
        let mut buf = vec![0u8; 65535];
        let mut answers = Vec::new();
        let end = Instant::now() + Duration::from_millis(1800);
        while Instant::now() < end {
            if let Ok((len, _)) = sock.recv_from(&mut buf) {
                answers.push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
        }
        let challenges = answers
            .iter()
            .filter(|a| a.starts_with("SIP/2.0 407"))
            .count();
        assert_eq!(challenges, 1, "{answers:?}");
    }
}

/// A ban earned by forged requests from a direct friend's address (any
/// port: spoofing UDP is easy) silences requests from it, not the friend's
/// answers to a call the switch sent it: those still reach the caller.
#[test]
fn a_banned_address_still_answers_calls_sent_to_it() {
    let sw = Switch::start_with("reg-ban-answers", 24000, |c| {
        c.replace("max_failures = 10", "max_failures = 3")
    });
    // The direct friend `branch` lives at 127.0.0.1:24010.
    let friend = Phone::at("127.0.0.1:24010", sw.addr());
    let call = carrier_dials(&sw, BRANCH_DDI, &scenario("uac.xml"));
    let invite = friend
        .recv_where(Duration::from_secs(10), |m| m.0.starts_with("INVITE "))
        .expect("the call reaches the friend");
    // Three wrong passwords from the friend's address ban it.
    let mut guesser = Phone::new("127.0.0.1", sw.addr());
    for round in 0..3 {
        let contact = "<sip:x@127.0.0.1>";
        let r = guesser
            .register_raw("alice-phone", contact, "")
            .expect("challenge");
        let challenge = r.header("WWW-Authenticate").unwrap().to_owned();
        let creds = Phone::credentials("alice-phone", "wrong", &challenge, "00000001");
        let auth = format!("Authorization: {creds}\r\n");
        let answer = guesser.register_raw("alice-phone", contact, &auth);
        // The third failure bans: silence from then on.
        assert_eq!(answer.map(|a| a.status()), (round < 2).then_some(401));
    }
    // Each failure is one line fail2ban can match (docs/registrar.md), and
    // the ban one more.
    let log = sw.log();
    let failures = log
        .lines()
        .filter(|l| {
            l.contains("auth failure: user=\"alice-phone\" realm=\"acme.example.com\" source=127.0.0.1 reason=")
        })
        .count();
    assert_eq!(failures, 3, "{log}");
    assert!(
        log.contains("auth ban: source=127.0.0.1 for 900s after 3 failures"),
        "{log}"
    );
    // A log file gets plain text: no colour codes for fail2ban to trip on.
    assert!(!log.contains('\x1b'), "{log}");
    friend.reply(&invite, 180, "Ringing");
    friend.reply(&invite, 200, "OK");
    friend.end_call().expect("the caller's ACK and BYE");
    assert_eq!(call.wait(Duration::from_secs(20)), 0, "carrier side");
}

/// A direct friend behind static NAT answers with its private address in
/// Contact: the switch fixes it to where the answer came from, as it does
/// for requests, so the caller's ACK and BYE reach the friend (before, the
/// ACK was dropped and the BYE refused).
#[test]
fn a_friend_answering_with_a_private_contact_gets_the_whole_call() {
    let sw = Switch::start("reg-friend-nat", 24600);
    // The direct friend `branch` lives at 127.0.0.1:24610.
    let mut friend = Phone::at("127.0.0.1:24610", sw.addr());
    friend.private = Some("192.168.1.5:5060".into());
    let call = carrier_dials(&sw, BRANCH_DDI, &scenario("uac.xml"));
    friend
        .answer_call(Duration::from_secs(10))
        .expect("INVITE, ACK and BYE all reach the friend");
    assert_eq!(call.wait(Duration::from_secs(20)), 0, "carrier side");
}

/// A dialog's Route is no ticket to anywhere: the friend `branch` calls the
/// registered friend `legacy`, and `legacy`, holding the dialog's Route,
/// sends an "in-dialog" MESSAGE to a premium number at the carrier. The
/// carrier is no party of that dialog: 403 (before, the switch relayed it,
/// past the digest gate and the call ACL). The call itself still ends
/// normally through the switch.
#[test]
fn a_dialog_route_does_not_relay_to_a_third_party() {
    let sw = Switch::start_with("reg-relay", 23800, |c| md5_only(with_legacy_ddi(c)));
    let mut pbx = Phone::new("127.0.0.1", sw.addr());
    let (_, ok) = pbx.register("legacy", "Legacy-Secret-88");
    assert_eq!(ok.status(), 200, "{}", ok.0);
    let caller = uac_auth(sw.addr(), "3001", "branch", "Branch-Secret-77", 1);
    let invite = pbx
        .recv_where(Duration::from_secs(10), |m| m.0.starts_with("INVITE "))
        .expect("the call reaches legacy");
    pbx.reply(&invite, 180, "Ringing");
    pbx.reply(&invite, 200, "OK");

    let route = invite.header("Record-Route").expect("record-routed");
    let local = pbx.local();
    let forged = format!(
        "MESSAGE sip:+44900123456@127.0.0.2:5090 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-relay1;rport\r\n\
         Max-Forwards: 70\r\n\
         Route: {route}\r\n\
         From: {to};tag=phone1\r\n\
         To: {from}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 7 MESSAGE\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: 5\r\n\r\nhello",
        to = invite.header("To").unwrap(),
        from = invite.header("From").unwrap(),
        call_id = invite.header("Call-ID").unwrap(),
    );
    pbx.send(&forged);
    let answer = pbx
        .recv_where(Duration::from_secs(3), |m| m.0.contains("z9hG4bK-relay1"))
        .expect("an answer to the forged MESSAGE");
    assert_eq!(answer.status(), 403, "{}", answer.0);

    pbx.end_call().expect("the caller's ACK and BYE");
    assert_eq!(caller.wait(Duration::from_secs(20)), 0, "caller side");
}

/// Nonces are keyed with the secret kept in `data_dir`, but the replay
/// table is not kept: a challenge issued before a crash is answered after
/// the restart with `stale=true` (RFC 7616 §3.3: the phone logs in again
/// with the new nonce without asking its user, and it is no failure), not
/// trusted blindly, since its old nonce counts are forgotten.
#[test]
fn a_nonce_from_before_a_restart_is_stale_not_wrong() {
    let mut sw = Switch::start("reg-nonce-restart", 24300);
    let mut phone = Phone::new("127.0.0.1", sw.addr());
    let contact = format!("<sip:alice-phone@{}>", phone.local());
    let r = phone
        .register_raw("alice-phone", &contact, "")
        .expect("challenge");
    let challenge = r.header("WWW-Authenticate").unwrap().to_owned();
    sw.crash_and_restart();
    let creds = Phone::credentials("alice-phone", "Correct-Horse-42", &challenge, "00000001");
    let auth = format!("Authorization: {creds}\r\n");
    let stale = phone
        .register_raw("alice-phone", &contact, &auth)
        .expect("answer");
    assert_eq!(stale.status(), 401, "{}", stale.0);
    let fresh = stale.header("WWW-Authenticate").unwrap().to_owned();
    assert!(fresh.contains("stale=true"), "{fresh}");
    let creds = Phone::credentials("alice-phone", "Correct-Horse-42", &fresh, "00000001");
    let auth = format!("Authorization: {creds}\r\n");
    let ok = phone
        .register_raw("alice-phone", &contact, &auth)
        .expect("answer");
    assert_eq!(ok.status(), 200, "{}", ok.0);
    assert!(!sw.log().contains("auth failure"), "{}", sw.log());
}

/// Removing bindings on the wire (RFC 3261 §10.2.2): one contact with
/// `expires=0`, then all with `Contact: *` and `Expires: 0`; each 200 lists
/// what is left, the removal survives a crash, and a call then finds no one
/// (480).
#[test]
fn bindings_are_removed_one_by_one_or_all_at_once_and_stay_removed() {
    let mut sw = Switch::start("reg-remove", 23600);
    let mut phone = Phone::new("127.0.0.1", sw.addr());
    let here = format!("<sip:alice-phone@{}>", phone.local());
    let there = "<sip:alice-phone@192.0.2.70:5060>";
    let contacts = |m: &Msg| m.headers("Contact").count();
    let (_, ok) = phone.register_with("alice-phone", "Correct-Horse-42", &here);
    assert_eq!((ok.status(), contacts(&ok)), (200, 1), "{}", ok.0);
    let (_, ok) = phone.register_with("alice-phone", "Correct-Horse-42", there);
    assert_eq!((ok.status(), contacts(&ok)), (200, 2), "{}", ok.0);
    let (_, ok) = phone.register_with(
        "alice-phone",
        "Correct-Horse-42",
        &format!("{there};expires=0"),
    );
    assert_eq!((ok.status(), contacts(&ok)), (200, 1), "{}", ok.0);
    assert!(ok.header("Contact").unwrap().starts_with(&here), "{}", ok.0);
    let (_, ok) = phone.register_with("alice-phone", "Correct-Horse-42", "*");
    assert_eq!((ok.status(), contacts(&ok)), (200, 0), "{}", ok.0);

    sw.crash_and_restart();
    let dir = TempDir::new("reg-remove-scenarios");
    let expect_480 = write_scenario(&dir.0, "uac480.xml", &uac_error(480));
    let call = carrier_dials(&sw, ALICE_DDI, &expect_480);
    assert_eq!(
        call.wait(Duration::from_secs(20)),
        0,
        "480: nobody registered"
    );
}

/// A user registered from two phones: the carrier's call forks to both
/// bindings (RFC 3261 §16.6), the first 200 goes to the caller, and the
/// phone still ringing gets a CANCEL (§16.7 step 10) whose 487 the switch
/// ACKs hop by hop without passing it on.
#[test]
fn a_call_forks_to_every_binding_and_the_other_phone_is_cancelled() {
    let sw = Switch::start("reg-fork", 23500);
    let mut desk = Phone::new("127.0.0.1", sw.addr());
    let mut mobile = Phone::new("127.0.0.1", sw.addr());
    for phone in [&mut desk, &mut mobile] {
        let contact = format!("<sip:alice-phone@{}>", phone.local());
        let (_, ok) = phone.register_with("alice-phone", "Correct-Horse-42", &contact);
        assert_eq!(ok.status(), 200, "{}", ok.0);
    }
    let call = carrier_dials(&sw, ALICE_DDI, &scenario("uac.xml"));
    let invite = |p: &Phone| {
        p.recv_where(Duration::from_secs(10), |m| m.0.starts_with("INVITE "))
            .expect("the INVITE reaches both bindings")
    };
    let ringing = invite(&mobile);
    mobile.reply(&ringing, 100, "Trying");
    let answered = invite(&desk);
    desk.reply(&answered, 180, "Ringing");
    desk.reply(&answered, 200, "OK");

    let cancel = mobile
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("CANCEL "))
        .expect("the phone still ringing is cancelled");
    assert_eq!(
        cancel.header("Via"),
        ringing.header("Via"),
        "the CANCEL matches the INVITE's branch (RFC 3261 §9.1)"
    );
    mobile.reply(&cancel, 200, "OK");
    mobile.reply(&ringing, 487, "Request Terminated");
    mobile
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("ACK "))
        .expect("the 487 is acknowledged hop by hop");

    desk.end_call().expect("the caller's ACK and BYE");
    assert_eq!(call.wait(Duration::from_secs(20)), 0, "carrier side");
}

/// A TCP connection is closed after `server.tcp_idle_s` of silence, but not
/// one a live registration was made over: behind NAT it is the only way to
/// the phone, and not every phone sends keep-alives.
#[test]
fn a_tcp_connection_with_a_live_registration_outlives_the_idle_timeout() {
    let sw = Switch::start_with("reg-tcp-idle", 23300, |c| {
        c.replace("tcp_idle_s = 300", "tcp_idle_s = 1")
    });
    // A CRLFCRLF ping gets its CRLF pong (RFC 5626 §3.5.1), and a
    // connection that registered nothing is then closed.
    let mut idle = TcpStream::connect(sw.addr()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    idle.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    idle.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    let start = Instant::now();
    assert_eq!(
        idle.read(&mut [0u8; 64]).unwrap(),
        0,
        "closed by the switch"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );

    // Trickling part of a message does not count as activity: only a whole
    // message (or a ping) does, so a slow client cannot hold a slot.
    let mut slow = TcpStream::connect(sw.addr()).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    slow.write_all(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n")
        .unwrap();
    let start = Instant::now();
    let closed = loop {
        if start.elapsed() > Duration::from_secs(4) {
            break false;
        }
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break true;
        }
        if let Ok(0) = slow.read(&mut [0u8; 64]) {
            break true;
        }
    };
    assert!(closed, "a trickling client is closed after tcp_idle_s");

    let mut phone = Phone::new_tcp(sw.addr());
    phone.private = Some("192.0.2.60:5060".into());
    let (_, ok) = phone.register_with(
        "alice-phone",
        "Correct-Horse-42",
        "<sip:alice-phone@192.0.2.60:5060;transport=tcp>",
    );
    assert_eq!(ok.status(), 200, "{}", ok.0);
    // Three idle periods of silence, then a call to the phone.
    std::thread::sleep(Duration::from_millis(3500));
    let call = carrier_dials(&sw, ALICE_DDI, &scenario("uac.xml"));
    phone
        .answer_call(Duration::from_secs(10))
        .expect("the call reaches the phone on the connection it registered on");
    assert_eq!(call.wait(Duration::from_secs(20)), 0, "carrier side");
}

/// A TCP connection from `ip` (a loopback address) to `to`, with short
/// reads.
fn tcp_from(ip: &str, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(ip.parse().unwrap(), 0).into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    s
}

/// Sends an OPTIONS to the switch on `c`; returns whether a 200 came back.
fn options_answered(c: &mut TcpStream, n: u32) -> bool {
    let local = c.local_addr().unwrap();
    let text = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-full{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=f{n}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: full{n}@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    if c.write_all(text.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 4096];
    matches!(c.read(&mut buf), Ok(n) if buf[..n].starts_with(b"SIP/2.0 200"))
}

/// Whether the switch closed `c` (end of stream or reset within the read
/// timeout).
fn closed_by_switch(c: &mut TcpStream) -> bool {
    match c.read(&mut [0u8; 64]) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// With the connection table full, a newcomer takes the place of the
/// connection silent the longest, never of one a live registration uses;
/// one address cannot take more than an eighth of the table. Before,
/// newcomers were refused: clients sending one message per
/// `tcp_idle_s` could keep everyone else out.
#[test]
fn a_full_tcp_table_makes_room_for_newcomers() {
    let sw = Switch::start_with("reg-tcp-full", 24700, |c| {
        c.replace("workers = 2", "workers = 1")
            .replace("tcp_max_connections = 8192", "tcp_max_connections = 8")
    });
    // The oldest connection carries alice-phone's registration.
    let mut phone = Phone::new_tcp(sw.addr());
    phone.private = Some("192.0.2.61:5060".into());
    let (_, ok) = phone.register_with(
        "alice-phone",
        "Correct-Horse-42",
        "<sip:alice-phone@192.0.2.61:5060;transport=tcp>",
    );
    assert_eq!(ok.status(), 200, "{}", ok.0);
    // Seven more fill the table (8), one per address (a cap of 8 / 8).
    let mut fill: Vec<TcpStream> = (0..7u32)
        .map(|i| {
            std::thread::sleep(Duration::from_millis(20));
            let mut c = tcp_from(&format!("127.0.0.{}", 21 + i), sw.addr());
            assert!(options_answered(&mut c, i), "filler {i}");
            c
        })
        .collect();
    // A second connection from a full address is refused.
    let mut second = tcp_from("127.0.0.21", sw.addr());
    assert!(closed_by_switch(&mut second), "over the per-address cap");
    // A newcomer gets in, and the longest silent connection (not the
    // phone's, older still) makes room.
    let mut newcomer = tcp_from("127.0.0.40", sw.addr());
    assert!(
        options_answered(&mut newcomer, 40),
        "the newcomer is served"
    );
    assert!(
        closed_by_switch(&mut fill[0]),
        "the idlest connection closed"
    );
    assert!(options_answered(&mut fill[1], 101), "the others stay");
    // The phone's connection stayed: a call still reaches it.
    let call = carrier_dials(&sw, ALICE_DDI, &scenario("uac.xml"));
    phone
        .answer_call(Duration::from_secs(10))
        .expect("the call reaches the phone on its connection");
    assert_eq!(call.wait(Duration::from_secs(20)), 0, "carrier side");
    assert!(
        sw.log()
            .contains("TCP connection table full: the longest silent connection closed"),
        "{}",
        sw.log()
    );
}

/// `phone` registers alice-phone with the Contact `contact` (an address
/// it does not listen on; behind NAT, a private one) plus `uri_params`,
/// then answers `calls` carrier calls to alice's DDI, one after the
/// other, each from a new SIPp.
fn call_the_phone_behind_nat(
    sw: &Switch,
    mut phone: Phone,
    contact: &str,
    uri_params: &str,
    calls: usize,
) {
    phone.private = Some(contact.into());
    let (_, ok) = phone.register_with(
        "alice-phone",
        "Correct-Horse-42",
        &format!("<sip:alice-phone@{contact}{uri_params}>"),
    );
    assert_eq!(ok.status(), 200, "{}", ok.0);
    // The phone asked for rport: its Via comes back stamped with where the
    // REGISTER came from (RFC 3581 §4).
    let via = ok.header("Via").unwrap();
    let local = phone.local();
    assert!(
        via.ends_with(&format!(";received={};rport={}", local.ip(), local.port())),
        "{via}"
    );
    for _ in 0..calls {
        let call = carrier_dials(sw, ALICE_DDI, &scenario("uac.xml"));
        let invite = phone
            .answer_call(Duration::from_secs(10))
            .expect("INVITE, ACK and BYE all reach the phone behind NAT");
        assert_eq!(
            invite.first_line(),
            format!("INVITE sip:alice-phone@{contact}{uri_params} SIP/2.0"),
            "the Request-URI is the registered contact"
        );
        assert_eq!(call.wait(Duration::from_secs(20)), 0, "carrier side");
    }
}

/// A phone registered over TCP whose connection is gone: each carrier call
/// to it fails at once (the branch ends as 503, the caller gets 500), on
/// whichever worker the call lands. Before, when the call landed on
/// another worker than the one owning the connection, the failure was
/// reported to the wrong worker's proxy and the caller waited 32 s for a
/// 408.
#[test]
fn a_call_to_a_closed_tcp_registration_fails_at_once() {
    let sw = Switch::start("reg-tcp-gone", 24800);
    // The carrier's calls all come from one address and port, so they land
    // on one worker; each new connection lands on either (SO_REUSEPORT
    // hashes the 4-tuple). Six rounds: the connection's owner is the other
    // worker in some of them (all six on one worker: 1 in 64).
    for n in 0..6 {
        let mut phone = Phone::new_tcp(sw.addr());
        phone.private = Some("192.0.2.62:5060".into());
        let (_, ok) = phone.register_with(
            "alice-phone",
            "Correct-Horse-42",
            "<sip:alice-phone@192.0.2.62:5060;transport=tcp>",
        );
        assert_eq!(ok.status(), 200, "{}", ok.0);
        drop(phone);
        std::thread::sleep(Duration::from_millis(200));
        let (_dir, start, caller) = carrier_calls_expecting(&sw, ALICE_DDI, 500);
        assert_eq!(
            caller.wait(Duration::from_secs(40)),
            0,
            "round {n}: 500 expected"
        );
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "round {n} took {took:?}");
    }
}

/// A friend calling another friend: the callee sees the caller's number
/// (the P-Asserted-Identity it presented, here a SIP and a tel URI in one
/// header; without one, the friend's fallback DDI rather than its name) in
/// its own local format as the From user, and no identity header: a
/// friend cannot assert an identity to another (RFC 3325 §5).
/// Before, the From user was the calling friend's name and its
/// P-Asserted-Identity went through untouched.
#[test]
fn a_friend_calling_a_friend_presents_its_number_and_asserts_nothing() {
    let sw = Switch::start_with("reg-f2f", 24830, md5_only);
    let mut legacy = Phone::new("127.0.0.1", sw.addr());
    let (_, ok) = legacy.register("legacy", "Legacy-Secret-88");
    assert_eq!(ok.status(), 200, "{}", ok.0);
    let dir = TempDir::new("f2f-pai");
    let xml = std::fs::read_to_string(scenario("uac_auth.xml"))
        .unwrap()
        .replace(
            "      Max-Forwards: 70\n      Content-Type",
            "      Max-Forwards: 70\n      P-Asserted-Identity: <sip:+34944000200@acme.example.com>, <tel:+34944000200>\n      Content-Type",
        );
    assert!(xml.contains("P-Asserted-Identity"), "scenario edited");
    let xml = write_scenario(&dir.0, "uac_pai.xml", &xml);
    // branch dials 3001: legacy's pattern (branch's own is 2xxx).
    let caller = uac_auth_with(&xml, sw.addr(), "3001", "branch", "Branch-Secret-77", 1);
    let invite = legacy
        .answer_call(Duration::from_secs(10))
        .expect("the call reaches legacy");
    assert_eq!(caller.wait(Duration::from_secs(20)), 0, "caller side");
    assert!(
        invite.header("P-Asserted-Identity").is_none(),
        "{}",
        invite.0
    );
    let from = invite.header("From").unwrap();
    assert!(
        from.starts_with("<sip:944000200@pbx.legacy.example>"),
        "{from}"
    );
    // Presenting nothing but its name (its From user): the callee sees
    // branch's fallback_outgoing_ddi (+34944000200), not "branch".
    let caller = uac_auth(sw.addr(), "3001", "branch", "Branch-Secret-77", 1);
    let invite = legacy
        .answer_call(Duration::from_secs(10))
        .expect("the second call reaches legacy");
    assert_eq!(caller.wait(Duration::from_secs(20)), 0, "caller side");
    let from = invite.header("From").unwrap();
    assert!(
        from.starts_with("<sip:944000200@pbx.legacy.example>"),
        "{from}"
    );
}

/// A friend's PBX that writes the caller's number as From user and
/// authenticates as the friend (Asterisk without `fromuser`): the call is
/// the friend's, and the From user is the number it presents (§4.3),
/// here its DDI in national form, which the carrier sees in E.164.
/// Before, every attempt got a fresh 407 and counted as a failure
/// (`user-mismatch`) until the PBX was banned.
#[test]
fn a_friend_writing_its_number_as_from_user_is_the_friend() {
    let sw = Switch::start_with("reg-fromuser", 24840, md5_only);
    // The carrier, at its configured address.
    let carrier = Phone::at("127.0.0.2:24860", sw.addr());
    let caller = uac_auth_as(
        &scenario("uac_auth.xml"),
        sw.addr(),
        "944123456",
        "branch",
        "Branch-Secret-77",
        "944000200",
        1,
    );
    let invite = carrier
        .answer_call(Duration::from_secs(10))
        .expect("the call reaches the carrier");
    assert_eq!(caller.wait(Duration::from_secs(20)), 0, "caller side");
    let from = invite.header("From").unwrap();
    assert!(
        from.starts_with("<sip:+34944000200@acme.example.com>"),
        "{from}"
    );
    assert!(!sw.log().contains("auth failure"), "{}", sw.log());
}

/// A second company, British, on the same carrier as the demo's.
const BETA: &str = r#"
[[company]]
name = "beta"
domain = "beta.example.co.uk"
country_code = "44"
trunk_prefix = "0"
national_length = 10
carrier = "pstn"

  [[company.terminal]]
  name = "dave-phone"
  password = "Beta-Secret-9"

  [[company.user]]
  name = "dave"
  terminal = "dave-phone"

  [[company.ddi]]
  number = "+442079460001"
  user = "dave"
"#;

/// A carrier call to the DDI of a user of the second company reaches the
/// user's registered phone, whether the carrier sends the number in E.164
/// or in that company's national format, and whatever host its
/// Request-URI names. Before, the bindings were looked up in the first
/// company's domain (480) and the national number was read with the first
/// company's numbering (404).
#[test]
fn a_carrier_call_reaches_a_user_of_any_company() {
    let sw = Switch::start_with("reg-beta", 24790, |c| c + BETA);
    let mut dave = Phone::new("127.0.0.1", sw.addr());
    dave.domain = "beta.example.co.uk";
    let (_, ok) = dave.register("dave-phone", "Beta-Secret-9");
    assert_eq!(ok.status(), 200, "{}", ok.0);
    for dialled in ["+442079460001", "02079460001"] {
        let call = carrier_dials(&sw, dialled, &scenario("uac.xml"));
        let invite = dave
            .answer_call(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{dialled}: the call reaches dave's phone"));
        assert!(
            invite.first_line().starts_with("INVITE sip:dave-phone@"),
            "{}",
            invite.0
        );
        assert_eq!(
            call.wait(Duration::from_secs(20)),
            0,
            "{dialled}: carrier side"
        );
    }
}

/// Failures count only with a nonce the switch challenged the very source
/// with: a host sending under another's address (here simply from it: on
/// loopback any 127/8 address can be bound) with made-up credentials or a
/// nonce it got elsewhere bans nobody. Before, ten such packets banned the
/// address they named (a friend's, or a whole office's NAT).
#[test]
fn failures_under_a_borrowed_address_ban_nobody() {
    let sw = Switch::start_with("reg-spoof", 24770, |c| {
        c.replace("max_failures = 10", "max_failures = 3")
    });
    // The forger gets a real nonce at its own address...
    let mut forger = Phone::new("127.0.0.62", sw.addr());
    let challenge = forger
        .register_raw("alice-phone", "<sip:alice-phone@127.0.0.62:5060>", "")
        .expect("challenge")
        .header("WWW-Authenticate")
        .unwrap()
        .to_owned();
    // ...and sends guesses with it, and credentials with no usable nonce,
    // from the victim's address.
    let mut victim = Phone::new("127.0.0.61", sw.addr());
    for i in 0..6 {
        let nc = format!("{:08x}", i + 1);
        let borrowed = Phone::credentials("alice-phone", "guess", &challenge, &nc);
        let answer = victim.register_raw(
            "alice-phone",
            "<sip:alice-phone@127.0.0.61:5060>",
            &format!("Authorization: {borrowed}\r\n"),
        );
        assert_eq!(answer.map(|a| a.status()), Some(401), "borrowed nonce {i}");
        let answer = victim.register_raw(
            "alice-phone",
            "<sip:alice-phone@127.0.0.61:5060>",
            "Authorization: Digest username=\"x\"\r\n",
        );
        assert_eq!(answer.map(|a| a.status()), Some(401), "no nonce {i}");
    }
    // Not banned: the victim's own login works.
    let (_, ok) = victim.register("alice-phone", "Correct-Horse-42");
    assert_eq!(ok.status(), 200, "{}", ok.0);
    let log = sw.log();
    assert!(!log.contains("auth failure"), "{log}");
    assert!(!log.contains("auth ban"), "{log}");
    // Guesses answering the forger's own challenge count: the third bans.
    let mut answers = Vec::new();
    for nc in 1..=3 {
        let creds = Phone::credentials("alice-phone", "guess", &challenge, &format!("{nc:08x}"));
        answers.push(
            forger
                .register_raw(
                    "alice-phone",
                    "<sip:alice-phone@127.0.0.62:5060>",
                    &format!("Authorization: {creds}\r\n"),
                )
                .map(|a| a.status()),
        );
    }
    assert_eq!(answers, [Some(401), Some(401), None]);
}

/// What `svwar` and `svcrack` send: the switch's IP literal as domain.
/// Every name is challenged alike (nothing to enumerate), and guesses are
/// failures that ban the source.
#[test]
fn ip_literal_domains_are_challenged_and_guessing_is_banned() {
    let sw = Switch::start_with("reg-ip", 22600, |c| {
        c.replace("max_failures = 10", "max_failures = 3")
    });
    let sock = UdpSocket::bind("127.0.0.4:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let mut buf = vec![0u8; 65535];
    let mut ask = |n: u32, user: &str, auth: &str| -> Option<String> {
        let host = "127.0.0.1";
        let text = format!(
            "REGISTER sip:{host} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-ip{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{host}>;tag=ip{n}\r\nTo: <sip:{user}@{host}>\r\n\
             Call-ID: ip{n}@scan\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{local}>\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        );
        sock.send_to(text.as_bytes(), sw.addr()).unwrap();
        let (len, _) = sock.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..len]).into_owned())
    };
    // Enumeration: two names, the same answer shape.
    let a = ask(1, "100", "").expect("answer");
    let b = ask(2, "alice-phone", "").expect("answer");
    assert!(
        a.starts_with("SIP/2.0 401") && b.starts_with("SIP/2.0 401"),
        "{a}"
    );
    assert!(a.contains("realm=\"127.0.0.1\""), "{a}");
    // Guessing: each wrong answer is a failure; the third bans.
    let challenge = a
        .split("\r\n")
        .find(|l| l.starts_with("WWW-Authenticate:"))
        .unwrap()
        .trim_start_matches("WWW-Authenticate:")
        .trim()
        .to_owned();
    let nonce = param(&challenge, "nonce").unwrap().to_owned();
    let alg = Algorithm::parse(param(&challenge, "algorithm").unwrap()).unwrap();
    let mut answers = Vec::new();
    for (n, guess) in ["123456", "password", "letmein", "qwerty"]
        .iter()
        .enumerate()
    {
        let r = digest_response(
            alg,
            "100",
            "127.0.0.1",
            guess,
            "REGISTER",
            "sip:127.0.0.1",
            &nonce,
            "00000001",
            "abc",
        );
        let auth = format!(
            "Authorization: Digest username=\"100\", realm=\"127.0.0.1\", nonce=\"{nonce}\", \
             uri=\"sip:127.0.0.1\", response=\"{r}\", algorithm={}, qop=auth, nc=00000001, \
             cnonce=\"abc\"\r\n",
            alg.as_str()
        );
        answers.push(ask(10 + n as u32, "100", &auth));
    }
    assert!(answers[0]
        .as_deref()
        .is_some_and(|r| r.starts_with("SIP/2.0 401")));
    assert!(answers[1]
        .as_deref()
        .is_some_and(|r| r.starts_with("SIP/2.0 401")));
    assert!(
        answers[2].is_none() && answers[3].is_none(),
        "not banned: {answers:?}"
    );
}

/// kill -9 while registrations are being acknowledged: after the restart,
/// every registration that got its 200 OK is still bound (a 200 leaves
/// only once the binding is synced to disk).
#[test]
fn no_acknowledged_registration_is_lost_to_kill_9() {
    const USERS: usize = 400;
    let mut sw = Switch::start_with("reg-kill", 22700, |mut c| {
        for i in 0..USERS {
            c.push_str(&format!(
                "\n  [[company.terminal]]\n  name = \"k{i}\"\n  password = \"Kill-Secret-{i}\"\n"
            ));
        }
        c
    });
    let switch = sw.addr();
    let client = std::thread::spawn(move || {
        let mut phone = Phone::new("127.0.0.5", switch);
        let mut acked = Vec::new();
        for i in 0..USERS {
            let user = format!("k{i}");
            let contact = format!("<sip:{user}@{}>", phone.local());
            let Some(c) = phone.register_raw(&user, &contact, "") else {
                break;
            };
            let Some(ch) = c.header("WWW-Authenticate").map(str::to_owned) else {
                break;
            };
            let creds = Phone::credentials(&user, &format!("Kill-Secret-{i}"), &ch, "00000001");
            match phone.register_raw(&user, &contact, &format!("Authorization: {creds}\r\n")) {
                Some(ok) if ok.status() == 200 => acked.push(i),
                _ => break,
            }
        }
        (phone, acked)
    });
    std::thread::sleep(Duration::from_millis(400));
    sw.crash_and_restart();
    let (mut phone, acked) = client.join().unwrap();
    assert!(!acked.is_empty(), "nothing was registered before the kill");
    for &i in &acked {
        let user = format!("k{i}");
        let c = phone.register_raw(&user, "", "").expect("challenge");
        let ch = c.header("WWW-Authenticate").unwrap().to_owned();
        let creds = Phone::credentials(&user, &format!("Kill-Secret-{i}"), &ch, "00000001");
        let ok = phone
            .register_raw(&user, "", &format!("Authorization: {creds}\r\n"))
            .expect("answer to the fetch");
        assert_eq!(ok.status(), 200, "{}", ok.0);
        let bound = format!("<sip:{user}@{}>;expires=", phone.local());
        assert!(
            ok.headers("Contact").any(|c| c.starts_with(&bound)),
            "{user} acknowledged before the kill, missing after it: {}",
            ok.0
        );
    }
    eprintln!(
        "{} of {USERS} registrations acknowledged before the kill; all kept",
        acked.len()
    );
}

/// Where the switch answers a request itself (the registrar, OPTIONS to the
/// switch) it supports no extension: a Require is met with 420 naming the
/// tags in Unsupported (RFC 3261 §8.2.2.3), not with a 200 that would
/// claim the extension was applied.
#[test]
fn a_required_extension_is_refused_by_the_switch_as_uas() {
    let sw = Switch::start("reg-require", 24940);
    let mut phone = Phone::new("127.0.0.1", sw.addr());
    let answer = phone
        .register_raw(
            "alice-phone",
            "<sip:alice@127.0.0.1:5999>",
            "Require: path, foo\r\n",
        )
        .expect("an answer");
    assert_eq!(answer.status(), 420, "{}", answer.0);
    assert_eq!(
        answer.header("Unsupported"),
        Some("path, foo"),
        "{}",
        answer.0
    );
    // Without Require: the usual challenge.
    let answer = phone
        .register_raw("alice-phone", "<sip:alice@127.0.0.1:5999>", "")
        .expect("an answer");
    assert_eq!(answer.status(), 401, "{}", answer.0);

    let local = phone.local();
    for (require, want) in [("Require: foo\r\n", 420), ("", 200)] {
        phone.send(&format!(
            "OPTIONS sip:{switch} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-rq{want}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@example.com>;tag=rq\r\nTo: <sip:{switch}>\r\n\
             Call-ID: rq{want}@probe\r\nCSeq: 1 OPTIONS\r\n{require}Content-Length: 0\r\n\r\n",
            switch = sw.addr()
        ));
        let answer = phone.final_response().expect("an answer");
        assert_eq!(answer.status(), want, "{}", answer.0);
        if want == 420 {
            assert_eq!(answer.header("Unsupported"), Some("foo"), "{}", answer.0);
        }
    }
}

/// A phone behind a port-restricted NAT or firewall that learned its
/// public address (its Contact is the REGISTER's source, so nothing is
/// rewritten) lets in only what comes from the address and port it
/// registered to. The whole call, the caller's in-dialog ACK and BYE
/// included, must come from there; before, those left from the worker's
/// own port and were dropped at the NAT.
#[test]
fn in_dialog_requests_to_a_phone_come_from_the_port_it_registered_to() {
    let sw = Switch::start("reg-sym", 24960);
    let mut phone = Phone::new("127.0.0.12", sw.addr());
    // A connected UDP socket takes datagrams from that address only.
    phone.sock.connect(sw.addr()).unwrap();
    let (_, ok) = phone.register("alice-phone", "Correct-Horse-42");
    assert_eq!(ok.status(), 200, "{}", ok.0);
    for _ in 0..2 {
        let call = carrier_dials(&sw, ALICE_DDI, &scenario("uac.xml"));
        phone
            .answer_call(Duration::from_secs(10))
            .expect("INVITE, ACK and BYE all come from the switch's port");
        assert_eq!(call.wait(Duration::from_secs(20)), 0, "carrier side");
    }
}

/// A carrier's SBC pinging the switch with a name in the user part
/// (`OPTIONS sip:ping@switch`) gets 200, as a ping without one does; no
/// number a carrier may dial has letters. Anyone else's such OPTIONS is
/// still a request to route (challenged first).
#[test]
fn a_carrier_ping_with_a_user_part_is_answered() {
    let sw = Switch::start("carrier-ping", 24980);
    for (ip, want) in [("127.0.0.2", 200), ("127.0.0.12", 407)] {
        let phone = Phone::new(ip, sw.addr());
        let local = phone.local();
        phone.send(&format!(
            "OPTIONS sip:ping@{switch} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-cp\r\n\
             Max-Forwards: 70\r\nFrom: <sip:sbc@pstn.example.net>;tag=cp\r\nTo: <sip:ping@{switch}>\r\n\
             Call-ID: cp@{ip}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            switch = sw.addr()
        ));
        let answer = phone.final_response().expect("an answer");
        assert_eq!(answer.status(), want, "{ip}: {}", answer.0);
    }
}

/// A configured peer (here the carrier's network) may open more
/// connections than the per-address cap allows an unknown address: an
/// SBC may open one per call. The unknown address is still capped.
#[test]
fn a_carrier_is_not_held_to_the_per_address_tcp_cap() {
    let sw = Switch::start_with("tcp-carrier-cap", 25000, |c| {
        c.replace("workers = 2", "workers = 1")
            .replace("tcp_max_connections = 8192", "tcp_max_connections = 16")
    });
    // A cap of 16 / 8 = 2 per address.
    let mut carrier: Vec<TcpStream> = (0..4u32)
        .map(|i| {
            let mut c = tcp_from("127.0.0.2", sw.addr());
            assert!(options_answered(&mut c, i), "carrier connection {i}");
            c
        })
        .collect();
    assert!(options_answered(&mut carrier[0], 10), "the first one stays");
    let _kept: Vec<TcpStream> = (0..2u32)
        .map(|i| {
            let mut c = tcp_from("127.0.0.31", sw.addr());
            assert!(options_answered(&mut c, 20 + i), "unknown address, {i}");
            c
        })
        .collect();
    let mut third = tcp_from("127.0.0.31", sw.addr());
    assert!(closed_by_switch(&mut third), "over the per-address cap");
}

/// A TCP phone at its own address whose Contact names a port it does not
/// listen on (`transport=tcp`): the caller's ACK and BYE come on the
/// phone's connection, whichever worker they reach. Before, they went to
/// the named port, where nothing answers, and the BYE got a 500.
#[test]
fn a_tcp_phone_that_takes_no_connections_gets_its_whole_call() {
    let sw = Switch::start("reg-tcp-reuse", 25020);
    let mut phone = Phone::new_tcp(sw.addr());
    let ip = phone.local().ip();
    // Port 1: nothing listens there.
    phone.private = Some(format!("{ip}:1"));
    let (_, ok) = phone.register_with(
        "alice-phone",
        "Correct-Horse-42",
        &format!("<sip:alice-phone@{ip}:1;transport=tcp>"),
    );
    assert_eq!(ok.status(), 200, "{}", ok.0);
    // Three calls from new SIPp ports: the in-dialog requests land on
    // either worker; the connection lives on one.
    for _ in 0..3 {
        let call = carrier_dials(&sw, ALICE_DDI, &scenario("uac.xml"));
        phone
            .answer_call(Duration::from_secs(10))
            .expect("INVITE, ACK and BYE all come on the phone's connection");
        assert_eq!(call.wait(Duration::from_secs(20)), 0, "carrier side");
    }
}

/// The same phone listening on the port its Contact names: once its
/// connection is gone, the caller's BYE reaches it there (the connection
/// was a preference, not a requirement).
#[test]
fn a_tcp_phone_whose_connection_closed_is_reached_at_its_port() {
    let sw = Switch::start("reg-tcp-fallback", 25040);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut phone = Phone::new_tcp(sw.addr());
    let ip = phone.local().ip();
    phone.private = Some(format!("{ip}:{port}"));
    let (_, ok) = phone.register_with(
        "alice-phone",
        "Correct-Horse-42",
        &format!("<sip:alice-phone@{ip}:{port};transport=tcp>"),
    );
    assert_eq!(ok.status(), 200, "{}", ok.0);
    let call = carrier_dials(&sw, ALICE_DDI, &scenario("uac.xml"));
    let invite = phone
        .recv_where(Duration::from_secs(10), |m| m.0.starts_with("INVITE "))
        .expect("the INVITE on the phone's connection");
    phone.reply(&invite, 180, "Ringing");
    phone.reply(&invite, 200, "OK");
    phone
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("ACK "))
        .expect("the ACK on the phone's connection");
    // The connection closes; the BYE must come to the listening port.
    phone.tcp = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("no connection to the phone's port: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    phone.tcp = Some(RefCell::new((stream, Vec::new())));
    let bye = phone
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("BYE "))
        .expect("the BYE at the phone's port");
    phone.reply(&bye, 200, "OK");
    assert_eq!(call.wait(Duration::from_secs(20)), 0, "carrier side");
}

/// A carrier's ACK of a final response the switch made itself (here a 483
/// for Max-Forwards: 0, answered without a transaction) ends at the switch:
/// it is not taken for the ACK of a 2xx from a UA that ignores
/// Record-Route and routed on to the DDI's target.
#[test]
fn a_carrier_ack_of_the_switch_s_own_answer_goes_nowhere() {
    let sw = Switch::start("carrier-own-ack", 25060);
    let friend = Phone::at("127.0.0.1:25070", sw.addr());
    let carrier = Phone::new("127.0.0.2", sw.addr());
    let local = carrier.local();
    let head = |method: &str, to: &str, hops: u8| {
        format!(
            "{method} sip:+34944000200@{switch} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-own1\r\nMax-Forwards: {hops}\r\n\
             From: <sip:+34600111222@pstn.example.net>;tag=own1\r\nTo: {to}\r\n\
             Call-ID: own1@carrier\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n",
            switch = sw.addr()
        )
    };
    carrier.send(&head("INVITE", "<sip:+34944000200@pstn.example.net>", 0));
    let answer = carrier.final_response().expect("an answer");
    assert_eq!(answer.status(), 483, "{}", answer.0);
    carrier.send(&head("ACK", answer.header("To").unwrap(), 70));
    let stray = friend.recv_where(Duration::from_secs(1), |_| true);
    assert!(stray.is_none(), "the friend got {:?}", stray.map(|m| m.0));
}

/// An anonymous From (`anonymous@anonymous.invalid`) from a direct friend's
/// address is that friend, challenged in its company's realm; a phone of
/// the same company behind the same address (the office's NAT) is who its
/// credentials then say. Here a phone at the demo friend's IP calls
/// extension 101 anonymously as alice-phone: after the challenge it is let
/// through (480: alice has no binding), not challenged again as `branch`.
#[test]
fn an_anonymous_phone_behind_a_friend_s_address_is_who_it_proves() {
    let sw = Switch::start("anon-phone", 25080);
    let phone = Phone::new("127.0.0.1", sw.addr());
    anonymous_call(&phone, "101", "anon-1");
    let answer = phone.final_response().expect("an answer");
    assert_eq!(answer.status(), 480, "{}", answer.0);
}

/// A phone's anonymous From (its user withholding the number, RFC 3323)
/// names no company: the company is the one the call is addressed to (the
/// Request-URI's domain), the caller the account its credentials name
/// there. Its call goes out with From still anonymous and the user's DDI
/// only in P-Asserted-Identity.
#[test]
fn an_anonymous_phone_is_the_account_its_credentials_name() {
    let sw = Switch::start("anon-any", 25100);
    let carrier = Phone::at("127.0.0.2:25120", sw.addr());
    let phone = Phone::new("127.0.0.3", sw.addr());
    anonymous_call(&phone, "911234567", "anon-2");
    let invite = carrier
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("INVITE "))
        .expect("the call reaches the carrier");
    carrier.reply(&invite, 486, "Busy Here");
    let answer = phone.final_response().expect("an answer");
    assert_eq!(answer.status(), 486, "{}", answer.0);
    let from = invite.header("From").unwrap();
    assert!(
        from.contains("sip:anonymous@anonymous.invalid"),
        "{}",
        invite.0
    );
    let pai = invite
        .header("P-Asserted-Identity")
        .expect("an asserted identity");
    assert!(pai.contains("+34944000100"), "{}", invite.0);
    assert!(
        invite.header("Privacy").is_some_and(|p| p.contains("id")),
        "{}",
        invite.0
    );
}

/// Calls `number` at acme from an anonymous From, answers the challenge
/// (which must be in acme's realm) as alice-phone: the authenticated
/// INVITE is sent, its answer left to the caller.
fn anonymous_call(phone: &Phone, number: &str, call_id: &str) {
    let local = phone.local();
    let uri = format!("sip:{number}@acme.example.com");
    let invite = |cseq: u32, auth: &str| {
        format!(
            "INVITE {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}-{cseq}\r\nMax-Forwards: 70\r\n\
             From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=anon\r\n\
             To: <{uri}>\r\nCall-ID: {call_id}@phone\r\n\
             CSeq: {cseq} INVITE\r\nContact: <sip:alice-phone@{local}>\r\n\
             Privacy: id\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    phone.send(&invite(1, ""));
    let challenge = phone.final_response().expect("a challenge");
    assert_eq!(challenge.status(), 407, "{}", challenge.0);
    let c = challenge.header("Proxy-Authenticate").unwrap();
    assert_eq!(param(c, "realm"), Some("acme.example.com"), "{c}");
    let alg = Algorithm::parse(param(c, "algorithm").unwrap_or("MD5")).unwrap();
    let nonce = param(c, "nonce").unwrap();
    let response = digest_response(
        alg,
        "alice-phone",
        "acme.example.com",
        "Correct-Horse-42",
        "INVITE",
        &uri,
        nonce,
        "00000001",
        "c0ffee",
    );
    let auth = format!(
        "Proxy-Authorization: Digest username=\"alice-phone\", realm=\"acme.example.com\", \
         nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, \
         nc=00000001, cnonce=\"c0ffee\"\r\n",
        alg.as_str()
    );
    phone.send(&invite(2, &auth));
}

/// RFC 3261 §10.3: an AoR registers through its own domain (or the
/// switch's address), not another's (step 5: 404); the 200 carries a Date
/// (step 8) beside the bindings.
#[test]
fn a_register_goes_through_its_own_domain_and_its_200_has_a_date() {
    let sw = Switch::start("reg-domain", 25140);
    let mut phone = Phone::new("127.0.0.1", sw.addr());
    let (_, ok) = phone.register("alice-phone", "Correct-Horse-42");
    assert_eq!(ok.status(), 200, "{}", ok.0);
    let date = ok.header("Date").expect("a Date");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");

    let local = phone.local();
    let register = |cseq: u32, target: &str, auth: &str| {
        format!(
            "REGISTER {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-dom{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice-phone@acme.example.com>;tag=dom\r\n\
             To: <sip:alice-phone@acme.example.com>\r\nCall-ID: dom@phone\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:alice-phone@{local}>\r\n\
             Expires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let cases = [
        ("sip:other.example.org", 404),
        ("sip:127.0.0.1:25140", 200),
        ("sip:ACME.example.com", 200),
    ];
    for (i, (target, want)) in cases.into_iter().enumerate() {
        let cseq = 2 * i as u32 + 1;
        phone.send(&register(cseq, target, ""));
        let challenge = phone.final_response().expect("a challenge");
        assert_eq!(challenge.status(), 401, "{}", challenge.0);
        let c = challenge.header("WWW-Authenticate").unwrap();
        let alg = Algorithm::parse(param(c, "algorithm").unwrap_or("MD5")).unwrap();
        let nonce = param(c, "nonce").unwrap();
        let response = digest_response(
            alg,
            "alice-phone",
            "acme.example.com",
            "Correct-Horse-42",
            "REGISTER",
            target,
            nonce,
            "00000001",
            "c0ffee",
        );
        let auth = format!(
            "Authorization: Digest username=\"alice-phone\", realm=\"acme.example.com\", \
             nonce=\"{nonce}\", uri=\"{target}\", response=\"{response}\", algorithm={}, \
             qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n",
            alg.as_str()
        );
        phone.send(&register(cseq + 1, target, &auth));
        let answer = phone.final_response().expect("an answer");
        assert_eq!(answer.status(), want, "{target}: {}", answer.0);
    }
}

/// SIPVicious against the demo configuration (SHA-256 offered first):
/// `svwar` cannot tell real names from invented ones, and `svcrack`, which
/// speaks only MD5, is offered MD5 first (its User-Agent names it a
/// scanner), so its guesses count and it is banned after `max_failures`
/// (10) of its 16 words, the right password last, never reached.
#[test]
fn sipvicious_finds_no_name_and_its_cracking_is_banned() {
    let sw = Switch::start("sipvicious", 25180);
    let dir = TempDir::new("sipvicious-words");
    let names = dir.0.join("names.txt");
    std::fs::write(
        &names,
        "alice-phone\nbranch\nlegacy\nalice\n101\nbob\nnobody\n",
    )
    .unwrap();
    let words = dir.0.join("words.txt");
    let mut dict: String = ('a'..='o').map(|c| format!("{c}{c}{c}\n")).collect();
    dict.push_str("Correct-Horse-42\n");
    std::fs::write(&words, dict).unwrap();
    let port = sw.addr().port().to_string();
    let run = |tool: &str, args: &[&str]| -> String {
        let out = std::process::Command::new("timeout")
            .arg("60")
            .arg(tool)
            .args(["-p", &port])
            .args(args)
            .args(["--domain", DOMAIN, "127.0.0.1"])
            .output()
            .unwrap_or_else(|e| panic!("{tool} (Debian package sipvicious): {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("found nothing"), "{tool}: {text}");
        text
    };
    let names = names.to_str().unwrap();
    for method in ["REGISTER", "INVITE"] {
        run("svwar", &["--force", "-m", method, "-d", names]);
    }
    assert!(!sw.log().contains("auth ban"), "enumeration is no failure");
    let out = run(
        "svcrack",
        &[
            "--maximumtime",
            "3",
            "-u",
            "alice-phone",
            "-d",
            words.to_str().unwrap(),
        ],
    );
    assert!(!out.contains("Correct-Horse-42"), "{out}");
    let log = sw.log();
    assert_eq!(log.matches("auth failure:").count(), 10, "{log}");
    assert!(log.contains("auth ban: source=127.0.0.1"), "{log}");
}

/// A 200 listing more bindings than a parser takes header lines (here
/// 100, with `max_bindings = 256`) puts them on one comma-separated
/// Contact line; it was not sent at all, though the bindings were stored.
#[test]
fn a_register_with_many_bindings_is_answered_with_all_of_them() {
    let sw = Switch::start_with("reg-many", 25200, |c| {
        c.replace("max_bindings = 10", "max_bindings = 256")
    });
    let mut phone = Phone::new("127.0.0.1", sw.addr());
    let contacts: Vec<String> = (0..100)
        .map(|i| format!("<sip:c{i}@127.0.11.1:{}>", 5000 + i))
        .collect();
    let (_, ok) = phone.register_with("alice-phone", "Correct-Horse-42", &contacts.join(", "));
    assert_eq!(ok.status(), 200, "{}", ok.0);
    let listed: usize = ok
        .headers("Contact")
        .map(|v| v.matches("<sip:c").count())
        .sum();
    assert_eq!(listed, 100, "{}", ok.0);
}

/// A response copied back to the switch from a raw UA (RFC 3261 §8.2.6),
/// with a To tag, a Contact and `extra` header lines.
fn answer_of(req: &Msg, code: u16, reason: &str, contact: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for name in ["Via", "Record-Route"] {
        for v in req.headers(name) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    for name in ["From", "Call-ID", "CSeq"] {
        out.push_str(&format!("{name}: {}\r\n", req.header(name).unwrap()));
    }
    let to = req.header("To").unwrap();
    let tag = if to.contains(";tag=") {
        ""
    } else {
        ";tag=callee1"
    };
    out.push_str(&format!(
        "To: {to}{tag}\r\nContact: <{contact}>\r\n{extra}Content-Length: 0\r\n\r\n"
    ));
    out
}

/// RFC 3325 §5: a friend's answer cannot assert an identity to the
/// carrier (its P-Asserted-Identity and Remote-Party-ID are removed, as
/// from its requests). And the ACK of the 488 the switch gives a
/// re-INVITE whose codecs the friend does not take ends at the switch: the
/// friend never saw that re-INVITE; so does the ACK of a 483 the switch
/// gives one without a transaction.
#[test]
fn a_friend_s_answers_assert_nothing_and_a_refused_re_invite_s_ack_ends_here() {
    let sw = Switch::start("answer-identity", 25220);
    let friend = Phone::at("127.0.0.1:25230", sw.addr());
    let carrier = Phone::new("127.0.0.2", sw.addr());
    let local = carrier.local();
    let sdp = |codec: &str| {
        let (pt, name) = match codec {
            "PCMA" => (8, "PCMA"),
            _ => (18, "G729"),
        };
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\n"
        );
        format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let request = |method: &str, uri: &str, branch: &str, cseq: u32, extra: &str, tail: &str| {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+34600111222@pstn.example.net>;tag=car1\r\n\
             Call-ID: ident@carrier\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:carrier@{local}>\r\n{extra}{tail}"
        )
    };
    let to = "To: <sip:+34944000200@pstn.example.net>\r\n";
    let uri = format!("sip:+34944000200@{}", sw.addr());
    carrier.send(&request("INVITE", &uri, "id1", 1, to, &sdp("PCMA")));
    let invite = friend
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("INVITE "))
        .expect("the call reaches the friend");
    let asserted = "P-Asserted-Identity: <sip:+34911222333@branch.local>\r\n\
                    Remote-Party-ID: <sip:2005@branch.local>;party=called\r\n";
    let contact = "sip:branch@127.0.0.1:25230";
    friend.send(&answer_of(&invite, 180, "Ringing", contact, asserted));
    friend.send(&answer_of(&invite, 200, "OK", contact, asserted));
    let ok = carrier
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("SIP/2.0 200"))
        .expect("the carrier gets the 200");
    for h in ["P-Asserted-Identity", "Remote-Party-ID"] {
        assert!(ok.header(h).is_none(), "{h} reached the carrier: {}", ok.0);
    }
    // The dialog as the carrier sees it: the friend's tag, the switch's
    // Record-Route as Route set, the friend's Contact as target.
    let to = format!("To: {}\r\n", ok.header("To").unwrap());
    let routes: Vec<&str> = ok.headers("Record-Route").collect();
    let route = format!("Route: {}\r\n", routes.join(", "));
    let target = ok
        .header("Contact")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    let in_dialog = format!("{to}{route}");
    carrier.send(&request(
        "ACK",
        &target,
        "id1a",
        1,
        &in_dialog,
        "Content-Length: 0\r\n\r\n",
    ));
    friend
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("ACK "))
        .expect("the 2xx's ACK reaches the friend");

    carrier.send(&request(
        "INVITE",
        &target,
        "id2",
        2,
        &in_dialog,
        &sdp("G729"),
    ));
    let refused = carrier
        .final_response()
        .expect("an answer to the re-INVITE");
    assert_eq!(refused.status(), 488, "{}", refused.0);
    carrier.send(&request(
        "ACK",
        &target,
        "id2",
        2,
        &in_dialog,
        "Content-Length: 0\r\n\r\n",
    ));
    let stray = friend.recv_where(Duration::from_secs(1), |m| !m.0.starts_with("SIP/2.0"));
    assert!(stray.is_none(), "the friend got {:?}", stray.map(|m| m.0));

    // A re-INVITE the switch refuses without a transaction (483: no hops
    // left): its ACK, with the dialog's Route set, ends here too.
    carrier.send(
        &request("INVITE", &target, "id3", 3, &in_dialog, &sdp("PCMA"))
            .replace("Max-Forwards: 70", "Max-Forwards: 0"),
    );
    let refused = carrier
        .final_response()
        .expect("an answer to the re-INVITE");
    assert_eq!(refused.status(), 483, "{}", refused.0);
    carrier.send(&request(
        "ACK",
        &target,
        "id3",
        3,
        &in_dialog,
        "Content-Length: 0\r\n\r\n",
    ));
    let stray = friend.recv_where(Duration::from_secs(1), |m| !m.0.starts_with("SIP/2.0"));
    assert!(stray.is_none(), "the friend got {:?}", stray.map(|m| m.0));

    // The friend's re-INVITE: the carrier's answer moves its target (a
    // Contact on another port); it reaches the friend as the carrier wrote
    // it (a carrier's Contact is never taken for a NAT-mangled one).
    let routes: Vec<&str> = invite.headers("Record-Route").collect();
    let friend_local = friend.local();
    let reinvite = format!(
        "INVITE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {friend_local};branch=z9hG4bK-fr1\r\n\
         Max-Forwards: 70\r\nRoute: {route}\r\nFrom: {from};tag=callee1\r\nTo: {to}\r\n\
         Call-ID: ident@carrier\r\nCSeq: 1 INVITE\r\nContact: <{contact}>\r\n{sdp}",
        target = invite.header("Contact").unwrap().trim_matches(['<', '>']),
        route = routes.join(", "),
        from = invite.header("To").unwrap(),
        to = invite.header("From").unwrap(),
        sdp = sdp("PCMA"),
    );
    friend.send(&reinvite);
    let reinvite = carrier
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("INVITE "))
        .expect("the friend's re-INVITE reaches the carrier");
    carrier.send(&answer_of(
        &reinvite,
        200,
        "OK",
        "sip:carrier@127.0.0.2:5062",
        "",
    ));
    let ok = friend
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("SIP/2.0 200"))
        .expect("the friend gets the 200");
    assert_eq!(
        ok.header("Contact"),
        Some("<sip:carrier@127.0.0.2:5062>"),
        "{}",
        ok.0
    );
}

/// SIP-I: a carrier's INVITE whose body is multipart/mixed (SDP beside
/// ISUP) reaches the friend with its SDP part filtered to the friend's
/// `allowed_codecs` (PCMA, PCMU, telephone-event) and the ISUP part intact.
#[test]
fn a_multipart_offer_is_filtered_for_the_friend() {
    let sw = Switch::start("multipart", 25250);
    let friend = Phone::at("127.0.0.1:25260", sw.addr());
    let carrier = Phone::new("127.0.0.2", sw.addr());
    let local = carrier.local();
    let body = "--b1\r\nContent-Type: application/sdp\r\n\r\n\
                v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
                m=audio 4000 RTP/AVP 18 8 101\r\na=rtpmap:18 G729/8000\r\n\
                a=rtpmap:101 telephone-event/8000\r\n\r\n\
                --b1\r\nContent-Type: application/ISUP;version=itu-t92+\r\n\r\n\
                ISUP-IAM-BYTES\r\n--b1--\r\n";
    carrier.send(&format!(
        "INVITE sip:+34944000200@{switch} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-mp1\r\nMax-Forwards: 70\r\n\
         From: <sip:+34600111222@pstn.example.net>;tag=mp1\r\n\
         To: <sip:+34944000200@pstn.example.net>\r\nCall-ID: mp1@carrier\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:carrier@{local}>\r\n\
         Content-Type: multipart/mixed;boundary=b1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        switch = sw.addr(),
    ));
    let invite = friend
        .recv_where(Duration::from_secs(5), |m| m.0.starts_with("INVITE "))
        .expect("the call reaches the friend");
    assert!(
        invite.0.contains("m=audio 4000 RTP/AVP 8 101\r\n"),
        "{}",
        invite.0
    );
    assert!(!invite.0.contains("G729"), "{}", invite.0);
    assert!(
        invite.0.contains("ISUP-IAM-BYTES\r\n--b1--\r\n"),
        "{}",
        invite.0
    );
    let (head, got) = invite.0.split_once("\r\n\r\n").unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(length, got.len(), "{}", invite.0);
}

/// A reload that adds a friend at the address of another (two trunks of
/// one PBX) or renames the friend leaves calls in progress routable (and
/// the worker ports in the Via are fixed ones, firewall-friendly): the
/// dialog token names no party by a name a reload can change (DOMAIN.md
/// §9: a reload never drops a call). The BYE of a call set up before each
/// reload reaches the friend.
#[test]
fn a_reload_that_adds_a_friend_at_a_shared_address_keeps_calls_up() {
    let sw = Switch::start("reload-dialog", 25270);
    let friend = Phone::at("127.0.0.1:25280", sw.addr());
    let carrier = Phone::new("127.0.0.2", sw.addr());
    let local = carrier.local();
    let request = |method: &str, uri: &str, call: &str, cseq: u32, extra: &str| {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{call}{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+34600111222@pstn.example.net>;tag={call}\r\n\
             Call-ID: {call}@carrier\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:carrier@{local}>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    let reloads: [&dyn Fn(String) -> String; 2] = [
        &|c: String| {
            c.replace(
                "  # Public numbers: carrier calls to them arrive here.",
                "  [[company.friend]]\n  name = \"second-trunk\"\n  priority = 30\n  password = \"Trunk-Secret-99\"\n  \
                 connection = \"direct\"\n  transport = \"udp\"\n  address = \"127.0.0.1\"\n  \
                 port = 25290\n  patterns = [\"5[0-9]{3}\"]\n\n  \
                 # Public numbers: carrier calls to them arrive here.",
            )
        },
        &|c: String| {
            c.replace("name = \"branch\"", "name = \"branch-office\"")
                .replace("friend = \"branch\"", "friend = \"branch-office\"")
        },
    ];
    for (n, reload) in reloads.iter().enumerate() {
        let call = format!("rl{n}");
        let uri = format!("sip:+34944000200@{}", sw.addr());
        let to = "To: <sip:+34944000200@pstn.example.net>\r\n";
        carrier.send(&request("INVITE", &uri, &call, 1, to));
        let invite = friend
            .recv_where(Duration::from_secs(5), |m| m.0.starts_with("INVITE "))
            .expect("the call reaches the friend");
        // Sent from a worker's own port: the listen port + 1 + its index.
        let via = invite.header("Via").unwrap();
        assert!(
            via.contains("127.0.0.1:25271;") || via.contains("127.0.0.1:25272;"),
            "{via}"
        );
        friend.send(&answer_of(
            &invite,
            200,
            "OK",
            "sip:branch@127.0.0.1:25280",
            "",
        ));
        let ok = carrier
            .recv_where(Duration::from_secs(5), |m| m.0.starts_with("SIP/2.0 200"))
            .expect("the carrier gets the 200");
        let routes: Vec<&str> = ok.headers("Record-Route").collect();
        let in_dialog = format!(
            "To: {}\r\nRoute: {}\r\n",
            ok.header("To").unwrap(),
            routes.join(", ")
        );
        let target = ok
            .header("Contact")
            .unwrap()
            .trim_matches(['<', '>'])
            .to_owned();
        carrier.send(&request("ACK", &target, &call, 1, &in_dialog));
        friend
            .recv_where(Duration::from_secs(5), |m| m.0.starts_with("ACK "))
            .expect("the ACK reaches the friend");

        sw.reload_with(reload);
        assert!(!sw.log().contains("reload refused"), "{}", sw.log());

        carrier.send(&request("BYE", &target, &call, 2, &in_dialog));
        let bye = friend
            .recv_where(Duration::from_secs(5), |m| m.0.starts_with("BYE "))
            .unwrap_or_else(|| panic!("reload {n}: the BYE reaches the friend: {}", sw.log()));
        friend.send(&answer_of(
            &bye,
            200,
            "OK",
            "sip:branch@127.0.0.1:25280",
            "",
        ));
        let done = carrier.final_response().expect("the BYE's 200");
        assert_eq!(done.status(), 200, "{}", done.0);
    }
}

/// A PBX registering two accounts through one socket (one NAT pinhole)
/// gets one keep-alive OPTIONS a round, not one per account: with a
/// one-second period, no two OPTIONS come within half a second.
#[test]
fn two_accounts_behind_one_socket_get_one_keep_alive_a_round() {
    let sw = Switch::start_with("reg-ka-once", 25300, |c| {
        c.replace("keepalive_s = 30", "keepalive_s = 1")
    });
    let mut pbx = Phone::new("127.0.0.1", sw.addr());
    for (user, password) in [
        ("legacy", "Legacy-Secret-88"),
        ("alice-phone", "Correct-Horse-42"),
    ] {
        let (_, ok) = pbx.register(user, password);
        assert_eq!(ok.status(), 200, "{}", ok.0);
    }
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        if pbx
            .recv_where(left, |m| m.0.starts_with("OPTIONS "))
            .is_some()
        {
            seen.push(Instant::now());
        }
    }
    assert!(seen.len() >= 2, "keep-alives in 3.5 s: {}", seen.len());
    for pair in seen.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(500),
            "two OPTIONS in one round, {:?} apart",
            pair[1] - pair[0]
        );
    }
}

/// UDP and TCP listening on different ports: the Record-Route entry for
/// TCP names the TCP port (it named the first listen port, UDP's, where
/// nothing accepts connections), and a carrier's BYE sent where that entry
/// says reaches the friend.
#[test]
fn a_tcp_record_route_names_the_tcp_listen_port() {
    let port = 25320;
    let tcp_port = port + 5;
    let sw = Switch::start_with("rr-tcp-port", port, |c| {
        c.replace(
            &format!("\"tcp:127.0.0.1:{port}\""),
            &format!("\"tcp:127.0.0.1:{tcp_port}\""),
        )
    });
    let friend = Phone::at(&format!("127.0.0.1:{}", port + 10), sw.addr());
    let tcp_at = |p: u16| {
        let mut c = Phone::new("127.0.0.2", sw.addr());
        c.tcp = Some(RefCell::new((
            tcp_from("127.0.0.2", SocketAddr::from(([127, 0, 0, 1], p))),
            Vec::new(),
        )));
        c
    };
    let carrier = tcp_at(tcp_port);
    let local = carrier.local();
    let request = |method: &str, cseq: u32, to: &str, route: &str, target: &str| {
        format!(
            "{method} {target} SIP/2.0\r\n\
             Via: SIP/2.0/TCP {local};branch=z9hG4bK-rrtcp{cseq}{method}\r\nMax-Forwards: 70\r\n\
             {route}From: <sip:+34600111222@pstn.example.net>;tag=rrtcp\r\nTo: {to}\r\n\
             Call-ID: rrtcp@carrier\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:carrier@{local};transport=tcp>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    carrier.send(&request(
        "INVITE",
        1,
        "<sip:+34944000200@pstn.example.net>",
        "",
        &format!("sip:+34944000200@127.0.0.1:{tcp_port};transport=tcp"),
    ));
    let invite = friend
        .recv_where(Duration::from_secs(3), |m| m.0.starts_with("INVITE "))
        .expect("the INVITE reaches the friend");
    friend.reply(&invite, 200, "OK");
    let ok = carrier
        .recv_where(Duration::from_secs(3), |m| m.status() == 200)
        .expect("the 200 reaches the carrier");
    let routes: Vec<&str> = ok
        .headers("Record-Route")
        .flat_map(|v| v.split(", "))
        .collect();
    let tcp_entry = routes
        .iter()
        .find(|r| r.contains(";transport=tcp"))
        .unwrap_or_else(|| panic!("no TCP entry in {routes:?}"));
    assert!(
        tcp_entry.starts_with(&format!("<sip:127.0.0.1:{tcp_port};")),
        "{tcp_entry}"
    );
    let to = ok.header("To").unwrap().to_owned();
    let target = ok
        .header("Contact")
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    // The carrier's route set is the Record-Route as received; its first
    // entry (the TCP one, facing the carrier) is where the BYE goes.
    let route = format!("Route: {}\r\n", routes.join(", "));
    carrier.send(&request("ACK", 1, &to, &route, &target));
    let bye_from = tcp_at(tcp_port);
    let local_bye = bye_from.local();
    bye_from.send(
        &request("BYE", 2, &to, &route, &target)
            .replace(&local.to_string(), &local_bye.to_string()),
    );
    let bye = friend
        .recv_where(Duration::from_secs(3), |m| m.0.starts_with("BYE "))
        .expect("the BYE, sent where the route says, reaches the friend");
    friend.reply(&bye, 200, "OK");
    let done = bye_from.final_response().expect("the BYE's 200");
    assert_eq!(done.status(), 200, "{}", done.0);
}

/// DOMAIN.md §4.4: a friend gets the caller's number in its local format,
/// also when a carrier writes it in its country's format (`0034…` with the
/// international prefix, `600…` national) rather than E.164; what no
/// numbering reads (`34600111222`) is passed as it came.
#[test]
fn a_carrier_s_caller_reaches_a_friend_in_the_friend_s_format() {
    let sw = Switch::start("carrier-from-local", 25340);
    let friend = Phone::at("127.0.0.1:25350", sw.addr());
    let carrier = Phone::new("127.0.0.2", sw.addr());
    let local = carrier.local();
    for (i, (sent, seen)) in [
        ("0034600111222", "600111222"),
        ("600111222", "600111222"),
        ("+34600111222", "600111222"),
        ("0033123456789", "0033123456789"),
        ("34600111222", "34600111222"),
    ]
    .into_iter()
    .enumerate()
    {
        carrier.send(&format!(
            "INVITE sip:+34944000200@{switch} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-cfl{i}\r\nMax-Forwards: 70\r\n\
             From: <sip:{sent}@pstn.example.net>;tag=cfl{i}\r\n\
             To: <sip:+34944000200@pstn.example.net>\r\n\
             Call-ID: cfl{i}@carrier\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:carrier@{local}>\r\nContent-Length: 0\r\n\r\n",
            switch = sw.addr()
        ));
        let invite = friend
            .recv_where(Duration::from_secs(3), |m| m.0.starts_with("INVITE "))
            .expect("the INVITE reaches the friend");
        let from = invite.header("From").unwrap();
        assert!(
            from.starts_with(&format!("<sip:{seen}@")),
            "{sent} reached the friend as {from}"
        );
        friend.reply(&invite, 486, "Busy Here");
        let busy = carrier.final_response().expect("the 486");
        assert_eq!(busy.status(), 486, "{}", busy.0);
    }
}

/// The 400 for a request that cannot be framed (Content-Length past the
/// datagram) carries a To tag of the switch's own like its other answers,
/// so the carrier's ACK of it ends at the switch (it reached the friend).
#[test]
fn the_ack_of_a_400_for_an_unframed_invite_goes_nowhere() {
    let sw = Switch::start("carrier-unframed-ack", 25360);
    let friend = Phone::at("127.0.0.1:25370", sw.addr());
    let carrier = Phone::new("127.0.0.2", sw.addr());
    let local = carrier.local();
    let head = |method: &str, to: &str, length: usize, body: &str| {
        format!(
            "{method} sip:+34944000200@{switch} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-unf1\r\nMax-Forwards: 70\r\n\
             From: <sip:+34600111222@pstn.example.net>;tag=unf1\r\nTo: {to}\r\n\
             Call-ID: unf1@carrier\r\nCSeq: 1 {method}\r\n\
             Content-Type: application/sdp\r\nContent-Length: {length}\r\n\r\n{body}",
            switch = sw.addr()
        )
    };
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n";
    carrier.send(&head(
        "INVITE",
        "<sip:+34944000200@pstn.example.net>",
        500,
        body,
    ));
    let answer = carrier.final_response().expect("an answer");
    assert_eq!(answer.status(), 400, "{}", answer.0);
    let to = answer.header("To").unwrap().to_owned();
    carrier.send(&head("ACK", &to, 0, ""));
    let stray = friend.recv_where(Duration::from_secs(1), |_| true);
    assert!(stray.is_none(), "the friend got {:?}", stray.map(|m| m.0));
}

/// A dual-stack switch (listening on 127.0.0.1 and ::1) between a v4
/// carrier and a v6 friend: the friend's INVITE names the switch by its v6
/// address in Via and in the Record-Route entry facing the friend (the v4
/// advertised host is unreachable from a v6-only peer), so the friend's
/// answers, which follow the Via, and its BYE, which follows the route,
/// come back. Skipped where the machine has no IPv6 loopback.
#[test]
fn a_dual_stack_switch_names_itself_to_each_peer_in_its_family() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!(
            "no IPv6 loopback: a_dual_stack_switch_names_itself_to_each_peer_in_its_family skipped"
        );
        return;
    }
    let port = 25380;
    let sw = Switch::start_with("dual-stack-names", port, |c| {
        c.replace(
            &format!("\"tcp:127.0.0.1:{port}\"]"),
            &format!("\"tcp:127.0.0.1:{port}\", \"udp:[::1]:{port}\"]"),
        )
        .replace("address = \"127.0.0.1\"", "address = \"::1\"")
    });
    let v6_switch: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let friend = Phone::at(&format!("[::1]:{}", port + 10), v6_switch);
    let carrier = Phone::new("127.0.0.2", sw.addr());
    let local = carrier.local();
    carrier.send(&format!(
        "INVITE sip:+34944000200@{switch} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-ds1\r\nMax-Forwards: 70\r\n\
         From: <sip:+34600111222@pstn.example.net>;tag=ds1\r\n\
         To: <sip:+34944000200@pstn.example.net>\r\n\
         Call-ID: ds1@carrier\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:carrier@{local}>\r\nContent-Length: 0\r\n\r\n",
        switch = sw.addr()
    ));
    let invite = friend
        .recv_where(Duration::from_secs(3), |m| m.0.starts_with("INVITE "))
        .expect("the INVITE reaches the v6 friend");
    let via = invite.header("Via").unwrap();
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP [::1]:{port};")),
        "{via}"
    );
    let routes: Vec<String> = invite
        .headers("Record-Route")
        .flat_map(|v| v.split(", "))
        .map(str::to_owned)
        .collect();
    assert_eq!(routes.len(), 2, "{routes:?}");
    assert!(
        routes[0].starts_with(&format!("<sip:[::1]:{port};lr;")),
        "{routes:?}"
    );
    assert!(
        routes[1].starts_with(&format!("<sip:127.0.0.1:{port};lr;")),
        "{routes:?}"
    );
    friend.reply(&invite, 200, "OK");
    let ok = carrier
        .recv_where(Duration::from_secs(3), |m| m.status() == 200)
        .expect("the friend's 200, sent by its Via, reaches the carrier");
    let to = ok.header("To").unwrap().to_owned();

    // The friend hangs up along its route set (the Record-Route as it
    // received it): its first entry is the switch's v6 address.
    let friend_local = friend.local();
    friend.send(&format!(
        "BYE sip:carrier@{local} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {friend_local};branch=z9hG4bK-ds1bye\r\nMax-Forwards: 70\r\n\
         Route: {route}\r\nFrom: {to}\r\nTo: {from}\r\n\
         Call-ID: ds1@carrier\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        route = routes.join(", "),
        from = invite.header("From").unwrap(),
    ));
    let bye = carrier
        .recv_where(Duration::from_secs(3), |m| m.0.starts_with("BYE "))
        .expect("the friend's BYE reaches the carrier");
    carrier.reply(&bye, 200, "OK");
    let done = friend
        .recv_where(Duration::from_secs(3), |m| m.status() == 200)
        .expect("the BYE's 200 reaches the friend");
    assert!(done.first_line().contains("200"), "{}", done.0);
}
