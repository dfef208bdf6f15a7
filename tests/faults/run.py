"""The full fault run as a command (it prints its figures, exit 1 when a check fails):

    python -m tests.faults.run --task 0.2 --throttle 0.2 --s3 0.1 --requests 70 --bulk 200
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.run", description=__doc__)
    p.add_argument("--task", type=float, default=0.2, help="task faults (half before, half "
                   "after the handler)")
    p.add_argument("--throttle", type=float, default=0.2, help="DynamoDB throttles (and "
                   "partial batches at half that rate)")
    p.add_argument("--s3", type=float, default=0.1, help="S3 503 SlowDown and partial "
                   "DeleteObjects")
    p.add_argument("--requests", type=int, default=70)
    p.add_argument("--bulk", type=int, default=200)
    p.add_argument("--clients", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--chunk-size", type=int, default=50, help="OBLIO_BULK_CHUNK_SIZE, where "
                   "the bulk job reads it")
    p.add_argument("--timeout", type=float, default=2400)
    args = p.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)  # the figures, not the stack's log lines
    from tests.faults import suite

    def say(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)

    figures = suite.run(task=args.task, throttle=args.throttle, s3=args.s3,
                        requests=args.requests, bulk=args.bulk, seed=args.seed,
                        clients=args.clients, timeout=args.timeout,
                        chunk_size=args.chunk_size, say=say)
    print(f"python -m tests.faults.run --task {args.task} --throttle {args.throttle} --s3 "
          f"{args.s3} --requests {args.requests} --bulk {args.bulk} --seed {args.seed}")
    print(figures.summary())
    return 1 if figures.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
