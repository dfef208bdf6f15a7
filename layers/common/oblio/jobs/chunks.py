"""The chunked pipeline that bulk erasure and retention sweeps share.

A job of many subjects or items runs as one state machine: a first step cuts the work into
chunk manifests, a Distributed Map runs one task per chunk, a last step reports. What the
two kinds of job have in common lives here:

- the job's work files, under one prefix of the work bucket (`work/<tenant>/<kind>/<job>/`)
  deleted when the job ends: the chunk manifests (`chunks/000000.json`, ...) and whatever a
  step keeps beside them (`plans/`, `report/`, `rejects/` of a bulk job);
- the index of the chunks that the Map's ItemReader reads (`chunks.csv`, one column `chunk`:
  the S3 key of each manifest) and the Map's input (where the index is, how many chunks, how
  many at once);
- a chunk recorded as done once: the write that records it is conditional, so a retried or
  duplicated chunk is counted once;
- the failure step: the error the state machine caught, as the job records it;
- runs (`attempt`): a retried or resumed job is a new run whose execution carries its number
  to every task; a task of an earlier run writes nothing to the job (`stale`), and every
  write a task makes to the job is conditioned on its run being still the job's (`current`),
  and so is the audit entry of a run's end (`on_run`, a guard inside the entry's own
  transaction). A backfill's runs are fenced the same way.

Payloads carry references only (the keys of manifests), never what the manifests hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import PutError, UpdateError

from oblio.control import audit, metering
from oblio.core.boundary import caught
from oblio.core.observability import logger
from oblio.core.settings import get_settings
from oblio.store import objects

#: the statuses of a job that has ended: its steps do nothing again
ENDED = ("completed", "completed_with_errors", "failed")
INDEX_HEADER = "chunk"


@dataclass(frozen=True)
class Work:
    """A job's files in the work bucket, all under `prefix`."""

    tenant_id: str
    kind: str  # "bulk", "sweeps"
    job_id: str

    @property
    def prefix(self) -> str:
        return f"work/{self.tenant_id}/{self.kind}/{self.job_id}/"

    @property
    def index_key(self) -> str:
        return f"{self.prefix}chunks.csv"

    def part(self, folder: str, n: int) -> str:
        """The key of the `n`th numbered part in `folder` (`chunks/000007.json`)."""
        return f"{self.prefix}{folder}/{n:06d}.json"

    def chunk(self, n: int) -> str:
        """The key of the `n`th chunk manifest."""
        return self.part("chunks", n)

    def beside(self, folder: str, chunk_key: str) -> str:
        """The key of a file that goes with a chunk, named as the chunk is, in `folder`
        (a bulk chunk's plan in `plans/`, its outcomes in `report/`)."""
        return f"{self.prefix}{folder}/{chunk_key.rsplit('/', 1)[1]}"

    def put_chunk(self, n: int, manifest: Any) -> str:
        key = self.chunk(n)
        objects.put_json(key, manifest)
        return key

    def write_index(self, chunk_keys: Iterable[str]) -> str:
        """Write the chunk index the Distributed Map reads; returns its key."""
        objects.put_encrypted(get_settings().bucket("work"), self.index_key,
                              index_csv(chunk_keys), content_type="text/csv")
        return self.index_key

    def clear(self) -> None:
        """Delete every work file of the job (every version)."""
        objects.delete_prefix(self.prefix)


def index_csv(chunk_keys: Iterable[str]) -> bytes:
    """The chunk index: a header row `chunk`, then one manifest key a line. The keys are
    oblio's own (`work/...`, digits and letters): no cell needs quoting."""
    return (INDEX_HEADER + "\n" + "".join(f"{k}\n" for k in chunk_keys)).encode()


def chunk_name(chunk_key: str) -> str:
    """A chunk's number as its manifest is named (`.../chunks/000007.json` -> `000007`)."""
    return chunk_key.rsplit("/", 1)[-1].split(".")[0]


def map_input(chunks: int, index_key: str | None, concurrency: int,
              **flags: bool) -> dict[str, Any]:
    """What the step before the Distributed Map returns: its flags for the state machine's
    Choice (`failed`, `done`), the number of chunks, where the index is, how many chunks
    run at once."""
    return {**flags, "chunks": chunks, "index_bucket": get_settings().bucket("work"),
            "index_key": index_key, "concurrency": concurrency}


class Parts:
    """Rows written to numbered JSON parts of `size` rows (`<prefix><folder>/000000.json`,
    ...), as they come: memory holds one part at a time. `keys` lists the parts written."""

    def __init__(self, work: Work, folder: str, size: int,
                 put: Callable[[str, Any], None] | None = None) -> None:
        self.work, self.folder, self.size = work, folder, size
        self.put = put or objects.put_json
        self.rows: list[dict[str, Any]] = []
        self.keys: list[str] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.size:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            key = self.work.part(self.folder, len(self.keys))
            self.put(key, self.rows)
            self.keys.append(key)
            self.rows = []


