//! Friend features on the wire (DOMAIN.md §3–§5, issue 6): SIPp plays the
//! carrier and the friend `branch`, and checks with `ereg … check_it` what
//! each far end receives: numbers in the friend's format, From host,
//! presented identity, the SDP filtered both ways, From/To restored in
//! every direction, 488, and a friend that challenges the switch.

use std::time::Duration;

use crate::wire::{
    both_sides_pass, carrier_dials, md5_only, scenario, uac_auth, uac_error, uas, write_scenario,
    Sipp, Switch, TempDir, BRANCH_DDI,
};

fn friend_scenario(name: &str) -> std::path::PathBuf {
    scenario(&format!("friend/{name}"))
}

/// Carrier → DDI → friend: Request-URI and From in the friend's format,
/// From host the company domain, SDP filtered to the friend's codecs in the
/// offer and in a re-INVITE; the friend hangs up and the carrier sees its
/// own From/To in every response and in that BYE.
#[test]
fn carrier_call_to_a_friend_is_rewritten_and_restored() {
    let sw = Switch::start("fr-ddi", 22000);
    let friend = uas("127.0.0.1", 22010, &friend_scenario("callee.xml"), 1);
    std::thread::sleep(Duration::from_millis(200));
    let carrier = Sipp::spawn(&[
        &sw.addr().to_string(),
        "-sf",
        friend_scenario("carrier.xml").to_str().unwrap(),
        "-i",
        "127.0.0.2",
        "-m",
        "1",
    ]);
    assert_eq!(carrier.wait(Duration::from_secs(30)), 0, "carrier side");
    assert_eq!(friend.wait(Duration::from_secs(10)), 0, "friend side");
}

/// The carrier side of an external call: checks the Request-URI (E.164),
/// From and P-Asserted-Identity (the presented number at the company
/// domain), that no other identity header or the friend's own number
/// leaked, and the SDP filtered to the calling friend's codecs.
fn carrier_expecting(dialled: &str, presented: &str) -> String {
    let p = presented.replace('+', "\\+");
    carrier_expecting_from(
        dialled,
        presented,
        &format!("&quot;Branch office&quot; &lt;sip:{p}@acme\\.example\\.com&gt;"),
    )
}

/// As [`carrier_expecting`], with the From name-addr (display name and
/// `<URI>`, XML-escaped) given as a regular expression (`from`): the
/// caller's display name stays.
fn carrier_expecting_from(dialled: &str, presented: &str, from: &str) -> String {
    let d = dialled.replace('+', "\\+");
    let p = presented.replace('+', "\\+");
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier expects {presented}">
  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp="^INVITE sip:{d}@127\.0\.0\.2:[0-9]+ SIP/2\.0" search_in="msg" check_it="true" assign_to="a"/>
      <ereg regexp="^ *{from};tag=" search_in="hdr" header="From:" check_it="true" assign_to="b"/>
      <ereg regexp="^ *&lt;sip:{p}@acme\.example\.com&gt;" search_in="hdr" header="P-Asserted-Identity:" check_it="true" assign_to="c"/>
      <ereg regexp="P-Preferred-Identity|Remote-Party-ID|Proxy-Authorization|600999999|600888888|600123456" search_in="msg" check_it_inverse="true" assign_to="e"/>
      <ereg regexp="m=audio [0-9]+ RTP/AVP 8 0\r?\n" search_in="body" check_it="true" assign_to="f"/>
    </action>
  </recv>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]K[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Content-Length: 0

  ]]></send>
  <recv request="ACK"/>
  <recv request="BYE">
    <action>
      <ereg regexp="^ *{from};tag=" search_in="hdr" header="From:" check_it="true" assign_to="g"/>
      <ereg regexp="P-Preferred-Identity|Remote-Party-ID|600999999|600888888|600123456" search_in="msg" check_it_inverse="true" assign_to="h"/>
    </action>
  </recv>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
  <timewait milliseconds="300"/>
  <Reference variables="a,b,c,e,f,g,h"/>
</scenario>
"#
    )
}

/// A friend calling with digest, optionally presenting `pai`, offering
/// G.729 too; expects `final_code` (after the 407 round).
fn friend_caller(pai: Option<&str>, final_code: u16) -> String {
    friend_caller_with(pai, "", final_code)
}

