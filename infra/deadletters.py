"""Dead letters: the events nothing could handle after their retries, listed and sent again.

Two places hold them. The local stack writes them to a file (`.oblio/dead-letters.jsonl`, or
`OBLIO_LOCAL_DEAD_LETTERS`): its event pump after three deliveries of a rule's event to its
function, its stream poller after three tries of a stream record. A deployment sends them to
its dead-letter queue (`<prefix>-dead-letters`), of which the `<prefix>-dead-letters` alarm
says when one waits:

- `async`: an asynchronous invocation that failed 3 times (a rule's function: `bulk_start` on
  a dropped CSV, `sweep_schedule` at night), Lambda's on-failure record: the function, and
  the event under `requestPayload`. Sent again by invoking the function with that event.
- `rule`: an EventBridge target that could not be reached in 8 tries (the message is the
  event; its attributes name the rule and the target). Sent again when the target is a
  function.
- `stream`: a stream batch the shadow consumer failed on (ids and sequence numbers only,
  never the item): not sent again; a shadow backfill writes what it missed.
- `queue`: anything else (a message a queue moved after 5 receives): listed, left.

Nothing here holds personal data: a rule's event names a bucket and key or carries a
schedule's input; a stream record, ids."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

#: what is done with a kind of dead letter that is not sent again
NOT_SENT = {
    "stream": "a stream batch: start a shadow backfill of its table (`oblio backfill start`)",
    "queue": "not an event oblio can send again: read it, then delete it from the queue",
    "rule": "its target is not a function: start the target with the event yourself",
}


@dataclass
class Letter:
    """One dead letter: its kind, the function it was for (a physical name or ARN; None for
    one that cannot be sent again), the event to send it (JSON text), when and why it
    failed, and where it is (a file's line number or a queue message's receipt handle)."""

    kind: str
    function: str | None
    event: str | None
    at: str
    error: str
    where: Any

    @property
    def sendable(self) -> bool:
        return self.function is not None and self.event is not None


def _function_of_arn(arn: str) -> str | None:
    """The function an ARN names (`arn:aws:lambda:...:function:NAME[:qualifier]`)."""
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 and parts[2] == "lambda" else None


def from_message(msg: dict[str, Any]) -> Letter:
    """A message of the dead-letter queue, by its shape."""
    body = msg.get("Body", "")
    attrs = {k: v.get("StringValue", "") for k, v in (msg.get("MessageAttributes") or {}).items()}
    handle = msg.get("ReceiptHandle")
    sent_at = (msg.get("Attributes") or {}).get("SentTimestamp", "")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "requestContext" in doc and "requestPayload" in doc:
        ctx = doc["requestContext"] or {}
        error = ((doc.get("responsePayload") or {}).get("errorType")
                 or ctx.get("condition") or "")
        return Letter("async", _function_of_arn(str(ctx.get("functionArn", ""))),
                      json.dumps(doc["requestPayload"]), str(doc.get("timestamp", sent_at)),
                      str(error), handle)
    if isinstance(doc, dict) and ("DDBStreamBatchInfo" in doc or "KinesisBatchInfo" in doc):
        return Letter("stream", None, None, str(doc.get("timestamp", sent_at)),
                      str((doc.get("requestContext") or {}).get("condition", "")), handle)
    if "RULE_ARN" in attrs or "TARGET_ARN" in attrs:
        fn = _function_of_arn(attrs.get("TARGET_ARN", ""))
        return Letter("rule", fn, body if fn else None, sent_at,
                      attrs.get("ERROR_CODE", "") or attrs.get("ERROR_MESSAGE", ""), handle)
    return Letter("queue", None, None, sent_at, "", handle)


def from_file(path: Path, function_name: Callable[[str], str]) -> list[Letter]:
    """The local stack's dead letters (`function_name`: a catalogue name to its physical
    one); a line that is not one is listed as such, never dropped."""
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict):
            out.append(Letter("queue", None, None, "", "not a dead-letter record", n))
            continue
        stream = str(rec.get("queue", "")).startswith("stream:")
        out.append(Letter("stream" if stream else "async",
                          None if stream else function_name(str(rec.get("function", ""))),
                          None if stream else str(rec.get("body", "")),
                          str(rec.get("at", "")), str(rec.get("error", "")), n))
    return out


def from_queue(sqs: Any, url: str, limit: int = 1000) -> list[Letter]:
    """Up to `limit` messages of the queue, each hidden from other readers for 5 minutes
    while this command works on it (`release` shows the ones it leaves at once)."""
    out: list[Letter] = []
    while len(out) < limit:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(out)),
                                  WaitTimeSeconds=1, VisibilityTimeout=300,
                                  MessageAttributeNames=["All"],
                                  AttributeNames=["SentTimestamp"]).get("Messages", [])
        if not got:
            break
        out += [from_message(m) for m in got]
    return out


def release(sqs: Any, url: str, letters: Iterable[Letter]) -> None:
    """Show the messages left in the queue to other readers again, at once."""
    for letter in letters:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=letter.where,
                                      VisibilityTimeout=0)


def send(letters: list[Letter], invoke: Callable[[str, bytes], str | None],
         only: str | None = None) -> tuple[list[Letter], list[tuple[Letter, str]]]:
    """Invoke the function of each letter that can be sent again (of function `only`, when
    given) with its event; returns the letters sent, and those that failed again with the
    error `invoke` answered."""
    sent, failed = [], []
    for letter in letters:
        if not letter.sendable or (only and only not in str(letter.function)):
            continue
        error = invoke(str(letter.function), str(letter.event).encode())
        if error:
            failed.append((letter, error))
        else:
            sent.append(letter)
    return sent, failed


def rewrite_file(path: Path, done: Iterable[Letter]) -> None:
    """Drop the lines of the letters `done` from the local file, under the lock its writers
    take (`locked`): a line appended meanwhile stays."""
    with locked(path) as f:
        f.seek(0)
        lines = f.read().decode("utf-8").splitlines()
        gone = {lines[letter.where] for letter in done if letter.where < len(lines)}
        kept = [line for line in lines if line not in gone]
        f.seek(0)
        f.truncate()
        f.write("".join(f"{line}\n" for line in kept).encode("utf-8"))


@contextmanager
def locked(path: Path) -> Iterator[IO[bytes]]:
    """The file, open for reading and appending, under an exclusive lock (`fcntl.flock`):
    the local stack's writers append under it, this module rewrites under it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