def names(done: Iterable[str] | None) -> set[str]:
    """The chunks a job records done, by name (`000007`): a job records names, so that a
    million-line job's 4,000 chunks fit its item (a job of an earlier release recorded the
    manifests' keys: named the same way here)."""
    return {chunk_name(k) for k in done or ()}


def missing(work: Work, total: int, done: Iterable[str] | None) -> list[str]:
    """The names of the chunks of the index (`total` chunks, numbered from 0) that are not
    recorded done: what a report step checks before it calls a job finished."""
    have = names(done)
    return [name for n in range(total) if (name := chunk_name(work.chunk(n))) not in have]


def condition_failed(exc: PutError | UpdateError) -> bool:
    return exc.cause_response_code == "ConditionalCheckFailedException"


def record_once(write: Callable[[], Any]) -> bool:
    """Run the conditional write that records a chunk as done; False when its condition
    failed: the chunk is recorded already (a retry, or a duplicate that ran in parallel),
    and its counts must not be added again."""
    try:
        write()
    except (PutError, UpdateError) as exc:
        if not condition_failed(exc):
            raise
        return False
    return True


def fail(status: str | None, error: dict[str, Any],
         record: Callable[[str, str], bool]) -> dict[str, Any]:
    """The failure step of a job: `record(code, reason)` the error the state machine caught
    (`reason` is `<error name>: <message>`), unless the job has ended. `record` answers
    False when it wrote nothing (the job is on another run now): so does the answer."""
    if status in ENDED:
        return {"status": status}
    code, message = caught(error)
    if not record(code, f"{code}: {message}"):
        return {"status": status, "stale": True}
    return {"status": "failed"}


# -- runs ----------------------------------------------------------------------------------------

def run_of(record: Any) -> int:
    """The job's current run (a record made before runs were kept is on its first)."""
    return int(record.attempt or 1)


def current(model: Any, attempt: int | None) -> Any:
    """The condition of a write by a task of run `attempt` to a record of `model`: the
    record is still on that run (one made before runs were kept is on its first)."""
    n = attempt or 1
    cond = model.attempt == n
    return cond | model.attempt.does_not_exist() if n == 1 else cond


def stale(what: str, ids: dict[str, str], record: Any, attempt: int | None) -> bool:
    """Whether a task of run `attempt` belongs to another run than the record's (a task of
    the run that failed, run again by Step Functions after the job was resumed): it writes
    nothing to the job (logged with `ids`, never applied). None: a caller that names no run
    (trusted)."""
    if attempt is not None and attempt != run_of(record):
        logger.warning(f"a task of an earlier run of a {what} did nothing",
                       extra={**ids, "task_attempt": attempt,
                              "record_attempt": run_of(record)})
        return True
    return False


def on_run(record: Any, attempt: int | None) -> audit.Guard:
    """The guard of an audit entry a task of run `attempt` (None: the record's own) appends
    for its job: the job's record still on that run, checked in the entry's transaction, so
    that a task that outlived its run (resumed meanwhile) appends nothing."""
    model = type(record)
    hash_key = getattr(record, model._hash_keyname)
    range_key = getattr(record, model._range_keyname) if model._range_keyname else None
    # the record itself, too: run 1's condition also holds of a record without a run kept
    exists = getattr(model, model._hash_keyname).exists()
    return audit.Guard(model, hash_key, range_key, exists & current(
        model, attempt if attempt is not None else run_of(record)))


def audit_end(record: Any, attempt: int, action: str, once: str,
              details: dict[str, Any]) -> str | None:
    """The audit entry of the end of the job's run `attempt` (its id): appended once for
    the key `once`, and only while the run is the record's (`on_run`); None, and nothing
    appended, once the job is on another run."""
    try:
        return audit.append(record.tenant_id, action, actor="oblio", once=once,
                            guard=on_run(record, attempt), details=details).id
    except audit.Refused:
        return None


def write_on_run(record: Any, actions: list[Any], attempt: int | None) -> bool:
    """One write of a task of run `attempt` (None: the record's own) to its job's record,
    conditioned on the record being still on that run; False, and nothing written, once it
    is on another (resumed meanwhile)."""
    try:
        record.update(actions=actions, condition=current(
            type(record), attempt if attempt is not None else run_of(record)))
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        return False
    return True


def started_nothing(record: Callable[[], object], attempt: int) -> None:
    """The StartExecution of a job's run `attempt` failed (the caller re-raises its error)
    and no execution of its name exists: `record` the run failed, so that the job is not
    left `running` with nothing running, and say its `io` is the calling invocation's
    (`metering.start_failed`). A failure to record it is logged, does not hide the start's
    error, and notes nothing (the record still says `running`)."""
    try:
        record()
    except Exception as exc:  # noqa: BLE001 - the start's error is the one raised
        logger.warning("a run that did not start is not recorded failed",
                       extra={"raised": type(exc).__name__})
        return
    metering.start_failed(attempt)
