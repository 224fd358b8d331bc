#!/usr/bin/env python3
"""Generate the labelled corpus of the PII and secret detectors: tests/scan-corpus/cases.jsonl.

Deterministic (seeded): running it again rewrites the same file byte for byte.

    python3 tests/scan-corpus/generate.py

Each line is one case:

    {"id": "ssn-pos-0001", "kind": "positive", "text": "...", "expect": ["ssn"],
     "values": [["ssn", "219-45-6780"]], "note": "..."}

* `expect`: the detectors that must fire on `text` (a set; [] for none). Detector names are
  those of the filter: ssn, payment_card, email, phone, iban, secret.
* `values`: for positives, the exact substrings the detectors should report (the quality test
  checks the spans too).
* `kind`: positive | near_miss | clean | mixed | hand | out_of_scope. `out_of_scope` cases are
  things a person would call PII that the detectors deliberately do not claim to find
  (spelled-out digits, vanity numbers, "name at domain dot com"); they are labelled with what a
  person would say, and reported apart from the headline precision/recall.

Card numbers are well-known test PANs or generated Luhn-valid numbers with valid issuer
prefixes; SSNs are generated valid/invalid by the SSA rules; IBANs get computed check digits;
tokens and keys are random. Nothing here is real personal data.
"""

import base64
import json
import os
import random
import string

SEED = 20260315
R = random.Random(SEED)
HERE = os.path.dirname(os.path.abspath(__file__))

cases = []
counters = {}
dropped = []


def add(prefix, kind, text, expect=(), values=(), note=None, guard=False):
    """Append a case. With `guard` (random filler digits), a case whose digits happen to form a
    card number is dropped rather than mislabelled."""
    if (guard or kind in ("clean", "mixed")) and "payment_card" not in expect and accidental_card(text):
        dropped.append(text)
        return  # random digits happened to form a card number: drop the case
    n = counters.get(prefix, 0) + 1
    counters[prefix] = n
    case = {"id": f"{prefix}-{n:04d}", "kind": kind, "text": text, "expect": sorted(set(expect))}
    if values:
        case["values"] = [list(v) for v in values]
    if note:
        case["note"] = note
    cases.append(case)


def accidental_card(text):
    """Whether random digits in `text` form something card-shaped and Luhn-valid (a standalone
    run of 13-19 digits, or 4-digit-first groups joined by single spaces or dashes) with an
    issuer-like first digit: such a generated negative is dropped, not mislabelled."""
    import re
    for m in re.finditer(r"(?<![\w])\d{4}(?:[ -]\d{3,6}){2,4}|(?<![\w])\d{13,19}(?![\w])", text):
        d = re.sub(r"[ -]", "", m.group())
        for n in range(13, min(len(d), 19) + 1):
            if luhn_ok(d[:n]) and d[0] in "23456":
                return True
    return False


def pick(xs):
    return xs[R.randrange(len(xs))]


# --------------------------------------------------------------------------------------------
# Shared filler: names, places, frames.

FIRST = ["Alice", "Bob", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal",
         "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
         "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe"]
LAST = ["Smith", "Garcia", "Okafor", "Nguyen", "Müller", "Rossi", "Kowalski", "Tanaka", "Haddad",
        "Johnson", "Silva", "Andersson", "O'Brien", "Dubois", "Novak", "Patel"]
CITIES = ["Springfield", "Austin", "Portland", "Denver", "Boston", "Madison", "Berlin", "Lyon",
          "Porto", "Kraków", "Osaka", "Toronto"]
WORDS = ("the quick review of account status shows no change since last quarter and the team "
         "will follow up after the meeting with updated numbers for the report").split()


def name():
    return f"{pick(FIRST)} {pick(LAST)}"


def filler(n=8):
    return " ".join(pick(WORDS) for _ in range(n))


def frames(label, key, value):
    """Many ways the same value shows up in tool inputs and outputs."""
    nm = name()
    return [
        f"{label}: {value}",
        f"Customer {nm}, {label} {value}, was verified on 2026-03-15.",
        json.dumps({key: value, "status": "active", "updated_at": "2026-03-15T14:23:07Z"}),
        json.dumps({"customer": {"name": nm, key: value}, "page": 2}),
        f"{nm},{value},{pick(CITIES)},94105",
        f"| {nm} | {value} | active |",
        f"2026-03-15T14:23:07.123Z INFO user_id=48213 {key}={value} action=update",
        f"<tr><td>{nm}</td><td>{value}</td></tr>",
        f"{value} is the {label} on file for {nm}.",
        f"Please update the {label} to {value}",
        f"name\t{nm}\n{label}\t{value}\n",
        f"https://crm.example.com/api/v2/lookup?{key}={value}&limit=10",
        f"客户的{label}：{value}。",
        f"Número de {label}: {value} (confirmado)",
        f"{label}:\u00a0{value}",
        f'{{"text": "the {label} is \\"{value}\\" per the form"}}',
        f"- {label} ({value})\n- {filler(5)}",
        f"[{value}]",
        f"{filler(6)} {label} {value} {filler(6)}",
    ]


def emit_positive(prefix, det, label, key, value, n, kind="positive"):
    fs = frames(label, key, value)
    for text in R.sample(fs, n):
        add(prefix, kind, text, [det], [(det, value)])


def emit_negative(prefix, label, key, value, n, note, kind="near_miss", guard=False):
    fs = frames(label, key, value)
    for text in R.sample(fs, n):
        add(prefix, kind, text, [], note=note, guard=guard)


# --------------------------------------------------------------------------------------------
# SSN

INVALID_SSN_NUMBERS = {"078051120", "219099999", "123456789"} | {f"98765432{d}" for d in range(10)}


def ssn_valid(area, group, serial):
    s = f"{area:03d}{group:02d}{serial:04d}"
    return (area not in (0, 666) and area < 900 and group != 0 and serial != 0
            and s not in INVALID_SSN_NUMBERS)


def random_ssn():
    while True:
        a, g, s = R.randrange(1, 900), R.randrange(1, 100), R.randrange(1, 10000)
        if ssn_valid(a, g, s):
            return a, g, s


def fmt_ssn(a, g, s, sep):
    return f"{a:03d}{sep}{g:02d}{sep}{s:04d}"


SSN_LABELS = [("SSN", "ssn"), ("social security number", "social_security_number"),
              ("Social Security No.", "socialSecurityNumber"), ("SSN#", "ssn"),
              ("soc. sec. no.", "soc_sec"), ("taxpayer SSN", "taxpayer_ssn")]
NEUTRAL_LABELS = [("ID", "id"), ("number", "number"), ("ref", "ref"), ("value", "value")]


