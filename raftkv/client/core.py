"""How a client call runs, written once for the synchronous and the asyncio
client: which node to ask, what an answer means, when to retry.

Theory of operation
-------------------
A call is an :class:`Operation` (method, path, parameters, whether it
writes, how to read its answer). :func:`conduct` runs it as a generator that
does no IO: it yields a :class:`Send` (an HTTP request to one node) or a
:class:`Sleep` (a backoff) and is sent back what the request came to, an
:class:`~.errors.Answer` or a :class:`Failure`. The clients are drivers: the
synchronous one does each step with ``http.client`` and ``time.sleep``, the
asyncio one with aiohttp and ``asyncio.sleep`` (:func:`drive_sync` and the
loop in :mod:`.aio`).

* **Finding the leader.** The :class:`Book` holds the addresses the client
  was given and the leader's HTTP address once known. With no leader known,
  a call first asks a node's ``/status`` (local, cheap) who leads and where
  it serves HTTP, then sends the call there. Any node would do -- a follower
  forwards writes to the leader and serves linearizable reads itself -- but
  the leader saves a hop. A 503 names the leader it knows; a redirect
  (301/302/307/308 with a ``Location``) is followed. A leader address the
  client cannot connect to (an address advertised inside a container, say)
  is not tried again: the given addresses forward instead.
* **Retrying.** :func:`decide` judges each outcome: done, fail now, or
  retry. Only what did nothing is retried: a connection that never
  opened, a 503 with ``outcome_unknown: false`` (no leader, a new one being
  elected, the node stopping), and for a read anything at all short of a
  client error. A write whose connection broke once it was sent, or that a
  503 says may still happen, fails at once with ``WriteOutcomeUnknown``:
  repeating it could apply it twice. Retries wait an exponential backoff
  with jitter (:func:`backoff`), and all of it ends at the call's deadline
  with a :class:`~.errors.Timeout`.
"""

from __future__ import annotations

import json
import random
import time
import urllib.parse
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    Answer,
    RaftkvError,
    TimeoutNotApplied,
    TimeoutOutcomeUnknown,
    TLSError,
    Unavailable,
    WriteOutcomeUnknown,
    error_for,
)

__all__ = ["Book", "Failure", "Operation", "Policy", "Send", "Sleep", "advance", "backoff", "base_url", "conduct",
           "decide", "drive_sync"]

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


# --- what the drivers do, and what they answer ---------------------------------

@dataclass(frozen=True)
class Send:
    """Make one HTTP request: ``base`` (scheme://host:port) + ``target`` (path and query)."""

    base: str
    method: str
    target: str
    body: bytes | None
    headers: Mapping[str, str]
    timeout: float         # for the whole request, in seconds
    connect_timeout: float


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Failure:
    """A request that got no HTTP answer. ``sent``: the request may have
    reached the node (the connection opened; it broke or timed out after);
    ``tls``: the TLS handshake failed (a certificate, or a port speaking the
    other protocol)."""

    error: BaseException
    sent: bool
    tls: bool = False
    timed_out: bool = False

    def __str__(self) -> str:
        return str(self.error) or type(self.error).__name__


# --- a call -------------------------------------------------------------------

RAISE: Any = object()  # an Operation's ``missing``: a 404 raises NotFound


@dataclass(frozen=True)
class Operation:
    """One call of the API. ``write``: it changes the cluster (so an
    interrupted one has an unknown outcome); ``admin``: it carries the
    cluster key; ``result`` turns the 2xx answer's JSON into what the call
    returns; ``missing``: what a 404 returns instead of raising (``get``);
    ``node``: a node to ask rather than the leader (``status(address)``)."""

    name: str
    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    write: bool = False
    admin: bool = False
    result: Callable[[Any], Any] = lambda body: body
    missing: Any = RAISE
    node: str | None = None

    def target(self) -> str:
        if not self.params:
            return self.path
        return self.path + "?" + urllib.parse.urlencode(self.params)


@dataclass(frozen=True)
class Policy:
    """The client's timing: ``timeout`` is each call's overall deadline;
    ``read_attempt`` caps one read's wait for a node before another is
    tried; backoff starts at ``backoff_base`` and doubles up to ``backoff_cap``."""

    timeout: float = 10.0
    connect_timeout: float = 2.0
    read_attempt: float = 5.0
    probe_timeout: float = 2.0
    backoff_base: float = 0.05
    backoff_cap: float = 1.0


def backoff(attempt: int, policy: Policy, rng: Callable[[], float] = random.random) -> float:
    """The wait before retry ``attempt`` (1, 2, ...): ``base * 2**(attempt-1)``
    capped at ``cap``, of which a random half to all (jitter, so clients
    that failed together do not retry together)."""
    ceiling = min(policy.backoff_cap, policy.backoff_base * (2 ** min(attempt - 1, 30)))
    return ceiling * (0.5 + 0.5 * rng())


