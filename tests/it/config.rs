//! Configuration validation (DOMAIN.md §2) as a table of broken snippets,
//! and the `tandem check` / `route` / `run` command line.

use std::process::Command;

use tandem::config;

/// A valid base. Snippets are appended: `[[company.x]]` tables land in
/// `acme`, `[[company]]` starts a new company, `[server]` etc. are global.
const BASE: &str = r#"
[[carrier]]
name = "pstn"
address = "udp:127.0.0.2:5090"
sources = ["127.0.0.2/32"]

[[company]]
name = "acme"
domain = "acme.example.com"
country_code = "34"
national_length = 9
carrier = "pstn"

  [[company.terminal]]
  name = "alice-phone"
  password = "x"

  [[company.user]]
  name = "alice"
  terminal = "alice-phone"

  [[company.friend]]
  name = "branch"
  priority = 10
  password = "p"
  connection = "register"
  patterns = ["2[0-9]{3}"]

  [[company.extension]]
  number = "101"
  user = "alice"

  [[company.ddi]]
  number = "+34944000100"
  user = "alice"

  [[company.call_acl]]
  name = "national"
  default = "deny"
  rules = [ { allow = "\\+34[0-9]{9}" } ]
"#;

/// A second company for cross-company cases; `{}` is replaced per case.
const BETA: &str = r#"
[[company]]
name = "beta"
domain = "beta.example.com"
country_code = "34"
national_length = 9
carrier = "pstn"
"#;

