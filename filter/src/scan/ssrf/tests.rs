use super::*;

fn spans<'t>(text: &'t str, allow: &AllowList) -> Vec<&'t str> {
    find_ssrf(text, allow)
        .iter()
        .map(|m| &text[m.start..m.end])
        .collect()
}

fn hits(text: &str) -> Vec<&str> {
    spans(text, &AllowList::default())
}

fn allow(entries: &[&str]) -> AllowList {
    AllowList::new(entries.iter().map(|s| s.to_string()).collect()).unwrap()
}

/// `(text, the flagged spans)`: an empty list means nothing is flagged.
const CASES: &[(&str, &[&str])] = &[
    // --- plain internal URLs ---
    ("http://127.0.0.1/", &["http://127.0.0.1/"]),
    (
        "https://localhost:8443/admin",
        &["https://localhost:8443/admin"],
    ),
    (
        "http://169.254.169.254/latest/meta-data/iam/",
        &["http://169.254.169.254/latest/meta-data/iam/"],
    ),
    (
        "http://10.0.0.5:9200/_cat/indices",
        &["http://10.0.0.5:9200/_cat/indices"],
    ),
    ("http://172.16.0.1/", &["http://172.16.0.1/"]),
    ("http://172.31.255.254/", &["http://172.31.255.254/"]),
    ("http://192.168.1.1/", &["http://192.168.1.1/"]),
    ("http://100.64.0.1/", &["http://100.64.0.1/"]),
    (
        "http://100.100.100.200/latest/meta-data",
        &["http://100.100.100.200/latest/meta-data"],
    ),
    ("http://0.0.0.0:8080/", &["http://0.0.0.0:8080/"]),
    ("http://0/", &["http://0/"]),
    ("http://255.255.255.255/", &["http://255.255.255.255/"]),
    ("http://240.0.0.1/", &["http://240.0.0.1/"]),
    ("http://224.0.0.251/", &["http://224.0.0.251/"]),
    ("http://192.0.0.170/", &["http://192.0.0.170/"]),
    ("http://198.18.0.1/", &["http://198.18.0.1/"]),
    (
        "http://metadata.google.internal/computeMetadata/v1/",
        &["http://metadata.google.internal/computeMetadata/v1/"],
    ),
    (
        "http://Metadata.Google.Internal/",
        &["http://Metadata.Google.Internal/"],
    ),
    (
        "http://metadata/computeMetadata/v1/",
        &["http://metadata/computeMetadata/v1/"],
    ),
    (
        "http://instance-data/latest/",
        &["http://instance-data/latest/"],
    ),
    ("http://LOCALHOST/", &["http://LOCALHOST/"]),
    ("http://localhost./", &["http://localhost./"]),
    (
        "http://app.localhost:3000/",
        &["http://app.localhost:3000/"],
    ),
    (
        "http://redis.prod.internal:6379/",
        &["http://redis.prod.internal:6379/"],
    ),
    ("http://printer.local/", &["http://printer.local/"]),
    (
        "http://kubernetes.default.svc/api",
        &["http://kubernetes.default.svc/api"],
    ),
    (
        "ws://127.0.0.1:9222/devtools/browser",
        &["ws://127.0.0.1:9222/devtools/browser"],
    ),
    // --- numeric obfuscations ---
    ("http://2130706433/", &["http://2130706433/"]),
    ("http://017700000001/", &["http://017700000001/"]),
    ("http://0177.0.0.1/", &["http://0177.0.0.1/"]),
    ("http://0x7f.1/", &["http://0x7f.1/"]),
    ("http://0x7f000001/", &["http://0x7f000001/"]),
    ("http://0x7f.0.0.01/", &["http://0x7f.0.0.01/"]),
    ("http://127.1/", &["http://127.1/"]),
    ("http://10.1/", &["http://10.1/"]),
    ("http://127.0.1:80/", &["http://127.0.1:80/"]),
    (
        "http://0xA9.0xFE.0xA9.0xFE/",
        &["http://0xA9.0xFE.0xA9.0xFE/"],
    ),
    ("http://2852039166/", &["http://2852039166/"]),
    ("http://127.0.0.1./", &["http://127.0.0.1./"]),
    ("http://%31%32%37.0.0.1/", &["http://%31%32%37.0.0.1/"]),
    (
        "http://%6c%6f%63%61%6c%68%6f%73%74/",
        &["http://%6c%6f%63%61%6c%68%6f%73%74/"],
    ),
    (
        "http://１２７．０．０．１/",
        &["http://１２７．０．０．１/"],
    ),
    (
        "http://ｌｏｃａｌｈｏｓｔ/",
        &["http://ｌｏｃａｌｈｏｓｔ/"],
    ),
    (
        "http://127.0.0.1%00.example.com/",
        &["http://127.0.0.1%00.example.com/"],
    ),
    // --- IPv6 ---
    ("http://[::1]:8080/", &["http://[::1]:8080/"]),
    ("http://[::]/", &["http://[::]/"]),
    ("http://[0:0:0:0:0:0:0:1]/", &["http://[0:0:0:0:0:0:0:1]/"]),
    (
        "http://[::ffff:127.0.0.1]/",
        &["http://[::ffff:127.0.0.1]/"],
    ),
    ("http://[::ffff:7f00:1]/", &["http://[::ffff:7f00:1]/"]),
    ("http://[::127.0.0.1]/", &["http://[::127.0.0.1]/"]),
    (
        "http://[::ffff:169.254.169.254]/",
        &["http://[::ffff:169.254.169.254]/"],
    ),
    (
        "http://[::ffff:a9fe:a9fe]/",
        &["http://[::ffff:a9fe:a9fe]/"],
    ),
    (
        "http://[fe80::1%eth0]:8080/",
        &["http://[fe80::1%eth0]:8080/"],
    ),
    ("http://user@[::1]:80/", &["http://user@[::1]:80/"]),
    ("http://[::1]@example.com/", &[]),
    (
        "http://[64:ff9b::a9fe:a9fe]/",
        &["http://[64:ff9b::a9fe:a9fe]/"],
    ),
    (
        "http://[64:ff9b::10.0.0.1]/",
        &["http://[64:ff9b::10.0.0.1]/"],
    ),
    ("http://[fe80::1%25eth0]/", &["http://[fe80::1%25eth0]/"]),
    (
        "http://[fd00:ec2::254]/latest/",
        &["http://[fd00:ec2::254]/latest/"],
    ),
    ("http://[fc00::1]/", &["http://[fc00::1]/"]),
    ("http://[ff02::1]/", &["http://[ff02::1]/"]),
    ("http://[2002:7f00:1::]/", &["http://[2002:7f00:1::]/"]),
    // --- authority parsing ---
    (
        "http://good.com@127.0.0.1/",
        &["http://good.com@127.0.0.1/"],
    ),
    (
        "http://user:pass@10.0.0.1/",
        &["http://user:pass@10.0.0.1/"],
    ),
    ("http://a@b@localhost/", &["http://a@b@localhost/"]),
    (
        "http://good.com\\@127.0.0.1/",
        &["http://good.com\\@127.0.0.1/"],
    ),
    (
        "http://good.com%40127.0.0.1/",
        &["http://good.com%40127.0.0.1/"],
    ),
    (
        "http://a\\b\\@127.0.0.1/x http://c\\d/",
        &["http://a\\b\\@127.0.0.1/x"],
    ),
    ("http://a\\b/@127.0.0.1/", &[]),
    ("http://127.0.0.1:80@good.com/", &[]),
    (
        "http://127.0.0.1#@good.com/",
        &["http://127.0.0.1#@good.com/"],
    ),
    ("http://example.com@evil/", &[]),
    ("http://example.com@evil.com/", &[]),
    ("http://localhost.evil.com/", &[]),
    // --- scheme forms ---
    ("http:\\\\127.0.0.1\\x", &["http:\\\\127.0.0.1\\x"]),
    ("http:/127.0.0.1/", &["http:/127.0.0.1/"]),
    ("http:127.0.0.1", &["http:127.0.0.1"]),
    ("HTTP://127.0.0.1/", &["HTTP://127.0.0.1/"]),
    ("//169.254.169.254/latest", &["//169.254.169.254/latest"]),
    (
        "url=//metadata/computeMetadata",
        &["//metadata/computeMetadata"],
    ),
    ("ftp://10.0.0.1/pub", &["ftp://10.0.0.1/pub"]),
    ("ldap://localhost:389/dc=x", &["ldap://localhost:389/dc=x"]),
    ("tftp://192.168.0.1/boot", &["tftp://192.168.0.1/boot"]),
    ("redis://127.0.0.1:6379/0", &["redis://127.0.0.1:6379/0"]),
    (
        "jar:http://127.0.0.1!/x.class",
        &["http://127.0.0.1!/x.class"],
    ),
    ("file:///etc/passwd", &["file:///etc/passwd"]),
    (
        "FILE://localhost/etc/shadow",
        &["FILE://localhost/etc/shadow"],
    ),
    ("file:/etc/passwd", &["file:/etc/passwd"]),
    (
        "file:\\\\c:\\windows\\win.ini",
        &["file:\\\\c:\\windows\\win.ini"],
    ),
    ("netdoc:///etc/passwd", &["netdoc:///etc/passwd"]),
    (
        "gopher://example.com:70/_GET",
        &["gopher://example.com:70/_GET"],
    ),
    (
        "gopher://127.0.0.1:6379/_FLUSHALL",
        &["gopher://127.0.0.1:6379/_FLUSHALL"],
    ),
    (
        "dict://10.0.0.1:11211/stat",
        &["dict://10.0.0.1:11211/stat"],
    ),
    ("ftp://ftp.example.com/pub", &[]),
    ("ldap://ldap.example.com/", &[]),
    ("file: report.pdf", &[]),
    ("profile:/x", &[]),
    ("a dict: {}", &[]),
    // --- nested and embedded ---
    (
        "https://example.com/a?next=http://127.0.0.1/admin",
        &["http://127.0.0.1/admin"],
    ),
    ("https://example.com/a?next=http://example.org/", &[]),
    ("https://example.com/lookup?ip=10.0.0.1", &[]),
    (
        "see http://10.0.0.1/x?u=http://192.168.0.1/ now",
        &["http://10.0.0.1/x?u=http://192.168.0.1/"],
    ),
    ("(see http://10.0.0.1/a).", &["http://10.0.0.1/a"]),
    (
        "[link](http://localhost:3000/docs)",
        &["http://localhost:3000/docs"],
    ),
    (
        "{\"url\":\"http://169.254.169.254/\"}",
        &["http://169.254.169.254/"],
    ),
    (
        "a http://8.8.8.8/ b http://127.0.0.1/ c",
        &["http://127.0.0.1/"],
    ),
    // --- bare hosts ---
    ("169.254.169.254", &["169.254.169.254"]),
    ("localhost:6379", &["localhost:6379"]),
    ("10.0.0.5/admin", &["10.0.0.5/admin"]),
    ("curl localhost", &["localhost"]),
    ("connect to 192.168.0.10:22 please.", &["192.168.0.10:22"]),
    ("the gateway is 10.0.0.1.", &["10.0.0.1"]),
    ("ssh root@10.0.0.1", &["10.0.0.1"]),
    ("addr:10.0.0.1", &["10.0.0.1"]),
    ("--host=127.0.0.1 -p 80", &["127.0.0.1"]),
    ("0177.0.0.1", &["0177.0.0.1"]),
    ("0x7f.0.0.1", &["0x7f.0.0.1"]),
    ("0.0.0.0", &["0.0.0.0"]),
    ("10.0.0.1-10.0.0.9", &["10.0.0.1", "10.0.0.9"]),
    ("backup of 10.0.0.1_old", &["10.0.0.1"]),
    ("listening on ::1.", &["::1"]),
    ("LOCALHOST.", &["LOCALHOST"]),
    (
        "metadata.google.internal/computeMetadata/v1/",
        &["metadata.google.internal/computeMetadata/v1/"],
    ),
    ("foo.internal:8080", &["foo.internal:8080"]),
    ("metadata:80", &["metadata:80"]),
    ("::1", &["::1"]),
    ("listen on [::1]:8080", &["[::1]:8080"]),
    ("fe80::1%eth0", &["fe80::1%eth0"]),
    ("::ffff:127.0.0.1", &["::ffff:127.0.0.1"]),
    ("fd00::/8", &["fd00::/8"]),
    ("[::ffff:10.0.0.1]:443", &["[::ffff:10.0.0.1]:443"]),
    ("reversed = xs[::-1]; evens = [::2]", &[]),
    ("http://[::2]/", &["http://[::2]/"]),
    ("\\\\10.0.0.1\\share", &["\\\\10.0.0.1\\share"]),
    // --- not hosts ---
    ("8.8.8.8", &[]),
    ("https://8.8.8.8/dns-query", &[]),
    ("http://[2001:4860:4860::8888]/", &[]),
    ("https://example.com/", &[]),
    ("http://8.8.8.8.nip.io/", &[]),
    ("https://nip.io/", &[]),
    ("see docs at sslip.io and lvh.me.example.com", &[]),
    ("http://192.0.2.1/", &[]),
    ("version 1.2.3", &[]),
    ("release 0.1.0.0 is out", &[]),
    ("netmask 255.255.255.0", &[]),
    ("ip 233.197.104.93 port 64547", &[]),
    (
        "Server 10.0.4.17 responded in 235 ms at 2026-03-15T14:23:07.123Z.",
        &["10.0.4.17"],
    ),
    ("user@[10.0.0.1]", &["10.0.0.1"]),
    ("alice@localhost", &["localhost"]),
    ("the total is 2130706433", &[]),
    ("pi is 3.14 and 127.1 percent", &[]),
    ("meet at 10:30, 2024-10-01T10:30:00Z", &[]),
    ("v10.0.0.1", &[]),
    ("10.0.0.1.5", &[]),
    ("1.2.3.256", &[]),
    ("printer.local", &[]),
    ("the metadata field", &[]),
    ("Note:1 step:2", &[]),
    ("std::io::Result and a::b", &[]),
    ("00:1a:2b:3c:4d:5e", &[]),
    ("notlocalhost localhosts", &[]),
    ("C:\\Users\\me", &[]),
    ("mailto:bob@example.com", &[]),
    ("// TODO: fix", &[]),
    ("", &[]),
];

