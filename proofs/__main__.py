"""``python -m proofs [--topic T ...] [--only NAME ...] [-v]``: run the obligations, print a table,
exit 1 if any fails."""

from __future__ import annotations

import argparse
import sys

from proofs.core import TOPICS, format_table, run_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proofs", description=__doc__)
    ap.add_argument("--topic", action="append", choices=TOPICS, help="run only this topic")
    ap.add_argument("--only", action="append", metavar="NAME", help="run only this obligation")
    ap.add_argument("-v", "--verbose", action="store_true", help="full details")
    args = ap.parse_args(argv)
    try:
        results = run_all(names=args.only, topics=args.topic)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(results, verbose=args.verbose))
    return 1 if any(not r.ok for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
