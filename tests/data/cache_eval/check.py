#!/usr/bin/env python3
"""Validate the semantic-cache evaluation set in pairs.jsonl.

Usage:
    python3 tests/data/cache_eval/check.py            # validate, exit 1 on errors
    python3 tests/data/cache_eval/check.py --counts   # also print a Markdown count table

Checks: every line is a JSON object with the required fields; roles are valid
(system only first, last message from the user); ids are unique; each category
is split tune/heldout with a difference of at most one; no exact duplicate
pair; `a` and `b` differ except in `scope` traps; scope traps use different
tenants and every other pair uses the same tenant; `system_same` keeps the
system prompt; `multi_turn_same` keeps every message but the last user one;
`multi_turn_trap` changes the system prompt or an earlier turn.
"""
import collections
import json
import pathlib
import sys

PARAPHRASE = ["reword", "casing_punct", "reorder", "politeness", "multi_turn_same", "system_same"]
TRAP = ["number", "date", "unit", "code_id", "negation", "antonym", "entity", "quantifier",
        "scope", "multi_turn_trap"]
FIELDS = ["id", "split", "kind", "category", "a", "b", "scope_a", "scope_b", "note"]
ROLES = {"system", "user", "assistant"}


def check_messages(msgs, where, errors):
    if not isinstance(msgs, list) or not msgs:
        errors.append(f"{where}: messages must be a non-empty list")
        return
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            errors.append(f"{where}[{i}]: message must have exactly role and content")
            continue
        if m["role"] not in ROLES:
            errors.append(f"{where}[{i}]: bad role {m['role']!r}")
        if m["role"] == "system" and i != 0:
            errors.append(f"{where}[{i}]: system message not first")
        if not isinstance(m["content"], str) or not m["content"].strip():
            errors.append(f"{where}[{i}]: empty content")
    if msgs[-1].get("role") != "user":
        errors.append(f"{where}: last message must be from the user")


def main():
    path = pathlib.Path(__file__).with_name("pairs.jsonl")
    errors, rows = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            errors.append(f"line {n}: invalid JSON: {e}")

    ids, pairs = set(), set()
    splits = collections.defaultdict(collections.Counter)
    for n, r in rows:
        where = f"line {n} ({r.get('id')})"
        if list(r) != FIELDS:
            errors.append(f"{where}: fields must be exactly {FIELDS}")
            continue
        if r["id"] in ids:
            errors.append(f"{where}: duplicate id")
        ids.add(r["id"])
        if r["split"] not in ("tune", "heldout"):
            errors.append(f"{where}: bad split")
        cats = PARAPHRASE if r["kind"] == "paraphrase" else TRAP if r["kind"] == "trap" else None
        if cats is None or r["category"] not in cats:
            errors.append(f"{where}: bad kind/category {r['kind']}/{r['category']}")
            continue
        if not r["note"].strip():
            errors.append(f"{where}: empty note")
        a, b, cat = r["a"], r["b"], r["category"]
        check_messages(a, where + " a", errors)
        check_messages(b, where + " b", errors)
        splits[cat][r["split"]] += 1
        key = json.dumps([a, b], sort_keys=True, ensure_ascii=False)
        rkey = json.dumps([b, a], sort_keys=True, ensure_ascii=False)
        if key in pairs or rkey in pairs:
            errors.append(f"{where}: duplicate pair")
        pairs.add(key)
        if cat == "scope":
            if a != b:
                errors.append(f"{where}: scope trap messages should be identical")
            if r["scope_a"] == r["scope_b"]:
                errors.append(f"{where}: scope trap needs different tenants")
            continue
        if r["scope_a"] != r["scope_b"]:
            errors.append(f"{where}: scope_a and scope_b must match outside scope traps")
        if a == b:
            errors.append(f"{where}: a and b are identical")
        if cat == "system_same" and (a[0]["role"] != "system" or a[:-1] != b[:-1]):
            errors.append(f"{where}: system_same needs the same system prompt and prefix")
        if cat == "multi_turn_same":
            if sum(m["role"] != "system" for m in a) < 3:
                errors.append(f"{where}: multi_turn_same needs earlier turns")
            if a[:-1] != b[:-1] or a[-1] == b[-1]:
                errors.append(f"{where}: multi_turn_same must differ only in the last user message")
        if cat == "multi_turn_trap" and a[:-1] == b[:-1]:
            errors.append(f"{where}: multi_turn_trap must differ before the last message")

    for cat, c in splits.items():
        if abs(c["tune"] - c["heldout"]) > 1:
            errors.append(f"category {cat}: unbalanced split {dict(c)}")

    for e in errors:
        print("ERROR", e)
    print(f"{len(rows)} rows, {len(errors)} errors")

    if "--counts" in sys.argv:
        kinds = collections.defaultdict(collections.Counter)
        for _, r in rows:
            kinds[r["kind"]][r["split"]] += 1
        print("\n| kind | category | tune | heldout | total |\n|---|---|---:|---:|---:|")
        for kind, cats in (("paraphrase", PARAPHRASE), ("trap", TRAP)):
            for cat in cats:
                c = splits[cat]
                print(f"| {kind} | {cat} | {c['tune']} | {c['heldout']} | {c['tune'] + c['heldout']} |")
            k = kinds[kind]
            print(f"| **{kind}** | **all** | **{k['tune']}** | **{k['heldout']}** | **{k['tune'] + k['heldout']}** |")
        t = sum(kinds[k]["tune"] for k in kinds)
        h = sum(kinds[k]["heldout"] for k in kinds)
        print(f"| **all** | | **{t}** | **{h}** | **{t + h}** |")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
