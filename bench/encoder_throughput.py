"""Raw open_clip throughput vs the service's /retrieve throughput, in one run.

    python bench/encoder_throughput.py --model ViT-B-32           # the goal: >= 0.8 of raw at 32
    python bench/encoder_throughput.py --model rapport-test-tiny  # the service's own cost

Raw: JPEG bytes -> decode -> preprocess -> forward pass, at several batch sizes,
in this process. Service: ``rapport serve`` in a child process on the same
model, /retrieve over HTTP from 1, 8 and 32 concurrent clients (threads of this
process, so the clients' own CPU is spent on the same cores). Latency
percentiles are split by the stages of the Server-Timing header. Random
weights: speed only. Needs the machine to itself.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import Served, conditions, dataset_jpegs, median, percentile, run_load

from retrieval.config import EncoderConfig
from retrieval.encoder import Encoder
from retrieval.images import decode_image


def raw_throughput(
    encoder: Encoder, jpegs: list[bytes], batch: int, repeats: int
) -> tuple[float, float, float]:
    """Images/s of decode + preprocess + forward at ``batch``, and the CPU seconds per
    image of decode + preprocess and of the forward pass alone."""
    rates, prep_cpu, model_cpu = [], [], []
    for _ in range(repeats):
        wall, prep, model = time.perf_counter(), 0.0, 0.0
        for start in range(0, len(jpegs), batch):
            chunk = jpegs[start : start + batch]
            cpu = time.process_time()
            tensors = [encoder.preprocess(decode_image(data).image) for data in chunk]
            middle = time.process_time()
            encoder.encode_tensors(tensors)
            prep, model = prep + middle - cpu, model + time.process_time() - middle
        rates.append(len(jpegs) / (time.perf_counter() - wall))
        prep_cpu.append(prep / len(jpegs))
        model_cpu.append(model / len(jpegs))
    return median(rates), median(prep_cpu), median(model_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--photos", type=int, default=128, help="photos per raw measurement")
    parser.add_argument("--batches", default="1,8,16,32,64")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per run of the service (default: 2 x photos)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1", help="rapport serve --workers")
    args = parser.parse_args()

    config = EncoderConfig(model=args.model, pretrained=args.pretrained, device=args.device)
    encoder = Encoder.from_config(config)
    jpegs = dataset_jpegs(args.photos)
    print(f"# {conditions(model=args.model, weights=args.pretrained, device=encoder.device)}")
    encoder.encode_tensors([encoder.preprocess(decode_image(jpegs[0]).image)] * 4)  # warm-up

    print("\nraw open_clip (decode + preprocess + forward, one process)")
    print(
        f"{'batch':>6} {'images/s':>10} {'decode+prep cpu ms/img':>23} {'forward cpu ms/img':>19}"
    )
    raw: dict[int, tuple[float, float, float]] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        raw[batch] = raw_throughput(encoder, jpegs, batch, args.repeats)
        rate, prep, model = raw[batch]
        print(f"{batch:>6} {rate:>10.1f} {prep * 1000:>23.2f} {model * 1000:>19.2f}")
    best_batch = max(raw, key=lambda b: raw[b][0])
    best = raw[best_batch][0]
    print(f"best raw: {best:.1f} images/s at batch {best_batch}")
    del encoder

    served = Served(
        workers=args.workers,
        RAPPORT_CLIP_MODEL=args.model,
        RAPPORT_CLIP_PRETRAINED=args.pretrained,
        RAPPORT_DEVICE=args.device,
        RAPPORT_ENCODE_BATCH_SIZE=str(max(best_batch, 32)),
    )
    try:
        with served.client() as client:
            files = [("images", (f"{i}.jpg", jpegs[i])) for i in range(3)]
            client.post("/v1/users/bench/concepts", data={"name": "bo"}, files=files)

        def call(client, n):  # type: ignore[no-untyped-def]
            photo = jpegs[n % len(jpegs)]
            return client.post(
                "/v1/users/bench/retrieve",
                files={"image": ("q.jpg", photo)},
                data={"min_score": "-1"},
            )

        total = args.requests or 2 * args.photos
        run_load(served, 4, 8, call)  # warm-up
        print(f"\nservice /retrieve over HTTP ({total} requests per row)")
        header = (
            f"{'clients':>7} {'images/s':>9} {'vs raw':>7} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8}  {'cpu ms/req':>10}  stage medians (ms)"
        )
        print(header)
        for clients in (int(c) for c in args.clients.split(",")):
            cpu_before = served.cpu_seconds()
            result = run_load(served, clients, max(1, total // clients), call)
            cpu_ms = (served.cpu_seconds() - cpu_before) / result.requests * 1000
            rate = result.requests / result.seconds
            ms = [x * 1000 for x in result.latencies]
            stages = " ".join(
                f"{name}={median(values) * 1000:.2f}" for name, values in result.stages.items()
            )
            print(
                f"{clients:>7} {rate:>9.1f} {rate / best:>7.2f} {percentile(ms, 50):>8.1f} "
                f"{percentile(ms, 95):>8.1f} {percentile(ms, 99):>8.1f}  {cpu_ms:>10.2f}  {stages}"
                + (f"  errors={result.errors}" if result.errors else "")
            )
        _, prep, model = raw[best_batch]
        print(
            f"\nforward pass CPU per image at batch {best_batch}: {model * 1000:.2f} ms "
            f"(decode + preprocess: {prep * 1000:.2f} ms). The service's CPU per /retrieve "
            "beyond the model = cpu ms/req (server process only, clients excluded) minus "
            "the forward pass figure."
        )
    finally:
        served.stop()


if __name__ == "__main__":
    main()