def base_url(address: str, tls: bool) -> str:
    """``host:port`` or a URL as a base URL: https when the client has a CA (or the URL says so)."""
    address = address.strip().rstrip("/")
    if "://" in address:
        return address
    return ("https://" if tls else "http://") + address


class Book:
    """The nodes a client knows: the addresses it was given (tried in turn),
    and ``preferred``, where calls go while it answers them: the leader once
    learned, else the given address that last served a call (it forwards)."""

    def __init__(self, addresses: list[str], tls: bool) -> None:
        if not addresses:
            raise ValueError("no addresses: give at least one node's HTTP address (host:port or URL)")
        self.tls = tls
        self.seeds = [base_url(a, tls) for a in addresses]
        self.preferred: str | None = None
        self.leader_id: str | None = None     # set while ``preferred`` is the leader
        self.unreachable: set[str] = set()   # learned leader addresses no connection could be made to
        self._turn = 0

    def next_seed(self) -> str:
        seed = self.seeds[self._turn % len(self.seeds)]
        self._turn += 1
        return seed

    def learn(self, leader: Any) -> str | None:
        """Take ``leader`` (``{"id", "http"}`` from ``/status`` or a 503) as
        the leader; its base URL, or None if it says no usable address."""
        if not isinstance(leader, dict) or not isinstance(leader.get("http"), str) or not leader["http"]:
            return None
        url = base_url(leader["http"], self.tls)
        if url in self.unreachable:
            return None
        self.preferred = url
        self.leader_id = leader.get("id") if isinstance(leader.get("id"), str) else None
        return url

    def served(self, base: str, op: Operation, served_by: str | None) -> None:
        """A call to ``base`` succeeded. A write that another node than the
        leader we knew served (forwarded there: leadership moved) sends the
        next call to find the leader afresh."""
        if op.node is not None:
            return
        if self.preferred != base:
            self.preferred, self.leader_id = base, None
        elif op.write and self.leader_id and served_by and served_by != self.leader_id:
            self.preferred = self.leader_id = None

    def failed(self, base: str, connect: bool) -> None:
        """``base`` did not serve a call: stop preferring it; if no connection
        could be made to a learned (not given) address, never take it again."""
        if self.preferred == base:
            self.preferred = self.leader_id = None
        if connect and base not in self.seeds:
            self.unreachable.add(base)


