"""python examples/knowledge-update/make_facts.py

Product facts of "Lumen Cloud" (the quickstart's fictional provider) in two versions: v1, and v2 in which eight of
the twenty-four facts changed (a price, a limit, a retention period...). Writes, next to this file:

- facts_v1.jsonl, facts_v2_changed.jsonl: training rows (four phrasings of each question; v2 holds only the facts
  that changed, with their new answers);
- eval_v1.jsonl: a fifth, held-out phrasing of every fact with its v1 answer;
- eval_changed.jsonl: the held-out phrasing of the eight changed facts with their v2 answers (and
  eval_changed_old.jsonl: with their v1 answers);
- eval_unchanged.jsonl: the held-out phrasing of the sixteen facts that did not change.

Every answer is a short value ("2 TB", "30 days"), scored by exact match. Standard library only; deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (topic, v1 answer, v2 answer or None when unchanged, five phrasings: four to train on, the last held out)
FACTS = [
    (
        "team storage",
        "2 TB",
        "5 TB",
        [
            "How much storage does the Lumen Cloud Team plan include?",
            "What is the storage limit on the Team plan?",
            "Team plan: how much disk space do we get?",
            "How many terabytes come with a Team plan?",
            "Tell me the storage allowance of the Team plan.",
        ],
    ),
    (
        "backup retention",
        "30 days",
        "90 days",
        [
            "How long does Lumen Cloud keep backups?",
            "What is the backup retention period?",
            "For how many days are backups stored?",
            "How long are my backups retained?",
            "How long do you hold on to backups?",
        ],
    ),
    (
        "business price",
        "$49",
        "$59",
        [
            "What does the Business plan cost per month?",
            "How much is the Business plan monthly?",
            "Monthly price of the Business plan?",
            "What is the price of Lumen Cloud Business per month?",
            "How much do I pay each month for Business?",
        ],
    ),
    (
        "free trial",
        "14 days",
        "30 days",
        [
            "How long is the Lumen Cloud free trial?",
            "How many days does the free trial last?",
            "What is the length of the trial period?",
            "How long can I try Lumen Cloud for free?",
            "For how long is the trial free?",
        ],
    ),
    (
        "support hours",
        "24/7",
        None,
        [
            "When is Lumen Cloud support available?",
            "What are your support hours?",
            "At what times can I reach support?",
            "Is support open around the clock?",
            "During which hours does support answer?",
        ],
    ),
    (
        "api rate limit",
        "600 requests per minute",
        "1200 requests per minute",
        [
            "What is the API rate limit?",
            "How many API requests per minute are allowed?",
            "What is the maximum API request rate?",
            "How fast can I call the Lumen Cloud API?",
            "What rate limit applies to the API?",
        ],
    ),
    (
        "max file size",
        "50 GB",
        None,
        [
            "What is the largest file I can upload?",
            "What is the maximum upload size for one file?",
            "How big can a single uploaded file be?",
            "What is the file size limit for uploads?",
            "Is there a cap on the size of one file?",
        ],
    ),
    (
        "data centers",
        "6",
        "8",
        [
            "How many data centers does Lumen Cloud run?",
            "In how many data centers is Lumen Cloud hosted?",
            "How many data center locations do you have?",
            "What is the number of Lumen Cloud data centers?",
            "How many data centers host my data?",
        ],
    ),
    (
        "uptime",
        "99.9%",
        None,
        [
            "What uptime does Lumen Cloud guarantee?",
            "What is the uptime in your service level agreement?",
            "What availability do you promise?",
            "What is the guaranteed uptime percentage?",
            "Which uptime does the SLA cover?",
        ],
    ),
    (
        "team seats",
        "10",
        None,
        [
            "How many users can a Team plan have?",
            "What is the seat limit on the Team plan?",
            "How many members fit in a Team plan?",
            "Maximum number of users for Team?",
            "How many people can join one Team plan?",
        ],
    ),
    (
        "refund window",
        "30 days",
        None,
        [
            "How long do I have to ask for a refund?",
            "What is the refund window?",
            "Within how many days can I get my money back?",
            "How long after a charge can I request a refund?",
            "What is the time limit for refunds?",
        ],
    ),
    (
        "deleted files",
        "7 days",
        "14 days",
        [
            "How long do deleted files stay in the trash?",
            "How long can I restore a deleted file?",
            "When are deleted files removed for good?",
            "How long is the recycle bin kept?",
            "For how many days can deleted files be recovered?",
        ],
    ),
    (
        "status page",
        "status.lumen.cloud",
        None,
        [
            "Where can I check whether Lumen Cloud is down?",
            "What is the address of the status page?",
            "Where is the Lumen Cloud service status?",
            "Which page shows outages?",
            "Where do you post incident updates?",
        ],
    ),
    (
        "support email",
        "help@lumen.cloud",
        None,
        [
            "What is the support email address?",
            "Which address do I email for help?",
            "How do I contact support by email?",
            "Where should I send support emails?",
            "What email reaches the support team?",
        ],
    ),
    (
        "password length",
        "12 characters",
        None,
        [
            "What is the minimum password length?",
            "How long must a password be?",
            "How many characters does a password need?",
            "What is the shortest allowed password?",
            "Minimum number of characters in a password?",
        ],
    ),
    (
        "session timeout",
        "8 hours",
        "12 hours",
        [
            "After how long am I signed out automatically?",
            "What is the session timeout?",
            "How long does a login session last?",
            "When does the console log me out?",
            "How long before an idle session expires?",
        ],
    ),
    (
        "free storage",
        "5 GB",
        None,
        [
            "How much storage is free?",
            "What storage does the free tier include?",
            "How many gigabytes are free?",
            "What is the free storage allowance?",
            "How much space do free accounts get?",
        ],
    ),
    (
        "invoice day",
        "the 1st",
        None,
        [
            "On which day of the month are invoices sent?",
            "When do you send the monthly invoice?",
            "What day is billing each month?",
            "When is my card charged each month?",
            "Which day of the month do invoices go out?",
        ],
    ),
    (
        "snapshots",
        "20",
        None,
        [
            "How many snapshots can one volume keep?",
            "What is the snapshot limit per volume?",
            "Maximum number of snapshots per volume?",
            "How many snapshots are allowed on a volume?",
            "Is there a limit on snapshots per volume?",
        ],
    ),
    (
        "regions",
        "Europe and North America",
        None,
        [
            "Which regions does Lumen Cloud serve?",
            "Where are your servers located?",
            "In which regions can I host data?",
            "What regions are available?",
            "Which parts of the world do you cover?",
        ],
    ),
    (
        "bandwidth",
        "1 TB per month",
        None,
        [
            "How much bandwidth is included each month?",
            "What is the monthly transfer allowance?",
            "How much data transfer do I get per month?",
            "What is the included monthly bandwidth?",
            "How much traffic is free each month?",
        ],
    ),
    (
        "two factor",
        "required",
        None,
        [
            "Is two-factor authentication required?",
            "Do I have to use two-factor sign-in?",
            "Is 2FA mandatory?",
            "Must every account use two-factor authentication?",
            "Can I sign in without two-factor authentication?",
        ],
    ),
    (
        "export format",
        "ZIP",
        None,
        [
            "In which format can I export my data?",
            "What file format does the data export use?",
            "How is my exported data packaged?",
            "What format is the account export?",
            "Which format do exports come in?",
        ],
    ),
    (
        "student discount",
        "50%",
        None,
        [
            "How big is the student discount?",
            "What discount do students get?",
            "How much do students save?",
            "What is the student price reduction?",
            "Do students get a discount, and how much?",
        ],
    ),
]


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(json.dumps({"prompt": q, "completion": a}) + "\n" for q, a in pairs)


def main() -> None:
    assert len(FACTS) == 24 and sum(new is not None for _, _, new, _ in FACTS) == 8
    assert all(len(qs) == 5 for *_, qs in FACTS)
    v1 = [(q, old) for _, old, _, qs in FACTS for q in qs[:4]]
    v2 = [(q, new) for _, _, new, qs in FACTS if new is not None for q in qs[:4]]
    files = {
        "facts_v1.jsonl": v1,
        "facts_v2_changed.jsonl": v2,
        "eval_v1.jsonl": [(qs[4], old) for _, old, _, qs in FACTS],
        "eval_changed.jsonl": [(qs[4], new) for _, _, new, qs in FACTS if new is not None],
        "eval_changed_old.jsonl": [(qs[4], old) for _, old, new, qs in FACTS if new is not None],
        "eval_unchanged.jsonl": [(qs[4], old) for _, old, new, qs in FACTS if new is None],
    }
    for name, pairs in files.items():
        (HERE / name).write_text(_rows(pairs), encoding="utf-8")
        print(f"{name}: {len(pairs)} rows")


if __name__ == "__main__":
    main()