#[test]
fn table() {
    let mut failures = Vec::new();
    for (text, expected) in CASES {
        let got = hits(text);
        if got != *expected {
            failures.push(format!("{text:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    assert!(CASES.len() >= 80);
}

/// Wildcard-DNS names: flagged by the address they resolve to, and marked as normalised.
#[test]
fn wildcard_dns_names() {
    for (text, span) in [
        ("http://127.0.0.1.nip.io/", "http://127.0.0.1.nip.io/"),
        (
            "fetch https://app.10.0.0.1.nip.io:8443/x",
            "https://app.10.0.0.1.nip.io:8443/x",
        ),
        (
            "GET http://10-0-0-1.sslip.io/admin",
            "http://10-0-0-1.sslip.io/admin",
        ),
        (
            "url=http://169-254-169-254.xip.io/latest",
            "http://169-254-169-254.xip.io/latest",
        ),
        ("http://app-7f000001.nip.io/", "http://app-7f000001.nip.io/"),
        ("http://--1.sslip.io/", "http://--1.sslip.io/"),
        ("http://localtest.me:3000/", "http://localtest.me:3000/"),
        ("http://api.lvh.me/", "http://api.lvh.me/"),
        ("http://VCAP.ME/", "http://VCAP.ME/"),
        (
            "connect to 192.168.1.20.nip.io please",
            "192.168.1.20.nip.io",
        ),
        ("host lvh.me:8080", "lvh.me:8080"),
        ("try localtest.me.", "localtest.me"),
    ] {
        let found = find_ssrf(text, &AllowList::default());
        let got: Vec<(&str, Normalized)> = found
            .iter()
            .map(|m| (&text[m.start..m.end], m.normalized))
            .collect();
        assert_eq!(got, [(span, Normalized::WILDCARD_DNS)], "{text}");
    }
    // Addresses written as they are are not normalised.
    let found = find_ssrf("http://127.0.0.1/", &AllowList::default());
    assert_eq!(found.first().map(|m| m.normalized), Some(Normalized::NONE));
    // An allow-listed name stays allowed.
    assert!(spans("http://api.lvh.me/", &allow(&["api.lvh.me"])).is_empty());
}

#[test]
fn allow_list() {
    let list = allow(&[
        "10.0.0.5",
        "internal-api.acme.local",
        "10.1.0.0/16",
        "fd00::/8",
        "localhost",
    ]);
    let allowed = [
        "http://10.0.0.5/",
        "10.0.0.5/admin",
        "http://0xa000005/",
        "http://[::ffff:10.0.0.5]/",
        "http://INTERNAL-API.acme.local./v1",
        "internal-api.acme.local:443",
        "http://10.1.200.3:8080/",
        "http://[fd12::1]/",
        "http://localhost/",
        "localhost:6379",
    ];
    for text in allowed {
        assert_eq!(spans(text, &list), Vec::<&str>::new(), "{text}");
    }
    let still_flagged = [
        ("http://10.0.0.6/", "http://10.0.0.6/"),
        ("http://other.acme.local/", "http://other.acme.local/"),
        ("http://10.2.0.1/", "http://10.2.0.1/"),
        ("http://127.0.0.1/", "http://127.0.0.1/"),
        ("http://app.localhost/", "http://app.localhost/"),
        ("file://10.0.0.5/etc/passwd", "file://10.0.0.5/etc/passwd"),
        ("gopher://10.0.0.5:70/_x", "gopher://10.0.0.5:70/_x"),
        ("http://10.0.0.5@10.0.0.6/", "http://10.0.0.5@10.0.0.6/"),
    ];
    for (text, span) in still_flagged {
        assert_eq!(spans(text, &list), vec![span], "{text}");
    }
}

#[test]
fn spans_are_byte_offsets_in_the_original_text() {
    let text = "é 日本 http://127.0.0.1/x and 10.0.0.1";
    let found = find_ssrf(text, &AllowList::default());
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|m| m.detector == Detector::Ssrf));
    assert_eq!(&text[found[0].start..found[0].end], "http://127.0.0.1/x");
    assert_eq!(&text[found[1].start..found[1].end], "10.0.0.1");
}

/// Arbitrary input never panics, and spans are sorted, non-overlapping, on char boundaries.
#[test]
fn arbitrary_input() {
    let pieces = [
        "http",
        "://",
        ":",
        "/",
        "\\",
        "@",
        "[",
        "]",
        "%",
        "%2",
        "%25",
        "%3a",
        "0x",
        "7f",
        "127",
        ".",
        "0",
        "1",
        "::",
        "ffff",
        "localhost",
        "file",
        "gopher",
        " ",
        "é",
        "日",
        "１",
        "。",
        "\u{AD}",
        "#",
        "?",
        "-",
        "_",
        "\"",
        "(",
        ")",
        "255",
        "99999999999",
        "metadata",
        "internal",
        ":80",
        "a",
        "Z",
        "\u{3000}",
        "\0",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..20_000 {
        let mut text = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = seed % 24;
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
        }
        let found = find_ssrf(&text, &AllowList::default());
        let mut at = 0;
        for m in &found {
            assert!(
                m.start >= at && m.start < m.end && m.end <= text.len(),
                "{text:?}: {found:?}"
            );
            assert!(
                text.is_char_boundary(m.start) && text.is_char_boundary(m.end),
                "{text:?}: {found:?}"
            );
            at = m.end;
        }
    }
}

#[test]
fn long_and_adversarial_inputs_are_handled() {
    let nested = "http://127.0.0.1/?u=".repeat(5_000);
    let found = find_ssrf(&nested, &AllowList::default());
    assert_eq!(found.len(), 1);
    let colons = ":".repeat(100_000) + &"a:".repeat(50_000) + &"1.".repeat(50_000);
    assert!(find_ssrf(&colons, &AllowList::default()).is_empty());
    let adversarial = [
        "http:[".repeat(30_000),
        "x:\\\\a\\".repeat(30_000) + "@" + &"a".repeat(100_000),
        "x:\\\\a\\@".repeat(30_000),
        "http://127.0.0.1/?u=".repeat(10_000) + &")".repeat(10_000),
        "[".repeat(100_000),
        "%".repeat(100_000),
        "::".repeat(100_000),
        "//".repeat(100_000),
        "@".repeat(100_000),
        "a.".repeat(100_000),
        "http://".to_string() + &"%25".repeat(100_000),
    ];
    for text in &adversarial {
        let _ = find_ssrf(text, &AllowList::default());
    }
}

const ORDINARY: &str = r#"{"query":"What were the main findings of the quarterly report? Please summarise the revenue figures for Q3 2024, compare them with 1.2.3 release notes, and list the top 5 customers by spend.","options":{"max_results":10,"language":"en-US","include_sources":true,"format":"markdown"},"context":"The user is preparing a board presentation for 2024-10-15 at 10:30. Keep the tone formal and concise; cite https://example.com/reports/q3 and https://docs.example.org/guide?page=2#section-3 where relevant. Totals: 1,234,567.89 USD, growth 3.5% year over year."}"#;

/// Cost of scanning ordinary text (English + JSON, about 1 KiB). Run with
/// `cargo test --release -p acp-filter scan::ssrf -- --ignored --nocapture`.
#[test]
#[ignore]
fn cost_of_ordinary_text() {
    let text = ORDINARY.repeat(1024 / ORDINARY.len() + 1);
    let text = &text[..1024];
    assert!(find_ssrf(text, &AllowList::default()).is_empty());
    let prose =
        "The quick brown fox jumps over the lazy dog. Then it keeps running, far away: here "
            .repeat(13);
    let plain = "word ".repeat(205);
    for (what, text) in [
        ("English+JSON with URLs", text),
        ("English prose", &prose[..1024]),
        ("no ':' '.' '/'", &plain[..1024]),
    ] {
        println!("find_ssrf on 1 KiB of {what}: {:?}", per_scan(text));
    }
}

/// Best of 7 batches, to see past a busy machine.
fn per_scan(text: &str) -> std::time::Duration {
    let allow = AllowList::default();
    let rounds = 10_000;
    (0..7)
        .map(|_| {
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(find_ssrf(std::hint::black_box(text), &allow));
            }
            started.elapsed() / rounds
        })
        .min()
        .unwrap_or_default()
}

#[test]
fn ordinary_text_is_clean() {
    assert!(find_ssrf(ORDINARY, &AllowList::default()).is_empty());
}