def gen_ssn():
    # Positives: separated forms need no context.
    for _ in range(40):
        a, g, s = random_ssn()
        label, key = pick(SSN_LABELS + NEUTRAL_LABELS)
        emit_positive("ssn-pos", "ssn", label, key, fmt_ssn(a, g, s, pick(["-", "-", " "])), 2)
    # Bare 9 digits and dotted forms with SSN context.
    for _ in range(30):
        a, g, s = random_ssn()
        label, key = pick(SSN_LABELS)
        v = fmt_ssn(a, g, s, pick(["", "", "."]))
        nm = name()
        for text in R.sample([
            f"{label}: {v}",
            f"{nm} {label} {v}",
            f'{{"{key}": "{v}", "verified": true}}',
            f"{key}={v}",
            f"Please confirm your {label} ({v}) before we proceed.",
            f"{label}\n{v}",
        ], 2):
            add("ssn-pos", "positive", text, ["ssn"], [("ssn", v)])
    # Edge values of the valid ranges.
    for v in ["001-01-0001", "899-99-9999", "665-01-0001", "667-12-3456", "078-05-1121",
              "219-09-9998", "123-45-6788", "772-11-2233", "733-40-1234"]:
        add("ssn-pos", "positive", f"SSN on file: {v}", ["ssn"], [("ssn", v)])

    # Near misses: invalid numbers in SSN shape, with and without context.
    bad = []
    for _ in range(12):
        bad.append((pick([0, 666]) if R.random() < 0.5 else R.randrange(900, 1000),
                    R.randrange(1, 100), R.randrange(1, 10000), "invalid area"))
    for _ in range(6):
        bad.append((R.randrange(1, 900), 0, R.randrange(1, 10000), "group 00"))
    for _ in range(6):
        bad.append((R.randrange(1, 666), R.randrange(1, 100), 0, "serial 0000"))
    bad += [(78, 5, 1120, "advertising number"), (219, 9, 9999, "advertising number"),
            (123, 45, 6789, "example number")]
    bad += [(987, 65, 4320 + d, "advertising range") for d in range(0, 10, 3)]
    for a, g, s, why in bad:
        label, key = pick(SSN_LABELS)
        emit_negative("ssn-neg", label, key, fmt_ssn(a, g, s, pick(["-", " ", ""])), 2, why)
    # Bare 9 digits without SSN context.
    for _ in range(20):
        a, g, s = random_ssn()
        v = fmt_ssn(a, g, s, "")
        t = pick([f"Order {v} shipped", f"tracking: {v}", f'{{"invoice_id": {v}}}',
                  f"routing number {v}", f"{v}", f"account {v} balance 120.50",
                  f"Ticket #{v} was closed", f"zip 94105 ref {v}"])
        add("ssn-neg", "near_miss", t, [], note="bare 9 digits without SSN context")
    # Mixed separators, longer runs, glued ids, other shapes.
    for _ in range(20):
        a, g, s = random_ssn()
        t = pick([
            f"SSN {a:03d}-{g:02d} {s:04d}",
            f"SSN {a:03d} {g:02d}-{s:04d}",
            f"SSN {a:03d}.{g:02d}-{s:04d}",
            f"ORD-{a:03d}{g:02d}{s:04d}",
            f"ORD-{a:03d}{g:02d}{s:04d}7",
            f"ssn {a:03d}{g:02d}{s:04d}5",
            f"ssn 4{a:03d}{g:02d}{s:04d}",
            f"part 1-{a:03d}-{g:02d}-{s:04d}",
            f"serial {a:03d}-{g:02d}-{s:04d}-77",
            f"SSN{a:03d}{g:02d}{s:04d}x",
            f"id=A{a:03d}-{g:02d}-{s:04d}",
            f"build {a}.{g}.{s}",
        ])
        add("ssn-neg", "near_miss", t, [], note="mixed separators / longer run / glued")
    for t in ["ZIP 94105-1234", "zip+4: 10001-0001", "2026-03-15T14:23:07Z", "ISBN 978-3-16-148410-0",
              "version 2.10.3", "ssn: 12-345-6789", "ssn: 1234-56-789",
              "ssn: 123-456-789", "SSN: 53622-1234", "SSN is 536-221-234", "price $536.22",
              "session 550e8400-e29b-41d4-a716-446655440000", "SSN: XXX-XX-1234", "SSN: ***-**-6780",
              "ssn last4 6780", "SSN: 536-22-12345", "SSN: 5362-2-1234"]:
        add("ssn-neg", "near_miss", t, [], note="not an SSN shape")


# --------------------------------------------------------------------------------------------
# Payment cards

TEST_PANS = ["4111111111111111", "4012888888881881", "4222222222222", "4000056655665556",
             "4242424242424242", "5555555555554444", "5105105105105100", "5200828282828210",
             "2223003122003222", "2221000000000009", "378282246310005", "371449635398431",
             "378734493671000", "6011111111111117", "6011000990139424", "6011981111111113",
             "3530111333300000", "3566002020360505", "30569309025904", "38520000023237",
             "36227206271667", "6200000000000005", "6205500000000000004"]


def luhn_ok(d):
    total = 0
    for k, c in enumerate(reversed(d)):
        x = int(c)
        if k % 2:
            x *= 2
            if x > 9:
                x -= 9
        total += x
    return total % 10 == 0


def luhn_complete(body):
    for c in "0123456789":
        if luhn_ok(body + c):
            return body + c
    raise AssertionError


BRANDS = [  # (name, prefixes, lengths weighted roughly as issued: mostly 16 digits)
    ("Visa", ["4"], [16] * 8 + [13, 19]),
    ("Mastercard", [str(p) for p in range(51, 56)] + ["2221", "2300", "2500", "2720"], [16]),
    ("Amex", ["34", "37"], [15]),
    ("Discover", ["6011", "644", "645", "649", "65", "622126", "622500", "622925"], [16] * 6 + [19]),
    ("JCB", ["3528", "3550", "3589"], [16] * 5 + [19]),
    ("Diners", ["300", "301", "305", "36", "38", "39"], [14] * 3 + [16]),
    ("UnionPay", ["62", "6200", "6288"], [16] * 5 + [19, 19, 17, 18]),
]


def random_card(brand=None):
    name_, prefixes, lengths = brand or pick(BRANDS)
    p = pick(prefixes)
    n = pick(lengths)
    body = p + "".join(R.choice(string.digits) for _ in range(n - len(p) - 1))
    return name_, luhn_complete(body)


def group_card(d, sep):
    if len(d) == 15:
        parts = [d[:4], d[4:10], d[10:]]
    elif len(d) == 14:
        parts = [d[:4], d[4:10], d[10:]]
    else:
        parts = [d[i:i + 4] for i in range(0, len(d), 4)]
    return sep.join(parts)


CARD_LABELS = [("card", "card_number"), ("Visa", "pan"), ("credit card", "cc_number"),
               ("payment method", "payment_card"), ("PAN", "pan"), ("cc", "cc"),
               ("account", "account")]


def with_bad_luhn(d):
    last = int(d[-1])
    return d[:-1] + str((last + R.randrange(1, 10)) % 10)


