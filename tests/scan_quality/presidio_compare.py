#!/usr/bin/env python3
"""Run the scan corpus through Microsoft Presidio's pattern recognizers and print precision and
recall per detector, in the same table and with the same counting as the filter's own quality
test (`cargo test -p acp-filter --test scan_quality -- --nocapture`).

Presidio is not a dependency of the project; use a throwaway virtualenv:

    python3 -m venv /tmp/presidio
    /tmp/presidio/bin/pip install presidio-analyzer==2.2.366
    /tmp/presidio/bin/python tests/scan_quality/presidio_compare.py

No spaCy model is needed (none can be downloaded here). Two configurations are measured:

* `patterns`: each recognizer's `analyze(text, entities, nlp_artifacts=None)`, every result
  counts (what `AnalyzerEngine` reports with its default `score_threshold=0`). Recognizers'
  own validation (Luhn, IBAN checksum, SSN invalidation) applies.
* `context>=0.5`: an `AnalyzerEngine` over the same recognizers with context enhancement
  (Presidio's `LemmaContextAwareEnhancer`, fed by a blank spaCy English tokenizer whose
  "lemmas" are the lower-cased tokens), keeping results with score >= 0.5.

Presidio has no recognizer for credentials, so `secret` is not compared.
Counting per case and detector: TP when expected and found, FP when found but not expected, FN
when expected and not found; `out_of_scope` cases are left out, as in the Rust test.
"""

import json
import os
import sys
import time
from importlib.metadata import version

# Presidio's email recognizer validates TLDs with tldextract, which would fetch the public
# suffix list from the internet; use the snapshot bundled with tldextract instead.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # noqa: E402
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    PhoneRecognizer,
    UsSsnRecognizer,
)

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scan-corpus", "cases.jsonl")

ENTITY_TO_DETECTOR = {
    "US_SSN": "ssn",
    "CREDIT_CARD": "payment_card",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "IBAN_CODE": "iban",
}
DETECTORS = ["ssn", "payment_card", "email", "phone", "iban"]


def recognizers():
    return [UsSsnRecognizer(), CreditCardRecognizer(), EmailRecognizer(), PhoneRecognizer(), IbanRecognizer()]


class BlankSpacyEngine(NlpEngine):
    """Tokens from spaCy's blank English pipeline; lower-cased tokens stand in for lemmas."""

    def __init__(self):
        import spacy

        self.nlp = spacy.blank("en")

    def load(self):
        pass

    def is_loaded(self):
        return True

    def get_supported_entities(self):
        return []

    def get_supported_languages(self):
        return ["en"]

    def process_text(self, text, language):
        doc = self.nlp(text)
        return NlpArtifacts(
            entities=[],
            tokens=doc,
            tokens_indices=[t.idx for t in doc],
            lemmas=[t.text.lower() for t in doc],
            nlp_engine=self,
            language=language,
        )

    def process_batch(self, texts, language, batch_size=1, n_process=1, **kwargs):
        for text in texts:
            yield text, self.process_text(text, language)

    def is_stopword(self, word, language):
        return self.nlp.vocab[word].is_stop

    def is_punct(self, word, language):
        return self.nlp.vocab[word].is_punct


def load_cases():
    with open(CORPUS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def score(cases, detect):
    counts = {d: [0, 0, 0] for d in DETECTORS}  # tp, fp, fn
    errors = []
    for case in cases:
        if case["kind"] == "out_of_scope":
            continue
        found = detect(case["text"])
        expected = set(case["expect"])
        for d in DETECTORS:
            e, f = d in expected, d in found
            if e and f:
                counts[d][0] += 1
            elif f:
                counts[d][1] += 1
                errors.append(f"FP {d:<13} {case['id']:<16} {case['text'][:100]!r}")
            elif e:
                counts[d][2] += 1
                errors.append(f"FN {d:<13} {case['id']:<16} {case['text'][:100]!r}")
    return counts, errors


def ratio(a, b):
    return a / b if b else 1.0


def print_table(title, counts):
    print(f"\n{title}\n")
    print("| detector     | expected | TP   | FP  | FN  | precision | recall |")
    print("|--------------|---------:|-----:|----:|----:|----------:|-------:|")
    for d in DETECTORS:
        tp, fp, fn = counts[d]
        print(f"| {d:<12} | {tp + fn:>8} | {tp:>4} | {fp:>3} | {fn:>3} | {ratio(tp, tp + fp):>9.4f} | {ratio(tp, tp + fn):>6.4f} |")


def main():
    verbose = "-v" in sys.argv
    cases = load_cases()
    n = sum(1 for c in cases if c["kind"] != "out_of_scope")
    print(f"presidio-analyzer {version('presidio-analyzer')}, phonenumbers {version('phonenumbers')}; "
          f"{len(cases)} cases ({n} scored, {len(cases) - n} out of scope)")

    recs = recognizers()

    def patterns(text):
        found = set()
        for r in recs:
            for res in r.analyze(text, entities=r.supported_entities, nlp_artifacts=None) or []:
                found.add(ENTITY_TO_DETECTOR[res.entity_type])
        return found

    registry = RecognizerRegistry(supported_languages=["en"])
    for r in recognizers():
        registry.add_recognizer(r)
    engine = AnalyzerEngine(registry=registry, nlp_engine=BlankSpacyEngine(), supported_languages=["en"])
    entities = list(ENTITY_TO_DETECTOR)

    def with_context(text):
        results = engine.analyze(text, language="en", entities=entities, score_threshold=0.5)
        return {ENTITY_TO_DETECTOR[r.entity_type] for r in results}

    for title, fn in [("Presidio, pattern recognizers, any score (AnalyzerEngine default threshold 0)", patterns),
                      ("Presidio, with context enhancement, score >= 0.5", with_context)]:
        t = time.perf_counter()
        counts, errors = score(cases, fn)
        elapsed = time.perf_counter() - t
        print_table(title, counts)
        print(f"\n({elapsed * 1e3 / n:.2f} ms per case)")
        if verbose:
            for e in errors:
                print(e)


if __name__ == "__main__":
    main()
