"""WatchSyncJob's streams, served without holding a server thread each: one hub, fed by one change feed.

grpc's sync server runs a behaviour marked `experimental_non_blocking` (as grpc's own health Watch is) on a
pool thread only while the call starts; the responses are sent later through the callback grpc passes, from
any thread. So WatchSyncJob sends the job once, subscribes here and gives its thread back: a thousand open
streams hold no thread, and unary calls (the health check included) keep the whole pool.

One hub thread per servicer waits on the change feed (`JobChanges`: PostgreSQL LISTEN/NOTIFY, one shared
poller on SQLite, or re-reading every watched job on each tick when there is no feed), re-reads the watched
jobs that changed, as each stream's caller, and sends each stream what changed. A stream ends when its job
ends, when its caller cancels or its deadline passes (grpc's callback), or with the status of the error a
re-read raised (a revoked permission, the database away).

Each API key may hold `max_streams_per_key` open streams; one more is refused with RESOURCE_EXHAUSTED
(TooManyStreamsError) before anything is read.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from adapters.grpc import convert
from adapters.grpc.errors import abort_for
from core.domain import Principal
from core.errors import TooManyStreamsError
from core.service import SyncService
from qbsync.v1 import resources_pb2

log = logging.getLogger(__name__)

JobKey = tuple[str, str]  # (tenant_id, job_id)
SendResponse = Callable[[Any], None]  # grpc's callback: a response, or None to end the call with its status

DEFAULT_MAX_STREAMS_PER_KEY = 100
_METHOD = "/qbsync.v1.SyncService/WatchSyncJob"


class JobChanges(Protocol):
    """Where the hub learns which jobs changed; one per process, whatever the number of streams."""

    def wait(self, watched: frozenset[JobKey], timeout: float) -> Collection[JobKey] | None:
        """Blocks for up to `timeout` seconds; returns the `watched` jobs that may have changed since the last
        call, or None when that is not known (each watched job is then re-read)."""

    def close(self) -> None:
        """Frees what the feed holds (a connection); the next `wait` takes it again."""


class EveryTick:
    """No feed: every watched job may have changed on every tick, so each is re-read (the in-memory store)."""

    def wait(self, watched: frozenset[JobKey], timeout: float) -> Collection[JobKey] | None:
        threading.Event().wait(timeout)
        return None

    def close(self) -> None:
        pass


@dataclass(eq=False)
class _Stream:
    key: JobKey
    name: str
    principal: Principal
    owner: str  # the API key's hash: what the cap counts
    context: grpc.ServicerContext
    send: SendResponse
    last: resources_pb2.SyncJob
    ended: bool = field(default=False)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one response at a time, in order


class WatchHub:
    """The open WatchSyncJob streams of one servicer, and the thread that feeds them."""

    def __init__(
        self,
        service: SyncService,
        changes: JobChanges | None = None,
        *,
        poll_seconds: float,
        max_streams_per_key: int = DEFAULT_MAX_STREAMS_PER_KEY,
    ) -> None:
        self._service = service
        self._changes: JobChanges = changes or EveryTick()
        self._poll_seconds = poll_seconds
        self.max_streams_per_key = max_streams_per_key
        self._lock = threading.Condition()
        self._streams: dict[JobKey, set[_Stream]] = {}
        self._fresh: set[_Stream] = set()  # subscribed since the last round: re-read once, whatever the feed says
        self._per_owner: Counter[str] = Counter()
        self._thread: threading.Thread | None = None

    def open_count(self, owner: str | None = None) -> int:
        """Streams open (of `owner`, an API key's hash, when given)."""
        with self._lock:
            if owner is not None:
                return self._per_owner[owner]
            return sum(len(streams) for streams in self._streams.values())

    def open(
        self, principal: Principal, name: str, owner: str, context: grpc.ServicerContext, send: SendResponse
    ) -> None:
        """Starts a stream: sends the job now, then each visible change; returns at once. Raises what
        reading the job raises (NOT_FOUND, PERMISSION_DENIED...) and TooManyStreamsError over the cap."""
        with self._lock:
            if self._per_owner[owner] >= self.max_streams_per_key:
                raise TooManyStreamsError(self.max_streams_per_key)
            self._per_owner[owner] += 1  # held from here, so concurrent opens cannot pass the cap together
        try:
            job = self._service.get_job(principal, name)
            first = convert.sync_job_to_proto(job)
            if job.state.done:
                send(first)
                send(None)
                self._release(owner)
                return
        except BaseException:
            self._release(owner)
            raise
        stream = _Stream((job.tenant_id, job.job_id), name, principal, owner, context, send, first)
        # Subscribed before the first response goes out (a caller that has it is counted), and under the
        # stream's lock, so that no update can overtake it.
        with stream.lock:
            with self._lock:
                self._streams.setdefault(stream.key, set()).add(stream)
                self._fresh.add(stream)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="qbsync-watch", daemon=True)
                    self._thread.start()
                self._lock.notify_all()
            send(first)
        # Runs when the call ends however it ends (cancelled, deadline, status sent); False: it has ended.
        if not context.add_callback(lambda: self._drop(stream)):
            self._drop(stream)

    def _release(self, owner: str) -> None:
        with self._lock:
            self._per_owner[owner] -= 1
            if self._per_owner[owner] <= 0:
                del self._per_owner[owner]

    def _drop(self, stream: _Stream) -> bool:
        """Forgets `stream`; False when it was forgotten already."""
        with self._lock:
            if stream.ended:
                return False
            stream.ended = True
            self._fresh.discard(stream)
            streams = self._streams.get(stream.key)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._streams[stream.key]
        self._release(stream.owner)
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._streams:
                    self._changes.close()
                while not self._streams:
                    self._lock.wait()
                watched = frozenset(self._streams)
            try:
                changed = self._changes.wait(watched, self._poll_seconds)
            except Exception:  # the feed's own trouble: re-read everything rather than miss a change
                log.exception("the job change feed failed; re-reading every watched job")
                changed = None
                threading.Event().wait(self._poll_seconds)
            with self._lock:
                keys = self._streams.keys() if changed is None else set(changed) & self._streams.keys()
                due = {stream for key in keys for stream in self._streams[key]} | self._fresh
                self._fresh = set()
            for stream in due:
                try:
                    self._refresh(stream)
                except Exception:  # noqa: BLE001 - one stream's trouble must not stop the others
                    log.exception("could not update a WatchSyncJob stream")

    def _refresh(self, stream: _Stream) -> None:
        with stream.lock:
            if stream.ended:
                return
            try:
                job = self._service.get_job(stream.principal, stream.name)
            except Exception as exc:  # noqa: BLE001 - ends the stream with the status the error deserves
                self._fail(stream, exc)
                return
            current = convert.sync_job_to_proto(job)
            if current != stream.last:  # any visible change: state, attempts, results, error, update_time
                stream.last = current
                stream.send(current)
            if job.state.done and self._drop(stream):
                stream.send(None)

    def _fail(self, stream: _Stream, exc: Exception) -> None:
        if not self._drop(stream):
            return
        # abort_for chooses the status (and logs what is a bug of ours), then raises as grpc's abort does.
        with contextlib.suppress(Exception):
            abort_for(stream.context, exc, _METHOD)
        stream.send(None)  # sends that status