def gen_cards():
    for pan in TEST_PANS:
        label, key = pick(CARD_LABELS)
        emit_positive("card-pos", "payment_card", label, key, pan, 2)
    for brand in BRANDS:
        for _ in range(12):
            _, d = random_card(brand)
            v = pick([d, d, group_card(d, " "), group_card(d, "-")])
            label, key = pick(CARD_LABELS)
            emit_positive("card-pos", "payment_card", label, key, v, 2)
    # Grouped cards followed by an expiry or CVV.
    for _ in range(10):
        _, d = random_card(BRANDS[0])
        v = group_card(d, " ")
        # A 16-digit Visa followed by a 3-digit group that makes a valid 19-digit Visa is
        # ambiguous (the detector reports the longer number): avoid generating that case.
        cvv = pick([c for c in ("737", "123", "402", "918") if not (len(d) == 16 and luhn_ok(d + c))])
        t = pick([f"card {v} 12/27", f"card {v} exp 01/29 cvv {cvv}", f"{v} {cvv}"])
        add("card-pos", "positive", t, ["payment_card"], [("payment_card", v)])
    # A JSON number.
    _, d = random_card(BRANDS[1])
    add("card-pos", "positive", json.dumps({"pan": int(d), "exp": "12/27"}), ["payment_card"],
        [("payment_card", d)])

    # Near misses.
    for _ in range(30):  # Luhn fails
        _, d = random_card()
        emit_negative("card-neg", "card", "card_number", with_bad_luhn(d), 1, "Luhn fails")
    for _ in range(30):  # Luhn valid, no issuer has that prefix
        first = pick(["1", "7", "8", "9", "0"])
        d = luhn_complete(first + "".join(R.choice(string.digits) for _ in range(R.choice([12, 14, 15, 17]))))
        emit_negative("card-neg", pick(["order", "ref", "card"]), "ref", d, 1, "Luhn valid, unknown prefix")
    for _ in range(20):  # Luhn valid, issuer prefix, wrong length for that issuer
        name_, prefixes, lengths = pick(BRANDS[:3])
        n = pick([k for k in range(13, 20) if k not in lengths])
        p = pick(prefixes)
        d = luhn_complete(p + "".join(R.choice(string.digits) for _ in range(n - len(p) - 1)))
        emit_negative("card-neg", "card", "card_number", d, 1, f"{name_} prefix with length {n}")
    for _ in range(30):  # inside longer runs / glued / odd groupings
        _, d = random_card(pick(BRANDS[:2]))
        t = pick([
            f"ref 9{d}", f"ref {d}3", f"ORD-{d}", f"id=x{d}", f"{d}abc", f"txn {d}{d[:4]}",
            f"build {d[:4]}.{d[4:8]}.{d[8:12]}.{d[12:]}",
            f"card {d[:4]}-{d[4:8]} {d[8:12]}-{d[12:]}",
            f"card {d[:4]}  {d[4:8]}  {d[8:12]}  {d[12:]}",
            f"card {d[:3]} {d[3:6]} {d[6:9]} {d[9:]}",
            f"serial {d[:4]}-{d[4:8]}-{d[8:12]}-{d[12:]}-9",
            f"amount {d[:8]}.{d[8:]}",
            f"version 1.2.{d}",
        ])
        add("card-neg", "near_miss", t, [], note="digits inside a longer token or bad grouping")
    for t in [
        "IMEI 490154203237518", "IMEI: 356938035643809", "timestamp_ms 1767225600000",
        "order 100000000000001", "UPS 1Z999AA10123456784", "FedEx 7489 2345 6789",
        "USPS 9400 1000 0000 0000 0000 00", "ISBN 978-3-16-148410-0", "GTIN 00012345678905",
        "uuid 550e8400-e29b-41d4-a716-446655440000", "card ending in 1111", "card **** **** **** 1111",
        "card XXXX-XXXX-XXXX-4242", "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "amount 4111.11 USD", "phone +1 415 555 2671", "4111 1111", "5555 5555 5555",
        "total 4,111,111,111,111,111", "Pi 3.14159265358979323846",
        "account 0000000000000000", "1234 5678 9012 3456",
    ]:
        expect = ["phone"] if "phone" in t else []
        add("card-neg", "near_miss", t, expect, note="card-like but not a card")


# --------------------------------------------------------------------------------------------
# Email

DOMAINS = ["example.com", "example.org", "mail.example.net", "acme.io", "corp.example.co.uk",
           "uni-example.edu", "example.de", "example.fr", "startup.dev", "shop.example.app",
           "xn--80ak6aa92e.xn--p1ai", "sub.sub2.example.info", "example.museum"]


def random_local():
    f, l = pick(FIRST).lower(), pick(LAST).lower().replace("ü", "u").replace("'", "")
    return pick([f, f"{f}.{l}", f"{f}_{l}", f"{f[0]}{l}", f"{f}.{l}+{pick(['news', 'billing', 'x'])}",
                 f"{f}{R.randrange(1, 99)}", f"{f}-{l}", f"{l}.{f}%ops", f"{f.upper()}.{l.upper()}"])


def gen_email():
    for _ in range(60):
        v = f"{random_local()}@{pick(DOMAINS)}"
        emit_positive("email-pos", "email", pick(["email", "e-mail", "contact", "mail"]),
                      pick(["email", "mail", "contact_email"]), v, 2)
    for v in ["o'brien@example.ie", "a@b.io", "4155552671@vtext.com", "first.last@sub.example.travel"]:
        add("email-pos", "positive", f"send to {v}", ["email"], [("email", v)])
    for v, t in [("alice@example.com", "mailto:alice@example.com?subject=hi"),
                 ("alice@example.com", "<alice@example.com>"),
                 ("bob@example.org", "From: Bob <bob@example.org>"),
                 ("x@example.com", "?to=x@example.com&y=1"),
                 ("carol@example.net", "'carol@example.net'"),
                 ("dave@example.com", "Email:dave@example.com."),
                 ("eve@example.io", '["eve@example.io"]')]:
        add("email-pos", "positive", t, ["email"], [("email", v)])
    for t in ["react@18.2.0", "lodash@4.17.21", "npm i @scope/pkg@1.0.0", "icon@2x.png",
              "logo@3x.webp", "bundle@main.js", "@alice said hi", "@Override public void run()",
              "alice@localhost", "root@server", "5 apples @ $3.00", "HEAD@{1}", "user@[10.0.0.1]",
              "alice..bob@example.com", "alice.@example.com", "alice@example", "alice@example.c",
              "alice@-example.com", "alice@example..com", "git@github.com:org/repo.git",
              "a @ b . com", "@media (max-width: 600px)", "docker pull image@sha256:abcdef0123",
              "foo@bar", "email: (none)", "user@example.123", "styles@latest.css"]:
        add("email-neg", "near_miss", t, [], note="not an email address")
    for t in ["alice at example dot com", "alice [at] example [dot] com", "alice(at)example.com"]:
        add("email-oos", "out_of_scope", t, ["email"], note="obfuscated address")


# --------------------------------------------------------------------------------------------
# Phone

def nanp_parts():
    while True:
        a = f"{R.randrange(2, 10)}{R.randrange(0, 10)}{R.randrange(0, 10)}"
        x = f"{R.randrange(2, 10)}{R.randrange(0, 10)}{R.randrange(0, 10)}"
        if a[1:] != "11" and x[1:] != "11":
            return a, x, f"{R.randrange(0, 10000):04d}"


NANP_FORMATS = ["({a}) {x}-{l}", "({a}){x}-{l}", "{a}-{x}-{l}", "{a}.{x}.{l}", "{a} {x} {l}",
                "{a} {x}-{l}", "1-{a}-{x}-{l}", "1 ({a}) {x}-{l}", "+1 {a} {x} {l}", "+1 ({a}) {x}-{l}",
                "+1{a}{x}{l}", "+1-{a}-{x}-{l}", "1.{a}.{x}.{l}"]

