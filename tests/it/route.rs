//! Routing decisions (DOMAIN.md §3, §4.3, §5) as data-driven tables, and
//! reload behaviour of the publisher.

use std::sync::Arc;

use tandem::config;
use tandem::route::{Numbering, Publisher, RoutingTable};

/// Two companies exercising every rule; `acme` mirrors DOMAIN.md §2.
const PLATFORM: &str = r#"
[[carrier]]
name = "pstn"
address = "udp:127.0.0.2:5090"
sources = ["127.0.0.2/32", "10.0.0.0/8"]

[[carrier]]
name = "intl"
address = "tcp:192.0.2.50:5060"
sources = ["10.1.0.0/16"]

[[company]]
name = "acme"
domain = "acme.example.com"
country_code = "34"
area_code = "94"
national_length = 9
outgoing_ddi = "+34944000000"
carrier = "pstn"

  [[company.terminal]]
  name = "alice-phone"
  password = "a"
  [[company.terminal]]
  name = "bob-phone"
  password = "b"
  [[company.terminal]]
  name = "carol-phone"
  password = "c"

  [[company.user]]
  name = "alice"
  terminal = "alice-phone"
  call_acl = "national"
  outgoing_ddi = "+34944000101"
  [[company.user]]
  name = "bob"
  terminal = "bob-phone"
  [[company.user]]
  name = "carol"
  terminal = "carol-phone"
  call_acl = "open"

  [[company.extension]]
  number = "101"
  user = "alice"
  [[company.extension]]
  number = "2000"
  friend = "legacy"
  [[company.extension]]
  number = "102"
  friend = "branch"

  [[company.friend]]
  name = "branch"
  priority = 10
  password = "x"
  connection = "direct"
  address = "127.0.0.1"
  port = 5070
  patterns = ["2[0-9]{3}", "\\+34946[0-9]{6}"]
  call_acl = "national"
  fallback_outgoing_ddi = "+34944000200"

  [[company.friend]]
  name = "legacy"
  priority = 20
  password = "y"
  connection = "register"
  patterns = ["2[0-9]{3}", "3[0-9]{3}"]

  [[company.friend]]
  name = "annex"
  priority = 5
  password = "z"
  connection = "register"
  patterns = ["21[0-9]{2}"]

  [[company.friend]]
  name = "london"
  priority = 30
  password = "w"
  connection = "register"
  country_code = "44"
  trunk_prefix = "0"
  national_length = 10
  patterns = ["4[0-9]{3}"]

  [[company.ddi]]
  number = "+34944000100"
  user = "alice"
  [[company.ddi]]
  number = "+34944000101"
  extension = "101"
  [[company.ddi]]
  number = "+34944000200"
  friend = "branch"
  [[company.ddi]]
  number = "+34944000300"
  extension = "2000"

  [[company.call_acl]]
  name = "national"
  default = "deny"
  rules = [ { allow = "\\+34944[0-9]{6}" }, { deny = "\\+34(80[3-7]|90[57])[0-9]{6}" }, { allow = "\\+34[6-9][0-9]{8}" } ]
  [[company.call_acl]]
  name = "open"
  default = "allow"
  rules = [ { deny = "\\+349[0-9]{8}" } ]

[[company]]
name = "beta"
domain = "beta.example.org"
country_code = "34"
national_length = 9
carrier = "intl"

  [[company.terminal]]
  name = "dave-phone"
  password = "d"
  [[company.user]]
  name = "dave"
  terminal = "dave-phone"
  [[company.ddi]]
  number = "+34955000100"
  user = "dave"
"#;

