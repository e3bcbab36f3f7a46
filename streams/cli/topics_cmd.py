"""`trustctl topics ensure`: create the Kafka topics of docs/behaviour.md §4 (idempotent)."""

from __future__ import annotations

import argparse

from streams.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("topics", help="manage the Kafka topics of docs/behaviour.md §4")
    actions = parser.add_subparsers(dest="topics_action", metavar="ACTION")
    actions.required = True
    ensure = actions.add_parser(
        "ensure", help="create every missing topic; report created vs existing"
    )
    ensure.add_argument("--timeout", type=float, default=30.0, help="seconds per broker request (30)")
    ensure.set_defaults(func=_ensure)


def _retention(config: dict[str, str]) -> str:
    if "compact" in config.get("cleanup.policy", ""):
        return "compacted"
    ms = int(config.get("retention.ms", "-1"))
    return "kept forever" if ms < 0 else f"retention {ms / 86_400_000:g} d"


def _ensure(args: argparse.Namespace) -> int:
    from streams.kafka.admin import ensure_topics

    report = ensure_topics(Settings.from_env(), timeout=args.timeout)
    for spec in report.created:
        print(f"created  {spec.name:<22} {spec.partitions} partitions, {_retention(spec.config)}")
    for spec in report.existing:
        note = ""
        if spec.name in report.mismatched:
            note = f" (has {report.mismatched[spec.name]} partitions, settings say {spec.partitions})"
        print(f"exists   {spec.name:<22}{note}".rstrip())
    print(f"topics: {len(report.created)} created, {len(report.existing)} existing")
    return 0