INTL = [  # (country code, groups of the national number)
    ("44", [2, 4, 4]), ("44", [4, 6]), ("49", [2, 7]), ("49", [3, 8]), ("33", [1, 2, 2, 2, 2]),
    ("34", [3, 3, 3]), ("39", [2, 4, 4]), ("31", [2, 3, 4]), ("91", [5, 5]), ("81", [1, 4, 4]),
    ("61", [1, 4, 4]), ("55", [2, 5, 4]), ("52", [2, 4, 4]), ("86", [3, 4, 4]), ("353", [1, 3, 4]),
    ("971", [2, 3, 4]), ("234", [3, 3, 4]), ("27", [2, 3, 4]), ("7", [3, 3, 2, 2]), ("48", [3, 3, 3]),
    ("46", [2, 3, 2, 2]), ("41", [2, 3, 2, 2]), ("852", [4, 4]), ("65", [4, 4]), ("972", [2, 3, 4]),
]


def gen_phone():
    for _ in range(55):
        a, x, l = nanp_parts()
        v = pick(NANP_FORMATS).format(a=a, x=x, l=l)
        emit_positive("phone-pos", "phone", pick(["phone", "tel", "mobile", "call", "contact", "number"]),
                      pick(["phone", "phone_number", "mobile", "tel"]), v, 2)
    for _ in range(45):
        cc, groups = pick(INTL)
        digits = [str(R.randrange(1, 10))] + [str(R.randrange(0, 10)) for _ in range(sum(groups) - 1)]
        parts, k = [], 0
        for g in groups:
            parts.append("".join(digits[k:k + g]))
            k += g
        sep = pick([" ", " ", "-", "."])
        v = f"+{cc}{pick([' ', sep])}{sep.join(parts)}" if R.random() < 0.8 else f"+{cc}{''.join(parts)}"
        emit_positive("phone-pos", "phone", pick(["phone", "tel", "mobile", "WhatsApp"]),
                      pick(["phone", "msisdn", "mobile"]), v, 2)
    # Bare digit runs with phone context.
    for _ in range(15):
        a, x, l = nanp_parts()
        v = pick([f"{a}{x}{l}", f"1{a}{x}{l}"])
        t = pick([f"phone: {v}", f'{{"phone_number": "{v}"}}', f"Call {v} after 5pm", f"tel {v}",
                  f"mobile={v}", f"fax: {v}"])
        add("phone-pos", "positive", t, ["phone"], [("phone", v)])
    for v in ["+44 (0)20 7946 0958"]:
        add("phone-oos", "out_of_scope", f"tel {v}", ["phone"], note="UK trunk (0) inside an E.164 number")

    # Near misses.
    for _ in range(25):
        a, x, l = nanp_parts()
        v = f"{a}{x}{l}"
        t = pick([f"order {v}", f"invoice #{v}", f"ts {v}", f'{{"id": {v}}}', f"ref {v}", v,
                  f"ORD-{a}-{x}-{l}", f"account {v} closed"])
        add("phone-neg", "near_miss", t, [], note="bare 10 digits without phone context / glued id")
    for _ in range(25):
        a, x, l = nanp_parts()
        t = pick([f"({R.choice('01')}{a[1:]}) {x}-{l}", f"{a}-{R.choice('01')}{x[1:]}-{l}",
                  f"{a}.{x}-{l}", f"{a}-{x}-{l}-9", f"v{a}.{x}.{l}", f"{a}-{x}-{l}0",
                  f"1.2.{a}.{x}.{l}", f"+1 {R.choice('01')}{a[1:]} {x} {l}", f"+1 {a} {x} {l}1",
                  f"x+{a}{x}{l}", f"{a}-{x[:2]}-{x[2]}{l}"])
        add("phone-neg", "near_miss", t, [], note="invalid NANP or glued")
    for t in ["2026-03-15", "2026-03-15T14:23:07Z", "at 14:23:07", "ISBN 978-3-16-148410-0",
              "ISBN 0-306-40615-2", "ZIP 94105-1234", "192.168.100.200", "10.0.0.254:8080",
              "version 4.15.5", "v10.4.1-beta", "price $1,234,567.89", "coords 37.7749, -122.4194",
              "+05:30", "UTC+10", "1e+10", "+999 123 456 789", "+0 20 7946 0958", "+12345",
              "+1234567890123456", "550e8400-e29b-41d4-a716-446655440000", "2 + 2 = 4",
              "score 3-2-1", "room 4-102", "between 1990-2025", "page 12 of 415",
              "items 415 555", "10/12/2026 9:30", "PO box 4155", "+/- 5%", "pid 41555 ppid 1",
              "Lot 12345-67890", "serial SN-415-555-2671", "ext. 2671", "(555)", "count (415)"]:
        add("phone-neg", "near_miss", t, [], note="not a phone number")
    for t in ["call four one five, five five five, two six seven one"]:
        add("phone-oos", "out_of_scope", t, ["phone"], note="spelled out")


# --------------------------------------------------------------------------------------------
# IBAN

IBAN_LEN = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
# BBAN structure per country, in the registry's notation (n digits, a capital letters,
# c alphanumerics), so generated IBANs look like real ones.
BBAN = {
    "AD": "8n,12c", "AE": "19n", "AL": "8n,16c", "AT": "16n", "AZ": "4a,20c", "BA": "16n",
    "BE": "12n", "BG": "4a,6n,8c", "BH": "4a,14c", "BI": "23n", "BR": "23n,1a,1c", "BY": "4c,4n,16c",
    "CH": "5n,12c", "CR": "18n", "CY": "8n,16c", "CZ": "20n", "DE": "18n", "DJ": "23n", "DK": "14n",
    "DO": "4c,20n", "EE": "16n", "EG": "25n", "ES": "20n", "FI": "14n", "FK": "2a,12n", "FO": "14n",
    "FR": "10n,11c,2n", "GB": "4a,14n", "GE": "2a,16n", "GI": "4a,15c", "GL": "14n", "GR": "7n,16c",
    "GT": "4c,20c", "HN": "4a,20n", "HR": "17n", "HU": "24n", "IE": "4a,14n", "IL": "19n",
    "IQ": "4a,15n", "IS": "22n", "IT": "1a,10n,12c", "JO": "4a,4n,18c", "KW": "4a,22c", "KZ": "3n,13c",
    "LB": "4n,20c", "LC": "4a,24c", "LI": "5n,12c", "LT": "16n", "LU": "3n,13c", "LV": "4a,13c",
    "LY": "21n", "MC": "10n,11c,2n", "MD": "2c,18c", "ME": "18n", "MK": "3n,10c,2n", "MN": "16n",
    "MR": "23n", "MT": "4a,5n,18c", "MU": "4a,19n,3a", "NI": "4a,20n", "NL": "4a,10n", "NO": "11n",
    "OM": "3n,16c", "PK": "4a,16c", "PL": "24n", "PS": "4a,21c", "PT": "21n", "QA": "4a,21c",
    "RO": "4a,16c", "RS": "18n", "RU": "14n,15c", "SA": "2n,18c", "SC": "4a,20n,3a", "SD": "14n",
    "SE": "20n", "SI": "15n", "SK": "20n", "SM": "1a,10n,12c", "SO": "19n", "ST": "21n", "SV": "4a,20n",
    "TL": "19n", "TN": "20n", "TR": "6n,16c", "UA": "6n,19c", "VA": "18n", "VG": "4a,16n", "XK": "16n",
    "YE": "4a,4n,18c",
}
assert all(IBAN_LEN[cc] == 4 + sum(int(p[:-1]) for p in f.split(",")) for cc, f in BBAN.items())
assert set(BBAN) == set(IBAN_LEN)