/// As [`friend_caller`], with `extra` header lines in its requests.
fn friend_caller_with(pai: Option<&str>, extra: &str, final_code: u16) -> String {
    let pai = pai
        .map(|p| format!("P-Asserted-Identity: <sip:{p}@acme.example.com>\n      P-Preferred-Identity: <sip:+34600999999@acme.example.com>\n      Remote-Party-ID: <sip:+34600888888@acme.example.com>;party=calling\n      "))
        .unwrap_or_default()
        + extra;
    let invite = |cseq: u32, auth: &str| {
        format!(
            r#"<send retrans="500"><![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Branch office" <sip:branch@acme.example.com>;tag=[pid]T[call_number]
      To: <sip:[service]@acme.example.com>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:branch@[local_ip]:[local_port]>
      {pai}{auth}Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 18 8 0
      a=rtpmap:18 G729/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000

  ]]></send>"#
        )
    };
    let ack = |cseq: u32, via: &str, uri: &str, routes: &str| {
        format!(
            r#"<send><![CDATA[

      ACK {uri} SIP/2.0
      {via}
      From: "Branch office" <sip:branch@acme.example.com>;tag=[pid]T[call_number]
      [last_To:]
      {routes}Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>"#
        )
    };
    let first = invite(1, "");
    let second = invite(2, "[authentication]\n      ");
    let ack1 = ack(
        1,
        "[last_Via:]",
        "sip:[service]@[remote_ip]:[remote_port]",
        "",
    );
    let tail = if final_code == 200 {
        format!(
            r#"<recv response="200" rrs="true"/>
  {}
  <pause milliseconds="100"/>
  <send retrans="500"><![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Branch office" <sip:branch@acme.example.com>;tag=[pid]T[call_number]
      [last_To:]
      [routes]
      {pai}Call-ID: [call_id]
      CSeq: 3 BYE
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200"/>"#,
            ack(
                2,
                "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
                "[next_url]",
                "[routes]\n      "
            )
        )
    } else {
        format!(
            r#"<recv response="{final_code}"/>
  {}
  <timewait milliseconds="300"/>"#,
            ack(
                2,
                "[last_Via:]",
                "sip:[service]@[remote_ip]:[remote_port]",
                ""
            )
        )
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="friend caller">
  {first}
  <recv response="100" optional="true"/>
  <recv response="407" auth="true"/>
  {ack1}
  {second}
  <recv response="100" optional="true"/>
  {tail}
</scenario>
"#
    )
}

fn branch_calls(sw: &Switch, xml: &std::path::Path, dialled: &str) -> Sipp {
    Sipp::spawn(&[
        &sw.addr().to_string(),
        "-sf",
        xml.to_str().unwrap(),
        "-i",
        "127.0.0.1",
        "-s",
        dialled,
        "-au",
        "branch",
        "-ap",
        "Branch-Secret-77",
        "-m",
        "1",
    ])
}