fn table() -> RoutingTable {
    let cfg = config::parse(PLATFORM).unwrap_or_else(|e| panic!("{e}"));
    RoutingTable::build(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// (company, caller, dialled, presented, expected Display, expected status)
type Row = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    Option<u16>,
);

#[rustfmt::skip]
const DECISIONS: &[Row] = &[
    // §3.1 extensions win over friends, whoever calls.
    ("acme.example.com", "bob", "101", None, "extension 101 -> user alice", None),
    ("acme.example.com", "bob", "102", None, "extension 102 -> friend branch", None),
    ("acme.example.com", "bob", "2000", None, "extension 2000 -> friend legacy", None),
    ("acme.example.com", "branch", "101", None, "extension 101 -> user alice", None),
    // ... except one leading back to the calling friend (§3.2: never routed
    // back to itself): the number goes on, here to nothing dialable.
    ("acme.example.com", "branch", "102", None, "not dialable", Some(404)),
    // A country code alone, or too few digits for any E.164 number, is not
    // sent to the carrier.
    ("acme.example.com", "bob", "+34", None, "not dialable", Some(404)),
    ("acme.example.com", "bob", "0034", None, "not dialable", Some(404)),
    ("acme.example.com", "bob", "+1", None, "not dialable", Some(404)),
    // §3.2 lowest priority among all matching friends.
    ("acme.example.com", "bob", "2001", None, "friend branch (pattern 2[0-9]{3}, priority 10)", None),
    ("acme.example.com", "bob", "2101", None, "friend annex (pattern 21[0-9]{2}, priority 5)", None),
    ("acme.example.com", "bob", "3001", None, "friend legacy (pattern 3[0-9]{3}, priority 20)", None),
    ("acme.example.com", "bob", "+34946123456", None, "friend branch (pattern \\+34946[0-9]{6}, priority 10)", None),
    // A friend is never routed to itself: the next match is taken.
    ("acme.example.com", "branch", "2001", None, "friend legacy (pattern 2[0-9]{3}, priority 20)", None),
    ("acme.example.com", "annex", "2101", None, "friend branch (pattern 2[0-9]{3}, priority 10)", None),
    ("acme.example.com", "legacy", "2001", None, "friend branch (pattern 2[0-9]{3}, priority 10)", None),
    ("acme.example.com", "legacy", "3001", None, "not dialable", Some(404),
    ),
    // Friend to friend is internal: branch's ACL (default deny) is not checked.
    ("acme.example.com", "branch", "3001", None, "friend legacy (pattern 3[0-9]{3}, priority 20)", None),
    // Whole-string matching.
    ("acme.example.com", "bob", "12001", None, "not dialable", Some(404),
    ),
    ("acme.example.com", "bob", "20011", None, "not dialable", Some(404),
    ),
    ("acme.example.com", "bob", "200", None, "not dialable", Some(404),
    ),
    // §3.3 external: ACL allow (rule 1, rule 3), deny (rule 2), default deny.
    ("acme.example.com", "alice", "944123456", None, "external +34944123456 via pstn as +34944000101", None),
    ("acme.example.com", "alice", "4123456", None, "external +34944123456 via pstn as +34944000101", None),
    ("acme.example.com", "alice", "612345678", None, "external +34612345678 via pstn as +34944000101", None),
    ("acme.example.com", "alice", "905123456", None, "denied by acl national (rule 2)", Some(403),
    ),
    ("acme.example.com", "alice", "0033123456789", None, "denied by acl national (default)", Some(403),
    ),
    ("acme.example.com", "branch", "0033123456789", None, "denied by acl national (default)", Some(403),
    ),
    // ACL with default allow, and a deny rule.
    ("acme.example.com", "carol", "0033123456789", None, "external +33123456789 via pstn as +34944000000", None),
    ("acme.example.com", "carol", "944123456", None, "denied by acl open (rule 1)", Some(403),
    ),
    // No ACL.
    ("acme.example.com", "bob", "0033123456789", None, "external +33123456789 via pstn as +34944000000", None),
    ("acme.example.com", "bob", "+33123456789", None, "external +33123456789 via pstn as +34944000000", None),
    // §4.3 identity: presented kept only when a company DDI (normalised).
    ("acme.example.com", "branch", "944123456", Some("+34944000100"),
        "external +34944123456 via pstn as +34944000100",
        None,
    ),
    ("acme.example.com", "branch", "944123456", Some("944000300"),
        "external +34944123456 via pstn as +34944000300",
        None,
    ),
    ("acme.example.com", "branch", "944123456", Some("+34944999999"),
        "external +34944123456 via pstn as +34944000200",
        None,
    ),
    ("acme.example.com", "branch", "944123456", Some("anonymous"),
        "external +34944123456 via pstn as +34944000200",
        None,
    ),
    ("acme.example.com", "branch", "944123456", Some("+34955000100"),
        "external +34944123456 via pstn as +34944000200",
        None,
    ),
    ("acme.example.com", "alice", "944123456", Some("+34944000100"),
        "external +34944123456 via pstn as +34944000100",
        None,
    ),
    ("acme.example.com", "legacy", "944123456", Some("+34944999999"),
        "external +34944123456 via pstn as +34944000000",
        None,
    ),
    ("acme.example.com", "legacy", "944123456", None, "external +34944123456 via pstn as +34944000000", None),
    ("beta.example.org", "dave", "944123456", None, "no identity", Some(403),
    ),
    ("beta.example.org", "dave", "944123456", Some("955000100"),
        "external +34944123456 via intl as +34955000100",
        None,
    ),
    // The friend's own numbering (§5) for its external calls.
    ("acme.example.com", "london", "02079460000", None, "external +442079460000 via pstn as +34944000000", None),
    ("acme.example.com", "london", "944123456", None, "not dialable", Some(404),
    ),
    // Carrier → DDI → user / extension / friend; unknown DDI → 404.
    ("acme.example.com", "carrier:pstn", "+34944000100", None, "ddi +34944000100 -> user alice", None),
    ("acme.example.com", "carrier:pstn", "944000100", None, "ddi +34944000100 -> user alice", None),
    ("acme.example.com", "carrier:pstn", "+34944000101", None, "ddi +34944000101 -> extension 101 -> user alice", None),
    ("acme.example.com", "carrier:pstn", "+34944000300", None, "ddi +34944000300 -> extension 2000 -> friend legacy", None),
    ("acme.example.com", "carrier:pstn", "+34944000200", None, "ddi +34944000200 -> friend branch", None),
    ("acme.example.com", "carrier:pstn", "+34944000999", None, "not found", Some(404),
    ),
    ("acme.example.com", "carrier:intl", "+34955000100", None, "ddi +34955000100 -> user dave", None),
    // A national number read with the numbering of the company the carrier
    // serves that owns it, whichever company the Request-URI named.
    ("acme.example.com", "carrier:intl", "955000100", None, "ddi +34955000100 -> user dave", None),
    ("beta.example.org", "carrier:pstn", "hello", None, "not dialable", Some(404),
    ),
];

#[test]
fn decision_table() {
    let table = table();
    let mut failures = Vec::new();
    for &(domain, from, dialled, presented, want, status) in DECISIONS {
        let company = table.company(domain).expect(domain);
        let caller = table.caller_by_name(company, from).expect(from);
        let decision = table.decide(company, &caller, dialled, presented);
        let got = decision.to_string();
        if got != want || decision.status() != status {
            failures.push(format!(
                "{from} -> {dialled} ({presented:?}): got {got:?} {:?}, want {want:?} {status:?}",
                decision.status()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn decision_targets_and_lookups() {
    use tandem::route::{Caller, Decision, Target};
    let table = table();
    let acme = table
        .company("ACME.Example.COM")
        .expect("case-insensitive domain");
    assert!(table.company("nope.example.com").is_none());
    let bob = Caller::User(acme.user_id("bob").unwrap());
    match table.decide(acme, &bob, "102", None) {
        Decision::Extension {
            target: Target::Friend(id, f),
            ..
        } => {
            assert_eq!(acme.friend_id("branch"), Some(id));
            assert_eq!(&*f.name, "branch");
        }
        other => panic!("{other}"),
    }
    assert_eq!(acme.user_by_terminal("alice-phone"), acme.user_id("alice"));
    let pstn = table.carrier_id("pstn").unwrap();
    let intl = table.carrier_id("intl").unwrap();
    assert_eq!(
        table.carrier_for_source("127.0.0.2".parse().unwrap()),
        Some(pstn)
    );
    assert_eq!(
        table.carrier_for_source("10.1.2.3".parse().unwrap()),
        Some(intl),
        "longest prefix"
    );
    assert_eq!(
        table.carrier_for_source("10.2.2.3".parse().unwrap()),
        Some(pstn)
    );
    assert_eq!(table.carrier_for_source("127.0.0.3".parse().unwrap()), None);
    assert_eq!(&*table.ddi_owner("+34955000100").unwrap().name, "beta");
}

/// DOMAIN.md §5, its table exactly, plus the edges of each rule.
#[test]
fn numbering_table() {
    let es = Numbering::new("34", None, "00", "", 9);
    let es_area = Numbering::new("34", Some("94"), "00", "", 9);
    let uk = Numbering::new("44", None, "00", "0", 10);
    let inbound: &[(&Numbering, &str, Option<&str>)] = &[
        (&es, "944123456", Some("+34944123456")),
        (&es, "0033123456789", Some("+33123456789")),
        (&es_area, "4123456", Some("+34944123456")),
        (&uk, "02079460000", Some("+442079460000")),
        (&es, "+34944123456", Some("+34944123456")),
        (&uk, "0033123456789", Some("+33123456789")),
        (&uk, "2079460000", Some("+442079460000")),
        (&es, "4123456", None),
        (&es_area, "123", None),
        (&es, "9441234567", None),
        (&uk, "0207946000", Some("+440207946000")),
        (&es, "+34 944", None),
        (&es, "+", None),
        (&es, "", None),
        (&es, "94412345a", None),
        (&es, "00", None),
        (&es, "001234567890123456", None),
    ];
    for &(n, dialled, want) in inbound {
        assert_eq!(
            n.to_e164(dialled).map(|e| e.to_string()).as_deref(),
            want,
            "{dialled}"
        );
    }
    let outbound: &[(&Numbering, &str, &str)] = &[
        (&es, "+34944123456", "944123456"),
        (&es, "+33123456789", "0033123456789"),
        (&uk, "+442079460000", "02079460000"),
        (&uk, "+34944123456", "0034944123456"),
    ];
    for &(n, e164, want) in outbound {
        assert_eq!(n.to_local(e164).as_str(), want, "{e164}");
    }
}

#[test]
fn reload_keeps_old_table_on_error_and_reuses_unchanged_companies() {
    let cfg = config::parse(PLATFORM).unwrap();
    let publisher = Publisher::new(&cfg).unwrap();
    let mut reader = publisher.reader();
    let before = Arc::clone(reader.table());

    // A broken config: the errors come back and nothing changes.
    let broken = PLATFORM
        .replace("patterns = [\"21[0-9]{2}\"]", "patterns = [\"21[0-9\"]")
        .replace("password = \"w\"", "password = \"\"");
    let errors = publisher.reload_text(&broken).unwrap_err();
    let text = errors.to_string();
    assert!(
        text.contains("company[acme].friend[annex].patterns[0]: invalid regex"),
        "{text}"
    );
    assert!(
        text.contains("company[acme].friend[london].password: must not be empty"),
        "{text}"
    );
    assert!(Arc::ptr_eq(&before, reader.table()));

    // An identical config: everything reused.
    let stats = publisher.reload(&cfg).unwrap();
    assert_eq!((stats.compiled, stats.reused), (0, 2));

    // Change one company: the other keeps its Arc, the table is new.
    let mut changed = cfg.clone();
    changed.company[0].friend[1].priority = 15;
    let stats = publisher.reload(&changed).unwrap();
    assert_eq!((stats.compiled, stats.reused), (1, 1));
    let after = Arc::clone(reader.table());
    assert!(!Arc::ptr_eq(&before, &after));
    assert!(Arc::ptr_eq(
        before.company_by_name("beta").unwrap(),
        after.company_by_name("beta").unwrap()
    ));
    assert!(!Arc::ptr_eq(
        before.company_by_name("acme").unwrap(),
        after.company_by_name("acme").unwrap()
    ));
    let acme = after.company("acme.example.com").unwrap();
    let branch = after.caller_by_name(acme, "branch").unwrap();
    assert_eq!(
        after.decide(acme, &branch, "2001", None).to_string(),
        "friend legacy (pattern 2[0-9]{3}, priority 15)"
    );

    // A carrier change counts as a change for the companies using it.
    let mut moved = changed.clone();
    moved.carrier[1].address = "tcp:192.0.2.51:5061".into();
    let stats = publisher.reload(&moved).unwrap();
    assert_eq!((stats.compiled, stats.reused), (1, 1));
    let last = publisher.table();
    assert!(Arc::ptr_eq(
        after.company_by_name("acme").unwrap(),
        last.company_by_name("acme").unwrap()
    ));
    assert_eq!(
        &*last.company_by_name("beta").unwrap().carrier.host,
        "192.0.2.51"
    );

    // A broken change to a reused company's neighbour is still caught
    // (global checks always run): a DDI owned twice.
    let mut dup = moved.clone();
    dup.company[1].ddi[0].number = "+34944000100".into();
    let errors = publisher.reload(&dup).unwrap_err();
    assert!(errors.to_string().contains("owned twice"), "{errors}");
    assert!(Arc::ptr_eq(&last, &publisher.table()));
}

#[test]
fn shipped_configs_compile() {
    for path in ["config/tandem.toml", "config/examples/platform.toml"] {
        let cfg = config::load(path).unwrap_or_else(|e| panic!("{path}:\n{e}"));
        RoutingTable::build(&cfg).unwrap_or_else(|e| panic!("{path}:\n{e}"));
    }
}

#[test]
fn update_and_remove_one_company() {
    let cfg = config::parse(PLATFORM).unwrap();
    let publisher = Publisher::new(&cfg).unwrap();
    let before = publisher.table();

    // Conflicts with the rest of the platform are refused, nothing changes.
    let mut beta = cfg.company[1].clone();
    beta.domain = "ACME.example.com".into();
    beta.ddi[0].number = "+34944000100".into();
    beta.carrier = Some("nope".into());
    let text = publisher.update_company(&beta).unwrap_err().to_string();
    assert!(
        text.contains("company[beta].carrier: unknown carrier \"nope\""),
        "{text}"
    );
    assert!(
        text.contains("company[beta].domain: duplicate company domain"),
        "{text}"
    );
    assert!(text.contains("company[beta].ddi[+34944000100]: DDI +34944000100 is owned twice (also by company acme)"), "{text}");
    assert!(Arc::ptr_eq(&before, &publisher.table()));

    // Replace beta: acme keeps its Arc; beta's old DDI is gone, the new one routes.
    let mut beta = cfg.company[1].clone();
    beta.ddi[0].number = "+34955000999".into();
    publisher.update_company(&beta).unwrap();
    let after = publisher.table();
    assert!(Arc::ptr_eq(
        before.company_by_name("acme").unwrap(),
        after.company_by_name("acme").unwrap()
    ));
    assert!(after.ddi_owner("+34955000100").is_none());
    assert_eq!(&*after.ddi_owner("+34955000999").unwrap().name, "beta");

    // Add a third company, then remove the first: the moved one still resolves.
    let mut gamma = cfg.company[1].clone();
    gamma.name = "gamma".into();
    gamma.domain = "gamma.example.net".into();
    gamma.ddi[0].number = "+34966000100".into();
    publisher.update_company(&gamma).unwrap();
    assert!(publisher.remove_company("acme"));
    assert!(!publisher.remove_company("acme"));
    let last = publisher.table();
    assert!(last.company("acme.example.com").is_none());
    assert!(last.ddi_owner("+34944000100").is_none());
    let gamma = last
        .company("gamma.example.net")
        .expect("moved company still indexed");
    assert_eq!(&*gamma.name, "gamma");
    assert_eq!(
        &*last.company_by_name("gamma").unwrap().domain,
        "gamma.example.net"
    );
    assert_eq!(&*last.ddi_owner("+34966000100").unwrap().name, "gamma");
    let pstn = last.caller_by_name(gamma, "carrier:pstn").unwrap();
    assert_eq!(
        last.decide(gamma, &pstn, "+34966000100", None).to_string(),
        "ddi +34966000100 -> user dave"
    );
    assert_eq!(last.companies().len(), 2);

    // A company with a numbering of its own, added and removed one at a
    // time: the carrier's national numbers follow it.
    let mut uk = cfg.company[1].clone();
    uk.name = "uk".into();
    uk.domain = "uk.example.net".into();
    uk.country_code = "44".into();
    uk.area_code = None;
    uk.trunk_prefix = "0".into();
    uk.national_length = 10;
    uk.ddi[0].number = "+442079460001".into();
    uk.carrier = Some("pstn".into());
    publisher.update_company(&uk).unwrap();
    let with_uk = publisher.table();
    let pstn = with_uk
        .caller_by_name(gamma_of(&with_uk), "carrier:pstn")
        .unwrap();
    assert_eq!(
        with_uk
            .decide(gamma_of(&with_uk), &pstn, "02079460001", None)
            .to_string(),
        "ddi +442079460001 -> user dave"
    );
    assert!(publisher.remove_company("uk"));
    let without = publisher.table();
    assert_eq!(
        without
            .decide(gamma_of(&without), &pstn, "02079460001", None)
            .to_string(),
        "not dialable"
    );
}

fn gamma_of(t: &RoutingTable) -> &tandem::route::table::CompiledCompany {
    t.company("gamma.example.net").unwrap()
}

/// Enough companies for the reload diff to run on several threads.
#[test]
fn reload_of_many_companies_recompiles_only_the_changed_one() {
    use tandem::route::BuildOptions;
    let base = config::parse(PLATFORM).unwrap();
    let mut cfg = base.clone();
    cfg.company.truncate(1);
    for i in 0..1100 {
        let mut c = base.company[1].clone();
        c.name = format!("t{i}");
        c.domain = format!("t{i}.example.net");
        c.ddi[0].number = format!("+3495{i:07}");
        cfg.company.push(c);
    }
    let options = BuildOptions {
        threads: 2,
        ..BuildOptions::default()
    };
    let publisher = Publisher::with_options(&cfg, options).unwrap();
    let before = publisher.table();
    let mut changed = cfg.clone();
    changed.company[700].user[0].name = "erin".into();
    changed.company[700].ddi[0].user = Some("erin".into());
    let stats = publisher.reload(&changed).unwrap();
    assert_eq!((stats.compiled, stats.reused), (1, 1100));
    let after = publisher.table();
    for name in ["acme", "t0", "t698", "t1099"] {
        let (a, b) = (
            before.company_by_name(name).unwrap(),
            after.company_by_name(name).unwrap(),
        );
        assert!(Arc::ptr_eq(a, b), "{name}");
    }
    // company[700] is t699 (acme comes first).
    assert!(!Arc::ptr_eq(
        before.company_by_name("t699").unwrap(),
        after.company_by_name("t699").unwrap()
    ));
    let t699 = after.company("t699.example.net").unwrap();
    let pstn = after.caller_by_name(t699, "carrier:pstn").unwrap();
    assert_eq!(
        after.decide(t699, &pstn, "+34950000699", None).to_string(),
        "ddi +34950000699 -> user erin"
    );
    assert_eq!(
        after.decide(t699, &pstn, "+34950000698", None).to_string(),
        "ddi +34950000698 -> user dave"
    );
}

/// Workers read the live table from their own threads, each through its
/// own `Reader`, and see a reload on their next call.
#[test]
fn readers_on_other_threads_see_reloads() {
    fn shared<T: Send + Sync>() {}
    shared::<RoutingTable>();
    shared::<Publisher>();
    let cfg = config::parse(PLATFORM).unwrap();
    let publisher = Publisher::new(&cfg).unwrap();
    let decide = |reader: &mut tandem::route::Reader| {
        let table = reader.table();
        let acme = table.company("acme.example.com").unwrap();
        let bob = table.caller_by_name(acme, "bob").unwrap();
        table.decide(acme, &bob, "2001", None).to_string()
    };
    std::thread::scope(|s| {
        let mut reader = publisher.reader();
        let worker = s.spawn(move || {
            let first = decide(&mut reader);
            (first, reader)
        });
        let (first, mut reader) = worker.join().unwrap();
        assert_eq!(first, "friend branch (pattern 2[0-9]{3}, priority 10)");
        let mut changed = cfg.clone();
        changed.company[0].friend[0].patterns[0] = "9[0-9]{3}".into();
        publisher.reload(&changed).unwrap();
        let after = s.spawn(move || decide(&mut reader)).join().unwrap();
        assert_eq!(after, "friend legacy (pattern 2[0-9]{3}, priority 20)");
    });
}

/// A user and a friend may share a name (DOMAIN.md §2 puts only terminals
/// and friends in one namespace): `tandem route --from` then needs
/// `user:` or `friend:`, and a bare name picks neither.
#[test]
fn a_user_and_a_friend_of_one_name_are_told_apart() {
    let mut cfg = config::parse(PLATFORM).unwrap();
    let mut phone = cfg.company[0].terminal[0].clone();
    phone.name = "twin-phone".into();
    cfg.company[0].terminal.push(phone);
    let mut twin = cfg.company[0].user[0].clone();
    twin.name = "branch".into();
    twin.terminal = "twin-phone".into();
    cfg.company[0].user.push(twin);
    let table = RoutingTable::build(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let acme = table.company("acme.example.com").unwrap();
    assert!(table.caller_by_name(acme, "branch").is_none());
    assert!(table.caller_is_ambiguous(acme, "branch"));
    let user = table.caller_by_name(acme, "user:branch").unwrap();
    let friend = table.caller_by_name(acme, "friend:branch").unwrap();
    assert!(matches!(user, tandem::route::Caller::User(_)), "{user:?}");
    assert!(
        matches!(friend, tandem::route::Caller::Friend(_)),
        "{friend:?}"
    );
    assert!(table.caller_by_name(acme, "user:nobody").is_none());
    assert!(!table.caller_is_ambiguous(acme, "alice"));
    assert!(table.caller_by_name(acme, "alice").is_some());
}