def random_bban(cc):
    out = []
    for part in BBAN[cc].split(","):
        n, kind = int(part[:-1]), part[-1]
        for _ in range(n):
            if kind == "a" or (kind == "c" and R.random() < 0.15):
                out.append(R.choice(string.ascii_uppercase))
            else:
                out.append(R.choice(string.digits))
    return "".join(out)


KNOWN_IBANS = ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606",
               "NL91ABNA0417164300", "BE68539007547034", "NO9386011117947", "CH9300762011623852957",
               "ES9121000418450200051332", "IT60X0542811101000000123456", "PL61109010140000071219812874",
               "MT84MALT011000012345MTLCAST001S", "LC55HEMM000100010012001200023015",
               "SA0380000000608010167519", "BR1800360305000010009795493C1", "PT50000201231234567890154",
               "AT611904300234573201", "DK5000400440116243", "FI2112345600000785", "SE4550000000058398257466",
               "IE29AIBK93115212345678", "GR1601101250000000012300695", "CZ6508000000192000145399"]


def mod97(s):
    r = 0
    for c in s:
        v = int(c, 36)
        r = (r * (100 if v > 9 else 10) + v) % 97
    return r


def iban_checked(cc, bban):
    check = 98 - mod97(bban + cc + "00")
    return f"{cc}{check:02d}{bban}"


def random_iban(cc=None):
    cc = cc or pick(sorted(IBAN_LEN))
    return iban_checked(cc, random_bban(cc))


def group_iban(s):
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4))


def gen_iban():
    for v in KNOWN_IBANS:
        emit_positive("iban-pos", "iban", "IBAN", "iban", pick([v, group_iban(v)]), 2)
    for cc in sorted(IBAN_LEN):
        v = random_iban(cc)
        emit_positive("iban-pos", "iban", pick(["IBAN", "account", "bank account", "Konto"]),
                      pick(["iban", "account_iban", "bank_account"]), pick([v, group_iban(v)]), 1)
    for _ in range(30):
        v = random_iban()
        emit_positive("iban-pos", "iban", "IBAN", "iban", pick([v, group_iban(v)]), 1)

    for _ in range(25):  # checksum broken
        v = random_iban()
        i = R.randrange(4, len(v))
        c = v[i]
        repl = pick([d for d in string.digits if d != c]) if c.isdigit() else pick([x for x in string.ascii_uppercase if x != c])
        bad = v[:i] + repl + v[i + 1:]
        if mod97(bad[4:] + bad[:4]) == 1:
            continue
        emit_negative("iban-neg", "IBAN", "iban", pick([bad, group_iban(bad)]), 1, "mod-97 fails", guard=True)
    for _ in range(20):  # wrong length for the country (checksum made valid)
        cc = pick(sorted(IBAN_LEN))
        n = IBAN_LEN[cc] - 4 + pick([-2, -1, 1, 2])
        v = iban_checked(cc, "".join(R.choice(string.digits) for _ in range(n)))
        emit_negative("iban-neg", "IBAN", "iban", v, 1, "wrong length for the country", guard=True)
    for _ in range(10):  # unknown country (checksum made valid)
        cc = pick(["US", "CA", "AU", "JP", "CN", "XX", "ZZ", "IN"])
        v = iban_checked(cc, "".join(R.choice(string.digits) for _ in range(18)))
        emit_negative("iban-neg", "IBAN", "iban", v, 1, "country without IBANs", guard=True)
    for _ in range(15):
        v = random_iban()
        t = pick([f"IBAN {v.lower()}", f"ref X{v}", f"id {v}9", f"IBAN {'-'.join(v[i:i+4] for i in range(0, len(v), 4))}",
                  f"IBAN {v[:4]} {v[4:10]} {v[10:]}"])
        add("iban-neg", "near_miss", t, [], note="lower case / glued / other grouping", guard=True)
    for t in ["SWIFT DEUTDEFF", "BIC: COBADEFFXXX", "sort code 12-34-56 account 12345678",
              "routing 021000021 account 000123456789", "DE89 is a prefix", "model GB82 WEST",
              "plate AB12 CDE", "flight LH400 seat 12A", "ISO 13616"]:
        add("iban-neg", "near_miss", t, [], note="bank-ish but not an IBAN")


# --------------------------------------------------------------------------------------------
# Secrets

B32 = string.ascii_uppercase + "234567"
ALNUM = string.ascii_letters + string.digits


