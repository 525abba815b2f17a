#!/usr/bin/env python3
"""Builds the benign corpora the profanity filter is measured on (shared/testkit/corpus/).

Sources are Debian packages, fetched without installing them:
  apt-get download wamerican fortunes fortunes-min && for d in *.deb; do dpkg-deb -x "$d" root; done
  python3 scripts/build_filter_corpora.py root

- words.txt: 3,000 dictionary words sampled from wamerican's american-english (no possessives).
- prose.txt: 800 fortunes from the clean `fortunes` set (the offensive ones are a separate
  package, not used), at most 600 characters each, records separated by a line with `%`.
The samples are fixed (seeded), so the figures are comparable between runs.
"""
import pathlib
import random
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "root")
out = pathlib.Path(__file__).resolve().parent.parent / "shared" / "testkit" / "corpus"
rng = random.Random(20261124)

words = [
    w.strip()
    for w in (root / "usr/share/dict/american-english").read_text(encoding="utf-8").splitlines()
    if w.strip() and "'" not in w
]
sample = sorted(rng.sample(words, 3000), key=str.lower)
(out / "words.txt").write_text("\n".join(sample) + "\n", encoding="utf-8")

fortunes_dir = root / "usr/share/games/fortunes"
categories = [
    "computers", "science", "literature", "wisdom", "work", "education", "people",
    "platitudes", "pets", "food", "definitions", "linux", "linuxcookie", "miscellaneous",
    "fortunes", "humorists", "law", "politics", "medicine", "goedel", "magic", "paradoxum",
    "riddles", "sports", "zippy", "cookie", "debian", "startrek", "songs-poems", "news",
]
records = []
for category in categories:
    path = fortunes_dir / category
    if not path.exists():
        continue
    text = path.read_text(encoding="utf-8", errors="replace")
    for record in text.split("\n%\n"):
        record = record.strip().strip("%").strip()
        if 20 <= len(record) <= 600:
            records.append(record)
sample = rng.sample(records, 800)
(out / "prose.txt").write_text("\n%\n".join(sample) + "\n", encoding="utf-8")
print(f"{len(words)} words -> 3000; {len(records)} fortunes -> 800")
