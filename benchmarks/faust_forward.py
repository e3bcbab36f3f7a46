"""Baseline (a) of `benchmarks.pipeline_bench`: a bare Faust agent that forwards
every message unchanged -- the framework's ceiling for one worker.

    BENCH_IN=<topic> BENCH_OUT=<topic> TRUST_APP_ID=... python -m benchmarks.faust_forward

The app is built by `streams.worker.build.make_app`, so it has exactly the engine's
Faust settings (at-least-once, commit interval, raw serializers, memory
store), and its agent has the decide agent's shape: concurrency 1,
`stream.events()`, one awaited `send` per message.  No decoding, no table.
"""

from __future__ import annotations

import logging
import os

from streams.worker.build import make_app
from streams.settings import Settings

settings = Settings.from_env()
app = make_app(settings)
source = app.topic(os.environ["BENCH_IN"], key_type=bytes, value_type=bytes,
                   key_serializer="raw", value_serializer="raw")
sink = app.topic(os.environ["BENCH_OUT"], key_type=bytes, value_type=bytes,
                 key_serializer="raw", value_serializer="raw")


@app.agent(source, concurrency=1)
async def forward(stream):
    async for event in stream.events():
        m = event.message
        await sink.send(key=m.key, value=m.value)


if __name__ == "__main__":
    from faust.worker import Worker

    # As `streams.worker.Worker.run` does.  (At loglevel warning or above, Faust's
    # worker turns the root logger to DEBUG for its progress spinner, and
    # every `log.debug` in aiokafka and Faust then costs a LogRecord.)
    logging.basicConfig(level=logging.INFO)
    Worker(app, loglevel="info", quiet=True).execute_from_commandline()
