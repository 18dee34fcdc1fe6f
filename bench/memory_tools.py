"""What one tool round trip adds to a chat: plain chat against memory auto, same run.

    python bench/memory_tools.py [--rounds 200]

A served rapport (tiny encoder) talks to the scripted OpenAI-compatible server of the
tests on loopback, which answers at once: the figures are rapport's own cost. Three
kinds of /chat requests, interleaved so that a neighbour's load hits all alike:

- plain: memory read (today's behaviour), one backend request;
- tool (read): memory auto, the model calls list_memory, then answers: two backend
  requests and one tool call;
- tool (write): memory auto, the model calls update (one unit of work, a history row),
  then answers.

Needs the machine to itself; prints the median and p90 of each, and the added latency.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import Served, conditions, median, percentile

from tests.fake_openai_server import running_fake_openai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    print(f"# {conditions(model='rapport-test-tiny', rounds=args.rounds)}")
    with running_fake_openai(deltas=("Noted.",)) as backend:
        served = Served(
            RAPPORT_CLIP_MODEL="rapport-test-tiny",
            RAPPORT_CLIP_PRETRAINED="none",
            RAPPORT_GENERATOR="openai",
            RAPPORT_GENERATOR_BASE_URL=backend.base_url,
            RAPPORT_GENERATOR_MODEL="fake-vlm",
        )
        try:
            with served.client() as client:
                client.patch("/v1/users/bench", json={"memory": "auto"}).raise_for_status()
                client.post(
                    "/v1/users/bench/concepts", data={"name": "<bo>", "description": "a corgi"}
                ).raise_for_status()

                def plain() -> None:
                    body = {"question": "what is <bo>?", "memory": "read"}
                    client.post("/v1/users/bench/chat", json=body).raise_for_status()

                def tool_read() -> None:
                    backend.call(("list_memory", {})).say("You have <bo>.")
                    body = {"question": "what do you know?", "memory": "auto"}
                    client.post("/v1/users/bench/chat", json=body).raise_for_status()

                def tool_write() -> None:
                    backend.call(("update", {"concept": "bo", "description": "a corgi"}))
                    backend.say("Updated.")
                    body = {"question": "bo is a corgi", "memory": "auto"}
                    answer = client.post("/v1/users/bench/chat", json=body)
                    answer.raise_for_status()
                    assert answer.json()["memory_changes"], answer.text

                kinds = {"plain": plain, "tool (read)": tool_read, "tool (write)": tool_write}
                for call in kinds.values():  # warm caches and connections
                    call()
                times: dict[str, list[float]] = {name: [] for name in kinds}
                for _ in range(args.rounds):
                    for name, call in kinds.items():
                        start = time.perf_counter()
                        call()
                        times[name].append(time.perf_counter() - start)
        finally:
            served.stop()
    base = median(times["plain"])
    print(f"{'request':>13} {'median':>10} {'p90':>10} {'added':>10}")
    for name, values in times.items():
        mid, p90 = median(values), percentile(values, 90)
        added = f"{(mid - base) * 1e3:+.2f} ms" if name != "plain" else "-"
        print(f"{name:>13} {mid * 1e3:>7.2f} ms {p90 * 1e3:>7.2f} ms {added:>10}")


if __name__ == "__main__":
    main()