# --- judging one outcome ---------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """What to do after an outcome: ``done``, returning ``value``; raise
    ``error`` (``retry`` False); or try again (``retry``; ``error`` says
    why, ``leader`` is the leader the answer named); ``redirect``: the URL
    to send the same request to now."""

    done: bool = False
    value: Any = None
    error: RaftkvError | None = None
    retry: bool = False
    redirect: str | None = None
    leader: Any = None


def decide(op: Operation, outcome: Answer | Failure, address: str | None = None) -> Verdict:
    """The one retry decision, for an outcome of ``op`` sent to ``address``."""
    if isinstance(outcome, Failure):
        if outcome.tls:
            return Verdict(error=TLSError(f"{op.name}: TLS with {address} failed: {outcome}", address=address))
        if not outcome.sent:
            return Verdict(error=Unavailable(f"{op.name}: cannot connect to {address}: {outcome}",
                                             address=address), retry=True)
        if op.write:
            what = "no answer in time" if outcome.timed_out else f"the connection broke ({outcome})"
            return Verdict(error=WriteOutcomeUnknown(
                f"{op.name}: {what} after the write was sent to {address}; it may have been applied",
                address=address))
        return Verdict(error=Unavailable(f"{op.name}: no answer from {address}: {outcome}", address=address),
                       retry=True)
    status = outcome.status
    if 200 <= status < 300:
        return Verdict(done=True, value=op.result(outcome.json()))
    location = outcome.headers.get("location")
    if status in REDIRECTS and location:
        return Verdict(redirect=urllib.parse.urljoin(f"{address}{op.path}", location))
    if status == 404 and op.missing is not RAISE:
        return Verdict(done=True, value=op.missing)
    error = error_for(outcome, write=op.write, address=address)
    if isinstance(error, Unavailable):
        return Verdict(error=error, retry=True, leader=(error.body or {}).get("leader"))
    return Verdict(error=error)


# --- a whole call ----------------------------------------------------------------

Outcome = Answer | Failure
Steps = Generator[Send | Sleep, Any, Any]


def _request(op: Operation, base: str, target: str, headers: Mapping[str, str], timeout: float,
             policy: Policy) -> Send:
    body = None
    if op.json is not None:
        body = json.dumps(op.json, ensure_ascii=False).encode("utf-8")
        headers = {**headers, "Content-Type": "application/json"}
    elif op.method in ("POST", "PUT", "DELETE"):
        body = b""
    return Send(base, op.method, target, body, headers, timeout, min(policy.connect_timeout, timeout))


STATUS = Operation("status", "GET", "/status")


def _find_leader(book: Book, policy: Policy, left: float) -> Generator[Send, Any, tuple[str | None, Any]]:
    """Ask the next given address who leads: ``(base, None)``, the leader's
    address or, when it names none we can use, that node's (it forwards);
    ``(None, failure)`` when the node did not answer."""
    seed = book.next_seed()
    probe = yield _request(STATUS, seed, STATUS.path, {}, min(left, policy.probe_timeout), policy)
    if isinstance(probe, Failure):
        return None, probe
    st = probe.json() if probe.status == 200 else None
    learned = book.learn(st.get("leader")) if isinstance(st, dict) else None
    return learned or seed, None


def _exchange(op: Operation, base: str, headers: Mapping[str, str], policy: Policy,
              left: Callable[[], float]) -> Generator[Send, Any, tuple[Outcome, str, Verdict]]:
    """Send ``op`` to ``base``, following redirects: the last outcome, the
    node that gave it, and its verdict."""
    target = op.target()
    for _hop in range(MAX_REDIRECTS + 1):
        timeout = left() if op.write else min(left(), policy.read_attempt)
        outcome = yield _request(op, base, target, headers, max(timeout, 0.001), policy)
        verdict = decide(op, outcome, base)
        if verdict.redirect is None:
            return outcome, base, verdict
        parts = urllib.parse.urlsplit(verdict.redirect)
        base = f"{parts.scheme}://{parts.netloc}"
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    raise Unavailable(f"{op.name}: more than {MAX_REDIRECTS} redirects, the last to {base}", address=base)


def conduct(op: Operation, book: Book, policy: Policy, headers: Mapping[str, str],
            clock: Callable[[], float] = time.monotonic,
            rng: Callable[[], float] = random.random) -> Steps:
    """Run ``op`` to its result (the generator's return value) or raise its
    error, yielding the IO to do (module docstring). ``headers`` go on every
    request of ``op`` (the cluster key on an admin call)."""
    deadline = clock() + policy.timeout

    def left() -> float:
        return deadline - clock()

    attempt = 0
    last: RaftkvError | None = None
    hurry = hurried = False  # once a call, a 503 naming another leader is followed without a pause
    while True:
        if attempt and not hurry:
            pause = min(backoff(attempt, policy, rng), left())
            if pause > 0:
                yield Sleep(pause)
        hurry = False
        if left() <= 0:
            raise _timeout(op, policy, last, unknown=False)
        attempt += 1
        if op.node is not None:
            base = base_url(op.node, book.tls)
        elif book.preferred is not None:
            base = book.preferred
        else:
            found, failure = yield from _find_leader(book, policy, left())
            if found is None:
                last = decide(STATUS, failure).error
                if isinstance(last, TLSError):
                    raise last
                continue
            base = found
            if left() <= 0:
                raise _timeout(op, policy, last, unknown=False)
        outcome, base, verdict = yield from _exchange(op, base, headers, policy, left)
        if verdict.done:
            book.served(base, op, outcome.served_by if isinstance(outcome, Answer) else None)
            return verdict.value
        error = verdict.error
        assert error is not None
        if not verdict.retry:
            if isinstance(outcome, Failure) and outcome.timed_out and op.write and left() <= 0:
                raise _timeout(op, policy, error, unknown=True)
            raise error
        last = error
        if op.node is None:
            connect_failed = isinstance(outcome, Failure) and not outcome.sent
            book.failed(base, connect_failed)
            named = book.learn(verdict.leader)
            if named is not None and named != base and not hurried:
                hurry = hurried = True  # the answer named another leader: ask it now


def _timeout(op: Operation, policy: Policy, last: RaftkvError | None, unknown: bool) -> RaftkvError:
    why = f"; the last failure: {last.message}" if last is not None else ""
    kind = TimeoutOutcomeUnknown if unknown else TimeoutNotApplied
    error = kind(f"{op.name}: no answer to keep within the client's timeout of {policy.timeout:g}s{why}",
                 last=last, status=last.status if last else None, body=last.body if last else None,
                 served_by=last.served_by if last else None, address=last.address if last else None)
    error.__cause__ = last
    return error


def advance(steps: Steps, outcome: Outcome | None) -> tuple[bool, Any]:
    """One turn of a call: ``(False, step)``, the next IO to do, or
    ``(True, result)`` once the call is over (its error raised here)."""
    try:
        return False, steps.send(outcome)
    except StopIteration as stop:
        return True, stop.value


def drive_sync(steps: Steps, perform: Callable[[Send | Sleep], Outcome | None]) -> Any:
    """Run :func:`conduct`'s steps with blocking IO, ``perform`` doing each:
    the call's result, or its error raised."""
    outcome: Outcome | None = None
    while True:
        over, step = advance(steps, outcome)
        if over:
            return step
        outcome = perform(step)