/// Friend → external: the presented number is the friend's PAI when it is
/// a company DDI, else the friend's fallback DDI; From and PAI carry it,
/// nothing else leaks; the call ACL refuses what it denies (403).
#[test]
fn friend_external_calls_present_the_right_identity() {
    let sw = Switch::start_with("fr-ext", 22100, md5_only);
    let dir = TempDir::new("fr-ext-scenarios");
    for (round, (pai, presented)) in [
        (None, "+34944000200"),                 // From user "branch": fallback
        (Some("+34944000101"), "+34944000101"), // a company DDI: kept
        (Some("+34600123456"), "+34944000200"), // not a DDI: replaced
    ]
    .into_iter()
    .enumerate()
    {
        let carrier_xml = write_scenario(
            &dir.0,
            &format!("carrier{round}.xml"),
            &carrier_expecting("+34944123456", presented),
        );
        let carrier = uas("127.0.0.2", 22120, &carrier_xml, 1);
        std::thread::sleep(Duration::from_millis(200));
        let caller_xml = write_scenario(
            &dir.0,
            &format!("caller{round}.xml"),
            &friend_caller(pai, 200),
        );
        let caller = branch_calls(&sw, &caller_xml, "944123456");
        both_sides_pass(caller, carrier, &format!("round {round}: "));
    }

    // Privacy: the number goes only in P-Asserted-Identity, with
    // `Privacy: id`; From stays anonymous (RFC 3323 §4.1.1.3), in the BYE
    // too. Asked for with a Privacy header, or with an anonymous From
    // alone (`anonymous.invalid` names no company: the friend is known by
    // its address and authenticates as itself).
    let anonymous_from = r#""Anonymous" <sip:anonymous@anonymous.invalid>"#;
    for (round, extra, from) in [
        ("privacy", "Privacy: id\n      ", None),
        ("anonymous", "", Some(anonymous_from)),
    ] {
        let carrier_xml = write_scenario(
            &dir.0,
            &format!("carrier-{round}.xml"),
            &carrier_expecting_from(
                "+34944123456",
                "+34944000101",
                "&quot;Anonymous&quot; &lt;sip:anonymous@anonymous\\.invalid&gt;",
            )
            .replace(
                r#"<ereg regexp="m=audio"#,
                r#"<ereg regexp="^ *id *$" search_in="hdr" header="Privacy:" check_it="true" assign_to="p"/>
      <ereg regexp="m=audio"#,
            )
            .replace(r#"variables="a,"#, r#"variables="p,a,"#),
        );
        let carrier = uas("127.0.0.2", 22120, &carrier_xml, 1);
        std::thread::sleep(Duration::from_millis(200));
        let mut caller = friend_caller_with(Some("+34944000101"), extra, 200);
        if let Some(from) = from {
            caller = caller.replace(r#""Branch office" <sip:branch@acme.example.com>"#, from);
        }
        let caller_xml = write_scenario(&dir.0, &format!("caller-{round}.xml"), &caller);
        let caller = branch_calls(&sw, &caller_xml, "944123456");
        both_sides_pass(caller, carrier, &format!("{round}: "));
    }

    // Denied by the friend's ACL (national: the rest of the world denied).
    let denied = write_scenario(&dir.0, "denied.xml", &friend_caller(None, 403));
    let caller = branch_calls(&sw, &denied, "0033123456789");
    assert_eq!(caller.wait(Duration::from_secs(30)), 0, "ACL denial is 403");
}

const FRIEND_CHALLENGES: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="friend challenges">
  <recv request="INVITE"/>
  <send><![CDATA[

      SIP/2.0 407 Proxy Authentication Required
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]X[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Proxy-Authenticate: Digest realm="branch.example", nonce="abc", qop="auth"
      Content-Length: 0

  ]]></send>
  <recv request="ACK"/>
  <timewait milliseconds="300"/>
</scenario>
"#;

/// A carrier offer with nothing the friend accepts.
const CARRIER_G729_ONLY: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="g729 only">
  <send retrans="500"><![CDATA[

      INVITE sip:+34944000200@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:+34600111222@pstn.example.net>;tag=[pid]C[call_number]
      To: <sip:+34944000200@pstn.example.net>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:c@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=- 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 18
      a=rtpmap:18 G729/8000

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="488"/>
  <send><![CDATA[

      ACK sip:+34944000200@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
      From: <sip:+34600111222@pstn.example.net>;tag=[pid]C[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <timewait milliseconds="300"/>
</scenario>
"#;

/// An offer with no codec the friend accepts is refused with 488 before
/// it reaches the friend; a friend that challenges the switch is not
/// answered and the caller gets a final failure (502).
#[test]
fn unacceptable_offers_and_challenging_friends_fail_cleanly() {
    let sw = Switch::start("fr-fail", 22200);
    let dir = TempDir::new("fr-fail-scenarios");
    let g729 = write_scenario(&dir.0, "g729.xml", CARRIER_G729_ONLY);
    let carrier = Sipp::spawn(&[
        &sw.addr().to_string(),
        "-sf",
        g729.to_str().unwrap(),
        "-i",
        "127.0.0.2",
        "-m",
        "1",
    ]);
    assert_eq!(carrier.wait(Duration::from_secs(20)), 0, "488 expected");

    let challenges = write_scenario(&dir.0, "challenges.xml", FRIEND_CHALLENGES);
    let friend = uas("127.0.0.1", 22210, &challenges, 1);
    std::thread::sleep(Duration::from_millis(200));
    let expect_502 = write_scenario(&dir.0, "uac502.xml", &uac_error(502));
    let caller = carrier_dials(&sw, BRANCH_DDI, &expect_502);
    assert_eq!(caller.wait(Duration::from_secs(20)), 0, "502 expected");
    assert_eq!(
        friend.wait(Duration::from_secs(10)),
        0,
        "friend got its ACK"
    );
}

/// The friend side of an internal call: the Request-URI user is what was
/// dialled, the From is the calling user's extension at the company domain.
fn friend_expecting(dialled: &str, from_user: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="friend expects {dialled}">
  <recv request="INVITE" rrs="true">
    <action>
      <ereg regexp="^INVITE sip:{dialled}@127\.0\.0\.1:[0-9]+ SIP/2\.0" search_in="msg" check_it="true" assign_to="a"/>
      <ereg regexp="^ *&lt;sip:{from_user}@acme\.example\.com&gt;;tag=" search_in="hdr" header="From:" check_it="true" assign_to="b"/>
    </action>
  </recv>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]B[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:branch@[local_ip]:[local_port]>
      Content-Length: 0

  ]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
  <timewait milliseconds="300"/>
  <Reference variables="a,b"/>
</scenario>
"#
    )
}

/// A user (alice, through her terminal, with digest) calls the friend by
/// extension (102) and by numbers matching its patterns (2001, and an
/// E.164 number, which arrives in the friend's local format): the friend
/// sees alice's extension (101) as the caller.
#[test]
fn users_reach_friends_by_extension_and_pattern() {
    let sw = Switch::start_with("fr-user", 22300, |c| {
        md5_only(c).replace(
            "patterns = [\"2[0-9]{3}\"]",
            "patterns = [\"2[0-9]{3}\", \"\\\\+34946[0-9]{6}\"]",
        )
    });
    let dir = TempDir::new("fr-user-scenarios");
    // (dialled, what the friend's Request-URI says): an E.164 number
    // matched by a pattern arrives in the friend's local format.
    for (dialled, seen) in [
        ("102", "102"),
        ("2001", "2001"),
        ("+34946123456", "946123456"),
    ] {
        let expect = write_scenario(
            &dir.0,
            &format!("friend{seen}.xml"),
            &friend_expecting(seen, "101"),
        );
        let friend = uas("127.0.0.1", 22310, &expect, 1);
        std::thread::sleep(Duration::from_millis(200));
        let caller = uac_auth(sw.addr(), dialled, "alice-phone", "Correct-Horse-42", 1);
        assert_eq!(caller.wait(Duration::from_secs(30)), 0, "{dialled}: caller");
        assert_eq!(friend.wait(Duration::from_secs(10)), 0, "{dialled}: friend");
    }
}
