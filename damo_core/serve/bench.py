"""Client-side latency and throughput of a deployed model at several concurrencies.

In the spirit of ``perf_analyzer``: ``c`` client threads, each with its own gRPC channel,
send requests back to back (closed loop) until ``requests`` have been answered; latency is
per request as the client sees it (encode → network → ensemble → decode), throughput is
images answered per second of wall time. Concurrency is what lets the server's dynamic
batcher merge requests, so its gain shows as throughput growing faster than latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from damo_core.errors import UserInputError
from damo_core.serve.client import TritonDetector


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    batch: int
    requests: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    throughput_ips: float  # images per second

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_load(url: str, model: str, encoded: Sequence[bytes], *, concurrency: int,
             requests: int, batch: int = 1, warmup: int = 2,
             progress: tqdm | None = None) -> LoadResult:
    """``requests`` requests of ``batch`` images each, ``concurrency`` at a time."""
    if concurrency <= 0 or requests <= 0 or batch <= 0:
        raise UserInputError(f"concurrency, requests and batch must be positive, got "
                             f"{concurrency}, {requests}, {batch}")
    if not encoded:
        raise UserInputError("no images to send")
    payloads = [[encoded[(i * batch + j) % len(encoded)] for j in range(batch)]
                for i in range(len(encoded))]
    detectors = [TritonDetector(url, model) for _ in range(concurrency)]
    for detector in detectors:  # connect and warm every channel outside the timing
        for i in range(warmup):
            detector.detect_encoded(payloads[i % len(payloads)])
    latencies: list[float] = []
    lock, counter = threading.Lock(), iter(range(requests))

    def worker(detector: TritonDetector) -> None:
        while True:
            with lock:
                index = next(counter, None)
            if index is None:
                return
            start = time.perf_counter()
            detector.detect_encoded(payloads[index % len(payloads)])
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                if progress is not None:
                    progress.update(1)

    threads = [threading.Thread(target=worker, args=(d,), daemon=True) for d in detectors]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    for detector in detectors:
        detector.close()
    ms = np.array(latencies) * 1000
    return LoadResult(concurrency, batch, len(latencies), float(np.percentile(ms, 50)),
                      float(np.percentile(ms, 99)), float(ms.mean()),
                      len(latencies) * batch / wall)


def serve_bench(url: str, model: str, encoded: Sequence[bytes], *,
                concurrencies: Sequence[int] = (1, 2, 4), requests: int = 100, batch: int = 1,
                progress: bool = True) -> list[LoadResult]:
    """:func:`run_load` at each concurrency, one after the other."""
    results = []
    with tqdm(total=requests * len(concurrencies), desc="serve-bench", unit="req",
              disable=not progress) as bar:
        for concurrency in concurrencies:
            results.append(run_load(url, model, encoded, concurrency=concurrency,
                                    requests=requests, batch=batch, progress=bar))
    return results
