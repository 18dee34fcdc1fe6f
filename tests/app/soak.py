"""Client traffic for the replica soak, with a ledger of what the service acknowledged.

Each user belongs to one client thread, so its requests are sequential and the
ledger is exact: after an acknowledged write, the very next request (a
listing, whichever replica answers it) must show it. A request that failed
leaves its write uncertain: it may or may not have happened, and both are
accepted; once seen, it must stay.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests import factories
from tests.app.helpers import register, retrieve
from tests.app.replicas import Cluster

MAX_CONCEPTS = 5


@dataclass(frozen=True)
class Tenant:
    name: str
    key: str


@dataclass(frozen=True)
class Request:
    started: float
    ended: float
    ok: bool  # not a 5xx, not a dropped connection
    replica: str
    what: str


@dataclass
class User:
    tenant: Tenant
    name: str
    acked: dict[str, str] = field(default_factory=dict)  # concept id -> name
    maybe: set[str] = field(default_factory=set)  # names of writes that failed
    deleted: set[str] = field(default_factory=set)  # acknowledged deletions
    photos: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # image -> concept, bytes

    @property
    def prefix(self) -> str:
        return f"{self.tenant.name}.{self.name}."


class Soak:
    def __init__(self, cluster: Cluster, tenants: list[Tenant], users_per_tenant: int) -> None:
        self.cluster = cluster
        self.users = [
            User(tenant, f"u{n}-ü") for tenant in tenants for n in range(users_per_tenant)
        ]
        self.log: list[Request] = []
        self.violations: list[str] = []
        self.writes_acked = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.workers = [threading.Thread(target=self._run, args=(u,)) for u in self.users]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def wait(self, seconds: float) -> None:
        """Let the traffic run (the soak's pace, not a synchronization)."""
        self._stop.wait(seconds)

    def stop(self) -> None:
        self._stop.set()
        for worker in self.workers:
            worker.join(timeout=120)

    def busiest(self) -> str:
        return Counter(r.replica for r in self.log if r.ok).most_common(1)[0][0]

    def requests_in(self, window: tuple[float, float]) -> tuple[list[Request], list[Request]]:
        """The requests that overlap ``window`` (were in flight in it), and the others."""
        inside = [r for r in self.log if r.ended >= window[0] and r.started <= window[1]]
        return inside, [
            r for r in self.log if not (r.ended >= window[0] and r.started <= window[1])
        ]

    def verify_all(self, replica: str) -> list[str]:
        """Every user's concepts as ``replica`` itself lists them, against the ledger."""
        problems: list[str] = []
        for user in self.users:
            with self.cluster.client(user.tenant.key, replica) as client:
                response = client.get(f"/v1/users/{user.name}/concepts", params={"limit": 200})
                if response.status_code != 200:
                    problems.append(f"{replica} list {user.name}: {response.status_code}")
                    continue
                problems += self._check_listing(user, response.json()["items"], replica)
                kept = [(i, c, p) for i, (c, p) in user.photos.items() if c in user.acked]
                for image, concept, photo in kept[-3:]:
                    got = client.get(f"/v1/users/{user.name}/concepts/{concept}/images/{image}")
                    if got.status_code != 200 or got.content != photo:
                        problems.append(f"{replica}: photo {image} answered {got.status_code}")
        return problems

    def _run(self, user: User) -> None:
        client = self.cluster.client(user.tenant.key)
        rng = random.Random(hash((user.tenant.name, user.name)))
        photos = itertools.cycle(
            factories.photo(subject, 0) for subject in factories.subjects()[:6]
        )
        try:
            for step in itertools.count():
                if self._stop.is_set():
                    return
                if user.acked and (len(user.acked) >= MAX_CONCEPTS or rng.random() < 0.3):
                    self._delete(client, user, rng.choice(sorted(user.acked)))
                elif step % 5 == 4:
                    self._retrieve(client, user, next(photos))
                else:
                    self._register(client, user, f"{user.prefix}{step}", next(photos))
                self._list(client, user)  # the next request sees the change
        finally:
            client.close()

    def _send(self, user: User, what: str, call: object) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response: httpx.Response = call()  # type: ignore[operator]
        except httpx.TransportError:
            ended = time.monotonic()
            self._record(Request(started, ended, False, "?", f"{what}: connection failed"))
            return None
        replica = response.headers.get("x-replica", "?")
        ok = response.status_code < 500
        ended = time.monotonic()
        self._record(Request(started, ended, ok, replica, f"{what}: {response.status_code}"))
        if ok and not response.is_success and response.status_code != 404:
            self._violation(f"{user.prefix} {what}: {response.status_code} {response.text}")
        return response if ok else None

    def _register(self, client: httpx.Client, user: User, name: str, photo: bytes) -> None:
        response = self._send(user, "register", lambda: register(client, user.name, name, [photo]))
        if response is None:
            user.maybe.add(name)
        elif response.status_code == 201:
            body = response.json()
            user.acked[body["id"]] = name
            user.photos[body["images"][0]["id"]] = (body["id"], photo)
            self._acked()

    def _delete(self, client: httpx.Client, user: User, concept: str) -> None:
        url = f"/v1/users/{user.name}/concepts/{concept}"
        response = self._send(user, "delete", lambda: client.delete(url))
        name = user.acked.pop(concept)
        if response is None:
            user.maybe.add(name)
        elif response.status_code == 204:
            user.deleted.add(concept)
            self._acked()
        else:
            self._violation(f"{user.prefix} delete of acknowledged {concept}: not found")

    def _retrieve(self, client: httpx.Client, user: User, photo: bytes) -> None:
        response = self._send(user, "retrieve", lambda: retrieve(client, user.name, photo))
        if response is not None and response.status_code == 200:
            found = {m["concept"]["id"]: m["concept"]["name"] for m in response.json()["matches"]}
            self._check_found(user, found, "retrieve")

    def _list(self, client: httpx.Client, user: User) -> None:
        url = f"/v1/users/{user.name}/concepts"
        response = self._send(user, "list", lambda: client.get(url, params={"limit": 200}))
        if response is not None and response.status_code == 200:
            items = response.json()["items"]
            for problem in self._check_listing(user, items, "list"):
                self._violation(problem)

    def _check_listing(self, user: User, items: list[dict], where: str) -> list[str]:
        listed = {item["id"]: item["name"] for item in items}
        problems = [
            f"{where}: acknowledged {cid} ({name}) of {user.prefix} missing"
            for cid, name in user.acked.items()
            if cid not in listed
        ]
        problems += self._found_problems(user, listed, where)
        for cid, name in listed.items():
            if name in user.maybe:  # an uncertain write that did happen: it must stay now
                user.maybe.discard(name)
                user.acked[cid] = name
        return problems

    def _check_found(self, user: User, found: dict[str, str], where: str) -> None:
        for problem in self._found_problems(user, found, where):
            self._violation(problem)

    def _found_problems(self, user: User, found: dict[str, str], where: str) -> list[str]:
        problems = []
        for cid, name in found.items():
            if not name.startswith(user.prefix):
                problems.append(f"{where}: {user.prefix} was shown {name!r} (another's data)")
            elif cid in user.deleted:
                problems.append(f"{where}: deleted {cid} ({name}) of {user.prefix} returned")
            elif cid not in user.acked and name not in user.maybe:
                problems.append(f"{where}: unknown {cid} ({name}) for {user.prefix}")
        return problems

    def _record(self, request: Request) -> None:
        with self._lock:
            self.log.append(request)

    def _acked(self) -> None:
        with self._lock:
            self.writes_acked += 1

    def _violation(self, problem: str) -> None:
        with self._lock:
            self.violations.append(problem)