/// (snippet appended to BASE, expected substring of one error line)
#[rustfmt::skip]
const CASES: &[(&str, &str)] = &[
    // Syntax (line and column), unknown keys, types (place, line and column).
    ("[server\n", "line 41, column 8: invalid table header"),
    ("[server]\nlisten = [\"udp:127.0.0.1:5060\"]\nlisen = 1\n", "server.lisen: unknown key `lisen`"),
    ("  [[company.terminal]]\n  name = \"t2\"\n  pasword = \"x\"\n", "company[acme].terminal[t2].pasword: unknown key `pasword`"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = \"high\"\n", "company[acme].friend[f].priority: invalid type: string \"high\", expected u32 (line 43, column 14)"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"nat\"\n", "company[acme].friend[f].connection: unknown variant `nat`, expected `register` or `direct` (line 45, column 16)"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n", "company[acme].friend[f]: missing field `connection` (line 41, column 3)"),
    ("[server]\nworkers = \"two\"\n", "server.workers: invalid type: string \"two\", expected u32 (line 42, column 11)"),
    // A date or time (no key takes one; read as a tree it would pass as a string).
    ("  [[company.terminal]]\n  name = \"t2\"\n  password = 2024-01-01\n", "company[acme].terminal[t2].password: invalid type: date-time 2024-01-01, no key takes one (line 43, column 14)"),
    // An element of the wrong type does not hide the next one's problem.
    ("[server]\nlisten = [\"udp:127.0.0.1:5060\", 5061, \"bogus\"]\n", "server.listen[2]: \"bogus\""),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = 5\n", "company[acme].friend[f].connection: invalid type: an integer, expected `register` or `direct` (line 45, column 16)"),
    ("[[carrier]]\nname = \"c2\"\naddress = \"udp:127.0.0.3:70000\"\n", "carrier[c2].address: \"udp:127.0.0.3:70000\": the port must be 1 to 65535"),
    // Shapes serde alone would take: a table for an enum, a list for a table.
    ("  [[company.call_acl]]\n  name = \"x\"\n  default = { deny = {} }\n", "company[acme].call_acl[x].default: invalid type: a table, expected `allow` or `deny`"),
    ("  [[company.call_acl]]\n  name = \"x\"\n  default = \"allow\"\n  rules = [ { deny = \"(\" }, \"deny premium\" ]\n", "company[acme].call_acl[x].rules[0]: invalid regex"),
    ("  [[company.call_acl]]\n  name = \"x\"\n  default = \"allow\"\n  rules = [ { deny = \"(\" }, \"deny premium\" ]\n", "company[acme].call_acl[x].rules[1]: invalid type: a string, expected a table"),
    ("  [[company.ddi]]\n  number = 1979-05-27\n  user = \"alice\"\n", ".number: invalid type: date-time 1979-05-27, no key takes one"),
    ("[[carrier]]\nname = \"c2\"\naddress = \"udp:2001:db8::10:5060\"\n", "carrier[c2].address: \"udp:2001:db8::10:5060\": expected udp:IP:PORT or tcp:IP:PORT (an IPv6 address in brackets"),
    ("[[company]]\nname = \"beta\"\ndomain = \"beta.example.com\"\ncountry_code = \"34\"\nnational_length = \"9\"\ncarrier = \"pstn\"\n", "company[beta].national_length: invalid type: string \"9\", expected u32 (line 45, column 19)"),
    // Namespaces and duplicates.
    ("  [[company.terminal]]\n  name = \"branch\"\n  password = \"x\"\n", "company[acme].friend[branch].name: duplicate terminal or friend name \"branch\""),
    ("  [[company.terminal]]\n  name = \"alice-phone\"\n  password = \"x\"\n", "company[acme].terminal[alice-phone].name: duplicate terminal or friend name"),
    ("  [[company.user]]\n  name = \"alice\"\n  terminal = \"alice-phone\"\n", "company[acme].user[alice].name: duplicate user name"),
    ("  [[company.extension]]\n  number = \"101\"\n  friend = \"branch\"\n", "company[acme].extension[101].number: duplicate extension \"101\""),
    ("  [[company.friend]]\n  name = \"other\"\n  priority = 10\n  password = \"p\"\n  connection = \"register\"\n", "company[acme].friend[other].priority: priority 10 is also the priority of friend branch"),
    ("  [[company.ddi]]\n  number = \"+34944000100\"\n  friend = \"branch\"\n", "company[acme].ddi[+34944000100].number: duplicate DDI"),
    ("  [[company.call_acl]]\n  name = \"national\"\n  default = \"allow\"\n", "company[acme].call_acl[national].name: duplicate call_acl name"),
    ("[[carrier]]\nname = \"pstn\"\naddress = \"udp:127.0.0.3:5090\"\n", "carrier[pstn].name: duplicate carrier name"),
    ("[[carrier]]\nname = \"other\"\naddress = \"udp:127.0.0.3:5090\"\nsources = [\"127.0.0.2/32\"]\n", "carrier[other].sources[0]: network 127.0.0.2/32 is already a source of carrier pstn"),
    // Cross-company.
    ("[[company]]\nname = \"acme\"\ndomain = \"other.example.com\"\ncountry_code = \"34\"\nnational_length = 9\ncarrier = \"pstn\"\n", "company[acme].name: duplicate company name"),
    ("[[company]]\nname = \"beta\"\ndomain = \"ACME.example.com\"\ncountry_code = \"34\"\nnational_length = 9\ncarrier = \"pstn\"\n", "company[beta].domain: duplicate company domain"),
    ("{BETA}  [[company.terminal]]\n  name = \"t\"\n  password = \"x\"\n  [[company.user]]\n  name = \"u\"\n  terminal = \"t\"\n  [[company.ddi]]\n  number = \"+34944000100\"\n  user = \"u\"\n", "company[beta].ddi[+34944000100]: DDI +34944000100 is owned twice (also by company acme)"),
    // Dangling references.
    ("  [[company.user]]\n  name = \"bob\"\n  terminal = \"bob-phone\"\n", "company[acme].user[bob].terminal: unknown terminal \"bob-phone\""),
    ("  [[company.terminal]]\n  name = \"bob-phone\"\n  password = \"x\"\n  [[company.user]]\n  name = \"bob\"\n  terminal = \"bob-phone\"\n  call_acl = \"nope\"\n", "company[acme].user[bob].call_acl: unknown call_acl \"nope\""),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"register\"\n  call_acl = \"nope\"\n", "company[acme].friend[f].call_acl: unknown call_acl \"nope\""),
    ("  [[company.extension]]\n  number = \"102\"\n  user = \"bob\"\n", "company[acme].extension[102].user: unknown user \"bob\""),
    ("  [[company.extension]]\n  number = \"102\"\n  friend = \"nope\"\n", "company[acme].extension[102].friend: unknown friend \"nope\""),
    ("  [[company.ddi]]\n  number = \"+34944000101\"\n  user = \"bob\"\n", "company[acme].ddi[+34944000101].user: unknown user \"bob\""),
    ("  [[company.ddi]]\n  number = \"+34944000101\"\n  friend = \"nope\"\n", "company[acme].ddi[+34944000101].friend: unknown friend \"nope\""),
    ("  [[company.ddi]]\n  number = \"+34944000101\"\n  extension = \"999\"\n", "company[acme].ddi[+34944000101].extension: unknown extension \"999\""),
    ("[[company]]\nname = \"beta\"\ndomain = \"beta.example.com\"\ncountry_code = \"34\"\nnational_length = 9\ncarrier = \"nope\"\n", "company[beta].carrier: unknown carrier \"nope\""),
    ("[[company]]\nname = \"beta\"\ndomain = \"beta.example.com\"\ncountry_code = \"34\"\nnational_length = 9\n", "company[beta].carrier: missing"),
    ("  [[company.terminal]]\n  name = \"t2\"\n  password = \"x\"\n  [[company.user]]\n  name = \"bob\"\n  terminal = \"alice-phone\"\n", "company[acme].user[bob].terminal: terminal \"alice-phone\" already belongs to user alice"),
    // Regexes, with the engine's message.
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"register\"\n  patterns = [\"3[0-9]{3}\", \"2[0-9\"]\n", "company[acme].friend[f].patterns[1]: invalid regex: unclosed character class at column 2"),
    ("  [[company.call_acl]]\n  name = \"x\"\n  default = \"allow\"\n  rules = [ { deny = \"(+34\" } ]\n", "company[acme].call_acl[x].rules[0]: invalid regex: "),
    ("  [[company.call_acl]]\n  name = \"x\"\n  default = \"allow\"\n  rules = [ { deny = \"1\", allow = \"2\" } ]\n", "company[acme].call_acl[x].rules[0]: set exactly one of: allow, deny"),
    // Friend connection.
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"register\"\n  address = \"192.0.2.1\"\n  port = 5060\n", "company[acme].friend[f].connection: a register friend has no address fields (remove address, port)"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"direct\"\n", "company[acme].friend[f].connection: a direct friend needs address"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"direct\"\n  address = \"bad host\"\n", "company[acme].friend[f].address: \"bad host\" is not an IP address"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"direct\"\n  address = \"pbx.example.com\"\n", "company[acme].friend[f].address: \"pbx.example.com\": a host name, not an IP address (the switch resolves no names"),
    ("[[carrier]]\nname = \"c2\"\naddress = \"udp:sbc.carrier.example:5060\"\n", "carrier[c2].address: \"udp:sbc.carrier.example:5060\": a host name, not an IP address"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"register\"\n  patterns = [\"(?u)3\\\\b\"]\n", "company[acme].friend[f].patterns[0]: invalid regex: a Unicode word boundary"),
    // Passwords.
    ("  [[company.terminal]]\n  name = \"t2\"\n  password = \"\"\n", "company[acme].terminal[t2].password: must not be empty"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"\"\n  connection = \"register\"\n", "company[acme].friend[f].password: must not be empty"),
    // E.164.
    ("  [[company.ddi]]\n  number = \"944000101\"\n  user = \"alice\"\n", "company[acme].ddi[944000101].number: \"944000101\" is not an E.164 number"),
    ("  [[company.ddi]]\n  number = \"+3494\"\n  user = \"alice\"\n", "company[acme].ddi[+3494].number: \"+3494\" is not an E.164 number"),
    ("[[company]]\nname = \"beta\"\ndomain = \"beta.example.com\"\ncountry_code = \"34\"\nnational_length = 9\ncarrier = \"pstn\"\noutgoing_ddi = \"+34-944\"\n", "company[beta].outgoing_ddi: \"+34-944\" is not an E.164 number"),
    ("  [[company.terminal]]\n  name = \"t2\"\n  password = \"x\"\n  [[company.user]]\n  name = \"bob\"\n  terminal = \"t2\"\n  outgoing_ddi = \"12\"\n", "company[acme].user[bob].outgoing_ddi: \"12\" is not an E.164"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"register\"\n  fallback_outgoing_ddi = \"+1234567890123456\"\n", "company[acme].friend[f].fallback_outgoing_ddi: \"+1234567890123456\" is not an E.164"),
    // Codecs.
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"register\"\n  allowed_codecs = [\"pcma\", \"MP3\"]\n", "company[acme].friend[f].allowed_codecs[1]: unknown codec \"MP3\""),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"register\"\n  allowed_codecs = []\n", "company[acme].friend[f].allowed_codecs: empty list"),
    // Extensions and DDIs: exactly one target.
    ("  [[company.extension]]\n  number = \"102\"\n  user = \"alice\"\n  friend = \"branch\"\n", "company[acme].extension[102]: set exactly one of: user, friend"),
    ("  [[company.extension]]\n  number = \"102\"\n", "company[acme].extension[102]: set exactly one of: user, friend"),
    ("  [[company.extension]]\n  number = \"1a\"\n  user = \"alice\"\n", "company[acme].extension[1a].number: \"1a\" is not an extension"),
    ("  [[company.ddi]]\n  number = \"+34944000101\"\n", "company[acme].ddi[+34944000101]: set exactly one of: user, friend, extension"),
    // Numbering.
    ("[[company]]\nname = \"beta\"\ndomain = \"beta.example.com\"\ncountry_code = \"+34\"\nnational_length = 0\ncarrier = \"pstn\"\n", "company[beta].country_code: \"+34\" is not 1 to 3 digits"),
    ("[[company]]\nname = \"beta\"\ndomain = \"beta.example.com\"\ncountry_code = \"34\"\nnational_length = 0\ncarrier = \"pstn\"\n", "company[beta].national_length: 0 is not between 1 and 14"),
    ("[[company]]\nname = \"beta\"\ndomain = \"beta.example.com\"\ncountry_code = \"34\"\narea_code = \"9a\"\ninternational_prefix = \"\"\nnational_length = 9\ncarrier = \"pstn\"\n", "company[beta].area_code: \"9a\" is not 1 to 14 digits"),
    ("[[company]]\nname = \"beta\"\ndomain = \"beta.example.com\"\ncountry_code = \"34\"\ninternational_prefix = \"\"\nnational_length = 9\ncarrier = \"pstn\"\n", "company[beta].international_prefix: \"\" is not 1 to 4 digits"),
    ("  [[company.friend]]\n  name = \"f\"\n  priority = 1\n  password = \"p\"\n  connection = \"register\"\n  trunk_prefix = \"O\"\n", "company[acme].friend[f].trunk_prefix: \"O\" is not 0 to 4 digits"),
    ("[[company]]\nname = \"beta\"\ndomain = \"not a domain\"\ncountry_code = \"34\"\nnational_length = 9\ncarrier = \"pstn\"\n", "company[beta].domain: \"not a domain\" is not a domain name"),
    ("[[company]]\nname = \"be ta\"\ndomain = \"beta.example.com\"\ncountry_code = \"34\"\nnational_length = 9\ncarrier = \"pstn\"\n", "company[be ta].name: \"be ta\" is not a name"),
    // Server, auth, carriers.
    ("[server]\nlisten = [\"udp:127.0.0.1\"]\n", "server.listen[0]: \"udp:127.0.0.1\": expected udp:IP:PORT or tcp:IP:PORT"),
    ("[server]\nlisten = [\"sctp:127.0.0.1:5060\"]\n", "server.listen[0]: \"sctp:127.0.0.1:5060\": must start with udp: or tcp:"),
    ("[server]\nlisten = [\"udp:localhost:5060\"]\n", "server.listen[0]: \"udp:localhost:5060\": expected udp:IP:PORT"),
    ("[server]\nlisten = [\"udp:127.0.0.1:5060\", \"udp:127.0.0.1:5060\"]\n", "server.listen[1]: duplicate listen address"),
    ("[server]\nlisten = []\n", "server.listen: must not be empty"),
    ("[server]\ndata_dir = \"\"\n", "server.data_dir: must not be empty"),
    ("[server]\nbatch_window_us = 50000\n", "server.batch_window_us: must not exceed 20000 (microseconds)"),
    ("[server]\ntcp_idle_s = 0\n", "server.tcp_idle_s: must be at least 1 (seconds)"),
    ("[server]\ntcp_max_connections = 0\n", "server.tcp_max_connections: must be at least 1"),
    ("[server]\nlisten = [\"udp:0.0.0.0:5060\"]\n", "server.advertised_host: must be set when the first listen address is a wildcard"),
    ("[server]\nlisten = [\"udp:[::]:5060\"]\n", "server.advertised_host: must be set when the first listen address is a wildcard"),
    ("[auth]\nalgorithms = [\"SHA-1\"]\n", "auth.algorithms[0]: unknown digest algorithm \"SHA-1\""),
    ("[auth]\nnonce_lifetime_s = 0\n", "auth.nonce_lifetime_s: must be at least 1"),
    ("[auth]\nban_s = 0\n", "auth.ban_s: must be at least 1"),
    ("[registrar]\nmax_bindings = 300\n", "registrar.max_bindings: must not exceed 256"),
    ("[[carrier]]\nname = \"c2\"\naddress = \"127.0.0.3:5090\"\n", "carrier[c2].address: \"127.0.0.3:5090\": must start with udp: or tcp:"),
    ("[[carrier]]\nname = \"c2\"\naddress = \"udp:127.0.0.3:5090\"\nsources = [\"10.0.0.1/8\"]\n", "carrier[c2].sources[0]: \"10.0.0.1/8\" has host bits set (did you mean 10.0.0.0/8?)"),
    ("[[carrier]]\nname = \"c2\"\naddress = \"udp:127.0.0.3:5090\"\nsources = [\"10.0.0.0/33\"]\n", "carrier[c2].sources[0]: \"10.0.0.0/33\": prefix length must be 0 to 32"),
    ("[[carrier]]\nname = \"c2\"\naddress = \"udp:127.0.0.3:5090\"\nsources = [\"ten/8\"]\n", "carrier[c2].sources[0]: \"ten/8\" is not a network"),
];

