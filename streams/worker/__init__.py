"""The engine worker: `build_worker(settings)` is the one composition root."""

from streams.worker.build import Worker, build_worker

__all__ = ["Worker", "build_worker"]