def rand(chars, n):
    return "".join(R.choice(chars) for _ in range(n))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def random_jwt():
    header = {"alg": pick(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    if R.random() < 0.5:
        header["kid"] = rand(ALNUM, 8)
    payload = {"sub": str(R.randrange(10**6)), "iss": "https://idp.example.com", "iat": 1767225600,
               "exp": 1767229200, "scope": pick(["read", "read write", "salesforce:read"])}
    sig = b64url(R.randbytes(pick([32, 64, 256])))
    return ".".join([b64url(json.dumps(header, separators=(",", ":")).encode()),
                     b64url(json.dumps(payload, separators=(",", ":")).encode()), sig])


def random_pem():
    label = pick(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY",
                  "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY"])
    body = base64.b64encode(R.randbytes(pick([120, 300, 600]))).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    nl = pick(["\n", "\r\n", "\\n"])
    return f"-----BEGIN {label}-----{nl}{nl.join(lines)}{nl}-----END {label}-----"


def gen_secrets():
    labels = [("aws_access_key_id", "AccessKeyId"), ("key", "key"), ("credentials", "access_key")]
    for _ in range(25):
        v = pick(["AKIA", "AKIA", "ASIA", "AROA", "AIDA"]) + rand(B32, 16)
        label, key = pick(labels)
        emit_positive("secret-pos", "secret", label, key, v, 2)
    for _ in range(25):
        v = random_jwt()
        emit_positive("secret-pos", "secret", pick(["token", "id_token", "jwt"]),
                      pick(["access_token", "id_token", "jwt"]), v, 2)
    for _ in range(20):
        tok = pick([rand(ALNUM, 32), "sk-" + rand(ALNUM, 40), rand(string.hexdigits.lower(), 40),
                    random_jwt(), rand(ALNUM + "-._~+/", 48)])
        if not any(c.isdigit() for c in tok) and not (any(c.isupper() for c in tok) and any(c.islower() for c in tok)):
            continue
        for t in R.sample([f"Authorization: Bearer {tok}", f'{{"headers": {{"Authorization": "Bearer {tok}"}}}}',
                           f"curl -H 'Authorization: Bearer {tok}' https://api.example.com",
                           f"use bearer {tok} for the call", f"authorization=Bearer {tok}"], 2):
            add("secret-pos", "positive", t, ["secret"], [("secret", tok.rstrip("."))])
    for _ in range(20):
        v = random_pem()
        if R.random() < 0.25:  # inside a JSON document: the newlines are escaped
            t = json.dumps({"private_key": v})
            v = json.dumps(v)[1:-1]
        else:
            t = pick([f"here is the key:\n{v}\nkeep it safe", f"{v}", f"cat id_rsa\n{v}\n$ "])
        add("secret-pos", "positive", t, ["secret"], [("secret", v)])
    for _ in range(12):
        v = pick(["ghp_", "gho_", "ghs_", "ghu_"]) + rand(ALNUM, 36)
        emit_positive("secret-pos", "secret", "GITHUB_TOKEN", "github_token", v, 1)
    for _ in range(4):
        v = "github_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59)
        emit_positive("secret-pos", "secret", "token", "token", v, 1)
    for _ in range(10):
        v = f"xox{pick('bpa')}-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{rand(ALNUM, 24)}"
        emit_positive("secret-pos", "secret", "SLACK_TOKEN", "slack_token", v, 1)

    for t in ["Authorization: Bearer <token>", "Authorization: Bearer ${API_TOKEN}",
              "Bearer YOUR_API_TOKEN_HERE", "Authorization: Bearer your-access-token",
              "the bearer of this letter is a friend", "Bearer abc123", "Bearer",
              "auth scheme: Bearer", "Bearer {{token}}", "Bearer ...",
              "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
              "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
              "-----BEGIN PGP SIGNATURE-----\niQEzBAABCAAdFiEE\n-----END PGP SIGNATURE-----",
              "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 user@host",
              "AKIA", "AKIA1234", "akiaiosfodnn7example", "xAKIAIOSFODNN7EXAMPLE",
              "ghp_short", "ghp_", "github_pat_", "xoxb-", "xoxb-your-token-here",
              "eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9.e30", "header eyJ.a.b",
              "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
              "md5 d41d8cd98f00b204e9800998ecf8427e", "uuid 550e8400-e29b-41d4-a716-446655440000",
              "commit 9fceb02d0ae598e95dc970b74767f19372d61af8", "nonce dGhpcyBpcyBub3QgYSBrZXk=",
              "password: ********", "api_key: REDACTED", "token=[REDACTED]"]:
        add("secret-neg", "near_miss", t, [], note="placeholder / public material / hash")
    for _ in range(20):
        t = pick([f"sha256:{rand('0123456789abcdef', 64)}", f"request-id {rand(ALNUM, 32)}",
                  f"etag \"{rand('0123456789abcdef', 32)}\"", f"session {rand(string.ascii_lowercase, 24)}",
                  f"blob {base64.b64encode(R.randbytes(30)).decode()}", f"AKIA{rand(B32, 12)}",
                  f"ASIA{rand(string.ascii_lowercase, 16)}", f"ghp_{rand(ALNUM, 20)}"])
        add("secret-neg", "near_miss", t, [], note="random-looking but not a credential")


# --------------------------------------------------------------------------------------------
# Clean text with many numbers, and mixed cases.

CLEAN = [
    "The meeting moved to 2026-03-15 at 14:30 UTC; agenda items 1-4 are unchanged.",
    '{"id": 48213, "total": 129.99, "currency": "USD", "items": [{"sku": "AB-1234", "qty": 2}]}',
    "Release v2.14.3 fixes 37 bugs; see https://example.com/changelog#2.14.3",
    "Server 10.0.4.17 responded in 235 ms (p99 812 ms) at 2026-03-15T14:23:07.123Z.",
    "Order ORD-2026-000123 contains 3 items and ships from warehouse 7.",
    "Temperature readings: 21.5, 22.1, 19.8, 20.0 degrees.",
    "Invoice INV-88231 due 04/15/2026, amount $1,234.56.",
    "Population grew from 8,336,817 to 8,804,190 between 2010 and 2020.",
    "The ISBN of the book is 978-3-16-148410-0 and it has 412 pages.",
    "UUID 3f2504e0-4f89-11d3-9a0c-0305e82c3301 created by job 9912.",
    "SELECT * FROM orders WHERE created_at > '2026-01-01' LIMIT 100;",
    "Coordinates 51.5074 N, 0.1278 W; elevation 35 m.",
    "def add(a, b):\n    return a + b  # 2 + 2 = 4",
    "Build 20260315.4 passed 1,204 tests in 3m 12s.",
    "Flight LH 400 departs 13:05 from gate B44, seat 12A.",
    "Stock AAPL closed at 187.44 (+1.2%), volume 52,164,800.",
    "ZIP code 94105-1234, suite 500.",
    "Commit 9fceb02 merged PR #4512 into main.",
    "HTTP/1.1 200 OK\r\nContent-Length: 348\r\nDate: Sun, 15 Mar 2026 14:23:07 GMT",
    "Chapter 12, verses 3-17; footnote 42.",
    "The bearer bond matured in 1998.",
    "Contact the help desk via the portal; no phone support on weekends.",
    "Lat/long: 37.7749, -122.4194; bbox 37.70,-122.52,37.83,-122.35",
    "CPU 3.2 GHz, 16 GB RAM, 512 GB SSD, model X1-2026.",
    "Total: 4 x 12.50 = 50.00 EUR (VAT 19%: 9.50)",
    "The tracking page shows status 3 of 5 since 09:41.",
    "Metrics: rps=1520 p50=12ms p95=48ms errors=0.02%",
    "Matrix [[1, 2, 3], [4, 5, 6], [7, 8, 9]] has determinant 0.",
    "Use semver ranges like ^1.2.3 or ~4.5.6 in package.json.",
    "Unix time 1767225600 is 2026-01-01T00:00:00Z.",
]


def gen_clean():
    for t in CLEAN:
        add("clean", "clean", t)
    for _ in range(70):
        t = pick([
            f"{filler(12)}.",
            f'{{"id": {R.randrange(10**6)}, "name": "{name()}", "score": {R.randrange(1000) / 10}}}',
            f"{R.randrange(1, 28):02d}/{R.randrange(1, 13):02d}/{R.randrange(1990, 2030)} {filler(5)}",
            f"v{R.randrange(10)}.{R.randrange(30)}.{R.randrange(100)} {filler(4)}",
            f"{name()} moved to {pick(CITIES)} in {R.randrange(1990, 2026)} with {R.randrange(2, 9)} colleagues.",
            f"order {R.randrange(10**5, 10**6)} qty {R.randrange(1, 50)} price {R.randrange(100, 99999) / 100}",
            f"2026-0{R.randrange(1, 10)}-1{R.randrange(0, 10)}T{R.randrange(10, 24)}:{R.randrange(10, 60)}:{R.randrange(10, 60)}Z {filler(4)}",
            f"ip {R.randrange(1, 255)}.{R.randrange(255)}.{R.randrange(255)}.{R.randrange(255)} port {R.randrange(1024, 65535)}",
        ])
        add("clean", "clean", t)


def gen_mixed():
    for _ in range(60):
        parts, expect, values = [], [], []
        for det in R.sample(["ssn", "payment_card", "email", "phone", "iban", "secret"], R.randrange(2, 5)):
            if det == "ssn":
                v = fmt_ssn(*random_ssn(), "-")
                parts.append(f"SSN {v}")
            elif det == "payment_card":
                v = random_card()[1]
                parts.append(f"card {v}")
            elif det == "email":
                v = f"{random_local()}@{pick(DOMAINS)}"
                parts.append(f"email {v}")
            elif det == "phone":
                a, x, l = nanp_parts()
                v = f"({a}) {x}-{l}"
                parts.append(f"phone {v}")
            elif det == "iban":
                v = random_iban()
                parts.append(f"IBAN {v}")
            else:
                v = "AKIA" + rand(B32, 16)
                parts.append(f"key {v}")
            expect.append(det)
            values.append((det, v))
        sep = pick(["; ", "\n", ", ", " | "])
        text = sep.join(parts)
        if R.random() < 0.5:
            text = json.dumps({"note": text, "customer": name()})
        add("mixed", "mixed", text, expect, values)


# --------------------------------------------------------------------------------------------
# Hand-written tricky cases: (text, expect, note)

HAND = [
    ("My SSN is 536-22-1234 and my old one was 666-22-1234.", ["ssn"], "one valid, one invalid area"),
    ("SSN: 536221234\nPhone: 4155552671", ["ssn", "phone"], "bare values with context on each line"),
    ("ssn=536221234&ssn=536221235", ["ssn"], "query string"),
    ("The social-security number field (536 22 1234) is required.", ["ssn"], "spaced SSN"),
    ("employee_ssn,employee_name\n536221234,Alice", ["ssn"], "CSV header gives the context"),
    ("Order number 536221234 was refunded.", [], "bare 9 digits, no context"),
    ("Tax ID (EIN) 12-3456789", [], "EIN is 2-7, not an SSN"),
    ("SSN 536-22-1234-5678", [], "longer dashed chain"),
    ("SSN 536--22--1234", [], "double dashes"),
    ("ITIN 912-70-1234", [], "ITINs start with 9: not an SSN"),
    ("Card 4111 1111 1111 1111 exp 12/27 CVV 123", ["payment_card"], "card with expiry and CVV"),
    ("4111111111111111,4012888888881881", ["payment_card"], "two cards, comma separated"),
    ("card: 4111-1111-1111-1111.", ["payment_card"], "dashed, sentence end"),
    ("IMEI 35-209900-176148-1", [], "IMEI formatting"),
    ("Luhn-valid but unknown: 8888888888888888", [], "no issuer starts with 8"),
    ("Call +1 (415) 555-2671 or email ops@example.com", ["phone", "email"], "two detectors"),
    ("Meeting 2026-03-15 14:23, room 415-B", [], "date, time and a room"),
    ("Phone: 555-0199", [], "7-digit local numbers are not matched"),
    ("My number is 415 555 2671.", ["phone"], "spaced NANP"),
    ("Mobile +44 7700 900123, office +44 20 7946 0958", ["phone"], "two UK numbers"),
    ("Send 4155552671@txt.att.net a text", ["email"], "SMS gateway address: email wins"),
    ("IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX", ["iban"], "IBAN with BIC"),
    ("IBAN: GB82 WEST 1234 5698 7654 32.", ["iban"], "UK IBAN with letters"),
    ("ES91 2100 0418 4502 0005 1332 is my account", ["iban"], "at the start"),
    ("curl -H \"Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\"",
     ["secret"], "JWT in a curl command"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\naws_access_key_id = AKIAIOSFODNN7EXAMPLE",
     ["secret"], "AWS credentials file"),
    ("export GITHUB_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a", ["secret"], "GitHub PAT"),
    ("The token looks like ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx in docs", ["secret"],
     "placeholder with the real shape is still reported"),
    ('{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"Customer 42: SSN 536-22-1234, card 5555555555554444"}]}}',
     ["ssn", "payment_card"], "MCP tool result"),
    ('{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"lookup","arguments":{"customer_id":48213,"since":"2026-03-15"}}}',
     [], "MCP call without PII"),
    ("Le numéro est +33 1 23 45 67 89.", ["phone"], "French number"),
    ("電話番号：+81 3-1234-5678", ["phone"], "Japanese text"),
    ("Kontakt: max.mustermann@example.de, IBAN DE89370400440532013000", ["email", "iban"], "German"),
    ("See RFC 5322 section 3.4.1 and RFC 6531.", [], "numbers in references"),
    ("Price: $4,111.11 or 4111.11 EUR", [], "prices"),
    ("GPS 40.689247, -74.044502", [], "coordinates"),
    ("MAC 00:1A:2B:3C:4D:5E, serial 4111-A", [], "MAC address"),
    ("Call me maybe: (415) 555-2671 x204", ["phone"], "extension after a space"),
    ("(415) 555-2671x204", ["phone"], "extension glued"),
    ("123456789012", [], "12 digits"),
    ("SSN 536 22 1234 and phone 415 555 2671", ["ssn", "phone"], "spaced SSN next to spaced phone"),
    ("DOB 1990-05-17, SSN 536-22-1234", ["ssn"], "date next to SSN"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA", ["secret"], "truncated private key"),
    ("email me at alice@example.com.", ["email"], "sentence-ending dot"),
    ("alice@example.com,bob@example.org;carol@example.net", ["email"], "address list"),
    ("SSN:536-22-1234", ["ssn"], "no space after the colon"),
    ("SSN 536 - 22 - 1234", ["ssn"], "spaces around the dashes"),
    ("ssn\t536221234", ["ssn"], "tab between context and value"),
    ("SSN lookup failed for 000-00-0000", [], "all-zero placeholder"),
    ("SSNs: 536-22-1234, 536-22-1235, 536-22-1236", ["ssn"], "list of SSNs"),
    ("The range 212-555-1234 to 212-555-1299 is reserved", ["phone"], "two NANP numbers"),
    ("Call 911 or 555-1234", [], "7-digit local number and 911"),
    ("| 415 | 555 | 2671 |", [], "table cells"),
    ("tel:+14155552671", ["phone"], "tel: URI"),
    ("Dial +1-800-555-0199 now", ["phone"], "toll-free with +1"),
    ("Amex 3714 496353 98431 on file", ["payment_card"], "Amex 4-6-5 grouping"),
    ("Order #4000056655665556 confirmed", ["payment_card"], "a card number used as an order reference is still a card"),
    ("ts_ms=1767225600123 id=1767225600123456789", [], "millisecond timestamp and snowflake id"),
    ("Colour #415555, size 12", [], "hex colour"),
    ("Dates 15.03.2026 and 2026.03.15", [], "dotted dates"),
    ("Reply to noreply@github.com", ["email"], "noreply address"),
    ("jean-luc.picard@starfleet.example", ["email"], "hyphenated local part, long TLD"),
    ("Firstname.Lastname@Company.COM", ["email"], "mixed case"),
    ("@Component\nclass UserService {}", [], "Java annotation"),
    ("Authorization: Bearer ya29.a0AfH6SMBxK9yLqZ3dV2e8Fh7GjLkMnPqRsTuVw", ["secret"], "Google OAuth access token"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", [], "Basic auth is not matched (no Bearer)"),
    ("AKIAIOSFODNN7EXAMPLE is the AWS docs example key", ["secret"], "AWS documentation example key"),
    ("id_token=eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSJ9.c2lnbmF0dXJl&state=xyz",
     ["secret"], "JWT in a query string"),
    ("IBAN FR76 3000 6000 0112 3456 7890 189", ["iban"], "French IBAN"),
    ("Konto: CH93 0076 2011 6238 5295 7", ["iban"], "Swiss IBAN"),
    ("NO93 8601 1117 947 is a short IBAN", ["iban"], "Norway, 15 characters"),
    ("GB82 WEST 1234 5698 7654 33", [], "IBAN with a wrong check"),
    ("sort code 40-47-84, account 70872490", [], "UK domestic account"),
    ("Lot 12-345-6789 expires 2027", [], "lot number in 2-3-4 shape"),
    ("Temperature 36.6, pulse 72, BP 120/80", [], "vital signs"),
    ("Version 4111.1111.1111.1111 of nothing", [], "dot-grouped digits in a version"),
    ("{\"card\": \"4111111111111111\", \"cvv\": \"123\", \"ssn\": \"536221234\"}", ["payment_card", "ssn"], "escaped JSON"),
    ("contact: +49 30 12345678 / +49 170 1234567", ["phone"], "German landline and mobile"),
    ("WhatsApp +91 98765 43210", ["phone"], "Indian mobile"),
    ("+55 11 91234-5678", ["phone"], "Brazilian mobile"),
    ("SSN 536\u201322\u20131234", ["ssn"], "en dashes (folded to -)"),
    ("SSN ５３６-２２-１２３４", ["ssn"], "full-width digits (folded)"),
    ("card 4111\u00a01111\u00a01111\u00a01111", ["payment_card"], "no-break spaces (folded)"),
    ("cc: 4111.1111.1111.1111", ["payment_card"], "dot grouping with card context"),
    ("phone 415\u2013555\u20132671", ["phone"], "en dashes (folded)"),
    ("tel ４１５-５５５-２６７１", ["phone"], "full-width digits (folded)"),
]

OOS = [
    ("SSN: five three six, two two, one two three four", ["ssn"], "spelled out"),
    ("Call 1-800-FLOWERS", ["phone"], "vanity number"),
    ("phone 415/555-2671", ["phone"], "slash after the area code"),
    ("josé.garcía@example.com", ["email"], "non-ASCII local part (RFC 6531)"),
    ("IBAN de89 3704 0044 0532 0130 00", ["iban"], "lower-case IBAN"),
    ("STRIPE_SECRET_KEY=sk_live_51HxYzAbCdEfGhIjKlMnOpQr", ["secret"], "Stripe key (no Stripe detector)"),
]


# --------------------------------------------------------------------------------------------
# Unicode spellings and context after the value: the scanner folds digits of every script,
# full-width forms, Unicode dashes and spaces and invisible characters to ASCII before matching
# (docs/filter.md, "Normalisation"), and reads context words after a number as well as before.

FULLWIDTH = {str(d): chr(0xFF10 + d) for d in range(10)}
DIGIT_ZEROS = [0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0x1D7CE]  # Arabic-Indic, Persian, Devanagari, ...
DASHES = ["\u2013", "\u2014", "\u2011", "\u2212", "\uff0d"]
SPACES = ["\u00a0", "\u202f", "\u3000", "\u2007"]


def unicode_digits(v, table=None):
    zero = table if table is not None else pick(DIGIT_ZEROS)
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in v)


def fullwidth(v):
    return "".join(FULLWIDTH.get(c, c) for c in v)


def gen_unicode():
    for _ in range(12):  # SSNs
        a, g, s = random_ssn()
        forms = [fullwidth(fmt_ssn(a, g, s, "-")), fmt_ssn(a, g, s, pick(DASHES)),
                 fmt_ssn(a, g, s, pick(SPACES)), unicode_digits(fmt_ssn(a, g, s, "-")),
                 fullwidth(fmt_ssn(a, g, s, "\uff0d"))]
        v = pick(forms)
        label, _ = pick(SSN_LABELS)
        add("unicode-pos", "positive", pick([f"{label}: {v}", f"{name()} {label} {v}"]),
            ["ssn"], [("ssn", v)])
    for _ in range(8):  # bare 9 digits with the context after them
        a, g, s = random_ssn()
        v = fmt_ssn(a, g, s, "")
        v = pick([v, fullwidth(v), unicode_digits(v)])
        add("unicode-pos", "positive", pick([f"{name()} gave {v} as their SSN",
                                             f"{v} is the social security number on file"]),
            ["ssn"], [("ssn", v)])
    for _ in range(12):  # cards
        _, d = random_card(pick(BRANDS[:2]))
        v = pick([fullwidth(group_card(d, " ")), group_card(d, pick(SPACES)),
                  group_card(d, pick(DASHES)), unicode_digits(d), group_card(d, "\u200b"),
                  group_card(d, ".")])
        label, _ = pick(CARD_LABELS[:6])
        add("unicode-pos", "positive", pick([f"{label} {v}", f"{v} ({label})"]),
            ["payment_card"], [("payment_card", v)])
    for _ in range(10):  # phones
        a, x, l = nanp_parts()
        v = pick([fullwidth(f"{a}-{x}-{l}"), f"({a}) {x}{pick(DASHES)}{l}",
                  f"{a}{pick(DASHES)}{x}{pick(DASHES[:1])}{l}", unicode_digits(f"{a}-{x}-{l}")])
        if pick([True, False]):
            text = f"phone {v}"
        else:
            v = fullwidth(f"{a}{x}{l}")
            text = f"{v} is my cell"
        add("unicode-pos", "positive", text, ["phone"], [("phone", v)])
    # Near misses: Unicode digits and separators in what is no PII.
    for t in ["version ４.２.１ released", "room ٣٠٢, floor ٤", "build 4111.1111.1111.1111 of the app",
              "score 12\u201310 at half time", "ticket\u00a0#4155\u00a05526", "order ５３６２２１２３４ shipped",
              "pages 415\u2013555", "ISBN 978\u20133\u201316\u2013148410\u20130"]:
        add("unicode-neg", "near_miss", t, [], note="Unicode digits or separators, no PII")


def gen_hand():
    for text, expect, note in HAND:
        add("hand", "hand", text, expect, note=note)
    for text, expect, note in OOS:
        add("hand-oos", "out_of_scope", text, expect, note=note)


def main():
    gen_ssn()
    gen_cards()
    gen_email()
    gen_phone()
    gen_iban()
    gen_secrets()
    gen_clean()
    gen_mixed()
    gen_hand()
    gen_unicode()
    path = os.path.join(HERE, "cases.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    by_kind = {}
    for c in cases:
        by_kind[c["kind"]] = by_kind.get(c["kind"], 0) + 1
    print(f"wrote {len(cases)} cases to {os.path.relpath(path)}: {by_kind}")
    print(f"dropped {len(dropped)} generated negatives whose random digits formed a card number")


if __name__ == "__main__":
    main()