#[test]
fn each_error_kind_is_reported_with_its_place() {
    assert!(
        config::parse(BASE).is_ok(),
        "{}",
        config::parse(BASE).unwrap_err()
    );
    let mut failures = Vec::new();
    for &(snippet, want) in CASES {
        let text = format!("{BASE}{}", snippet.replace("{BETA}", BETA));
        match config::parse(&text) {
            Ok(_) => failures.push(format!("accepted, want {want:?}:\n{snippet}")),
            Err(errors) => {
                if !errors.iter().any(|e| e.to_string().contains(want)) {
                    failures.push(format!("want {want:?}, got:\n{errors}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n---\n"));
}

/// Many problems in one file: every one is reported, in file order.
const BROKEN: &str = r#"
[server]
listen = ["udp:127.0.0.1:99999"]

[[carrier]]
name = "pstn"
address = "udp:127.0.0.2:5090"
sources = ["127.0.0.2/33"]

[[company]]
name = "acme"
domain = "acme.example.com"
country_code = "34"
national_length = 9
outgoing_ddi = "34944000000"
carrier = "pstn"

  [[company.terminal]]
  name = "alice-phone"
  password = ""

  [[company.friend]]
  name = "branch"
  priority = 10
  password = "p"
  connection = "direct"
  patterns = ["2[0-9]{3}", "2[0-9"]
  allowed_codecs = ["PCMA", "G.711"]

  [[company.extension]]
  number = "101"
  user = "alice"
"#;

#[test]
fn all_errors_are_reported_at_once() {
    let errors = config::parse(BROKEN).unwrap_err();
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let want = [
        "server.listen[0]: \"udp:127.0.0.1:99999\": expected udp:IP:PORT or tcp:IP:PORT",
        "carrier[pstn].sources[0]: \"127.0.0.2/33\": prefix length must be 0 to 32",
        "company[acme].outgoing_ddi: \"34944000000\" is not an E.164 number ('+' and 8 to 15 digits)",
        "company[acme].terminal[alice-phone].password: must not be empty",
        "company[acme].friend[branch].connection: a direct friend needs address (and optionally transport, port)",
        "company[acme].friend[branch].patterns[1]: invalid regex: unclosed character class at column 2 of \"2[0-9\"",
        "company[acme].friend[branch].allowed_codecs[1]: unknown codec \"G.711\"",
        "company[acme].extension[101].user: unknown user \"alice\"",
    ];
    assert_eq!(lines, want);
    assert_eq!(errors.len(), want.len());
    // Every error carries its place and kind separately too.
    let first = errors.iter().next().unwrap();
    assert_eq!(first.place().as_str(), "server.listen[0]");
    assert!(matches!(first.kind(), config::ErrorKind::Invalid(_)));
}

/// Values of the wrong type do not hide each other, nor the problems
/// validation finds in the rest; what could not be read is not reported
/// again as an unknown name where it is referenced.
const MISTYPED: &str = r#"
[server]
workers = "two"

[[carrier]]
name = "pstn"
address = "udp:127.0.0.2:5090"

[[company]]
name = "acme"
domain = "acme.example.com"
country_code = "34"
national_length = 9
carrier = "pstn"

  [[company.terminal]]
  name = "alice-phone"
  password = 1234

  [[company.user]]
  name = "alice"
  terminal = "alice-phone"

  [[company.friend]]
  name = "branch"
  priority = "first"
  password = "p"
  connection = "direct"
  address = "127.0.0.1"
  port = 70000
  patterns = ["2[0-9"]
"#;

#[test]
fn every_wrong_type_is_reported_with_the_other_problems() {
    let errors = config::parse(MISTYPED).unwrap_err();
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let want = [
        "server.workers: invalid type: string \"two\", expected u32 (line 3, column 11)",
        "company[acme].terminal[alice-phone].password: invalid type: integer `1234`, expected a string (line 18, column 14)",
        "company[acme].friend[branch].priority: invalid type: string \"first\", expected u32 (line 26, column 14)",
        "company[acme].friend[branch].port: invalid value: integer `70000`, expected u16 (line 30, column 10)",
        "company[acme].friend[branch].patterns[0]: invalid regex: unclosed character class at column 2 of \"2[0-9\"",
    ];
    assert_eq!(lines, want);
    // A reload of such a file is refused too.
    assert!(config::parse_unvalidated(MISTYPED).is_err());
}

/// What is left out for a wrong value is not an unknown name elsewhere in
/// its company, but still is in another company; a table where an array
/// of tables is expected is named with its line, and the rest validated.
#[test]
fn left_out_items_hide_nothing_else() {
    let demo = std::fs::read_to_string("config/tandem.toml").unwrap();
    let text = demo.replace("  password = \"Correct-Horse-42\"\n", "")
        + "\n[[company]]\nname = \"beta\"\ndomain = \"beta.example.com\"\ncountry_code = \"34\"\n\
           national_length = 9\ncarrier = \"pstn\"\n  [[company.user]]\n  name = \"bob\"\n  \
           terminal = \"alice-phone\"\n";
    let lines: Vec<String> = config::parse(&text)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        lines,
        [
            "company[acme].terminal[alice-phone]: missing field `password` (line 59, column 3)",
            "company[beta].user[bob].terminal: unknown terminal \"alice-phone\"",
        ]
    );

    let text = demo
        .replace("[[company]]", "[company]")
        .replace("ban_s = 900", "ban_s = 0");
    let lines: Vec<String> = config::parse(&text)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("company: expected an array of tables ([[company]]"),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("(line 46, column 1)"), "{lines:?}");
    assert_eq!(lines[1], "auth.ban_s: must be at least 1");
}

/// An item with an empty name is placed by its index in every error,
/// unknown keys included (validation cannot name it otherwise).
#[test]
fn an_item_without_a_name_is_placed_by_its_index() {
    let text = std::fs::read_to_string("config/tandem.toml")
        .unwrap()
        .replace(
            "  name = \"alice-phone\"\n",
            "  name = \"\"\n  pasword = \"x\"\n",
        );
    let lines: Vec<String> = config::parse(&text)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        lines[0].starts_with("company[acme].terminal[0].pasword: unknown key"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        "company[acme].terminal[0].name: must not be empty"
    );
}

#[test]
fn defaults_and_summary() {
    let cfg = config::parse(BASE).unwrap();
    assert_eq!(cfg.server.listen, ["udp:127.0.0.1:5060"]);
    assert_eq!(cfg.auth.algorithms, ["SHA-256", "MD5"]);
    assert_eq!(cfg.company[0].international_prefix, "00");
    assert_eq!(cfg.company[0].trunk_prefix, "");
    assert_eq!(
        cfg.summary().to_string(),
        "1 companies, 1 users, 1 friends, 1 patterns, 1 DDIs"
    );
    let missing = config::load("does/not/exist.toml").unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("does/not/exist.toml: cannot read: "),
        "{missing}"
    );
}

fn tandem(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run tandem");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_check() {
    let (code, out, _) = tandem(&["check", "--config", "config/tandem.toml"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "config/tandem.toml: ok: 1 companies, 1 users, 2 friends, 3 patterns, 3 DDIs\n"
    );

    let path = std::env::temp_dir().join(format!("tandem-broken-{}.toml", std::process::id()));
    std::fs::write(&path, BROKEN).unwrap();
    let (code, out, err) = tandem(&["check", "--config", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    assert_eq!(code, 1);
    assert_eq!(out, "");
    let expected = config::parse(BROKEN).unwrap_err().to_string();
    assert_eq!(err.trim_end(), expected);
    assert_eq!(err.lines().count(), 8);
}

#[test]
fn cli_route_and_run() {
    let route = |from: &str, number: &str, presented: Option<&str>| {
        let mut args = vec![
            "route",
            "--config",
            "config/tandem.toml",
            "--company",
            "acme.example.com",
            "--from",
            from,
        ];
        if let Some(p) = presented {
            args.extend(["--presented", p]);
        }
        args.push(number);
        tandem(&args)
    };
    for (from, number, presented, want) in [
        (
            "alice",
            "2001",
            None,
            "friend branch (pattern 2[0-9]{3}, priority 10)",
        ),
        (
            "branch",
            "2001",
            None,
            "friend legacy (pattern 2[0-9]{3}, priority 20)",
        ),
        ("alice", "101", None, "extension 101 -> user alice"),
        // Escaped as a Request-URI may carry it: read as the switch reads it.
        (
            "alice",
            "%32001",
            None,
            "friend branch (pattern 2[0-9]{3}, priority 10)",
        ),
        ("alice", "102", None, "extension 102 -> friend branch"),
        (
            "branch",
            "944123456",
            None,
            "external +34944123456 via pstn as +34944000200",
        ),
        (
            "branch",
            "944123456",
            Some("+34944000100"),
            "external +34944123456 via pstn as +34944000100",
        ),
        (
            "alice",
            "905123456",
            None,
            "denied by acl national (rule 2)",
        ),
        (
            "carrier:pstn",
            "+34944000100",
            None,
            "ddi +34944000100 -> user alice",
        ),
        (
            "carrier:pstn",
            "+34944000101",
            None,
            "ddi +34944000101 -> extension 101 -> user alice",
        ),
        ("carrier:pstn", "+34944999999", None, "not found"),
    ] {
        let (code, out, err) = route(from, number, presented);
        assert_eq!((code, out.trim_end()), (0, want), "{from} {number}: {err}");
    }
    let (code, _, err) = route("mallory", "2001", None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown caller \"mallory\""), "{err}");
    let (code, _, err) = tandem(&[
        "route",
        "--config",
        "config/tandem.toml",
        "--company",
        "nope.example.com",
        "--from",
        "alice",
        "2001",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown company \"nope.example.com\""),
        "{err}"
    );
    // The defaults: `config/tandem.toml`, and a company named by its name.
    let (code, out, err) = tandem(&["route", "--company", "acme", "--from", "alice", "101"]);
    assert_eq!(
        (code, out.trim_end()),
        (0, "extension 101 -> user alice"),
        "{err}"
    );
    let (code, out, _) = tandem(&["check"]);
    assert_eq!(
        (code, out.starts_with("config/tandem.toml: ok: ")),
        (0, true)
    );

    // `run` on a good configuration serves until stopped (tests/it/wire.rs);
    // on a missing one it refuses to start.
    let (code, _, err) = tandem(&["run", "--config", "does/not/exist.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"), "{err}");
}

/// Typos do not hide the other problems: every unknown key is reported,
/// and validation still runs on the rest.
#[test]
fn unknown_keys_and_invalid_values_are_reported_together() {
    let text = format!("[server]\nlistn = 1\n{BASE}")
        + "  [[company.friend]]\n  name = \"f2\"\n  priority = 7\n  password = \"p\"\n  connection = \"register\"\n  patterns = [\"2[0-9\"]\n  prio = 3\n";
    let lines: Vec<String> = config::parse(&text)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(has("server.listn: unknown key `listn`"), "{lines:#?}");
    assert!(
        has("company[acme].friend[f2].prio: unknown key `prio`"),
        "{lines:#?}"
    );
    assert!(
        has("company[acme].friend[f2].patterns[0]: invalid regex"),
        "{lines:#?}"
    );
    // A reload refuses the same text without compiling anything.
    assert!(config::parse_unvalidated(&text).is_err());
}

/// An empty file, or one cut off before its first company (a non-atomic
/// write racing a SIGHUP), is refused: it would replace every tenant with
/// nothing, and a reload keeps the running table instead.
#[test]
fn a_configuration_without_companies_is_refused() {
    let demo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/tandem.toml"),
    )
    .unwrap();
    let cut = &demo[..demo.find("[[company]]").unwrap()];
    for text in ["", cut] {
        let errors = config::parse(text).expect_err("refused");
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains("company: no company configured")),
            "{errors}"
        );
    }
}
