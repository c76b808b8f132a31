"""`shoal start`: run one node in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from broker.config import ConfigError, load_config
from broker.data_dir_lock import StartupError


def run_start(config_path: str | None) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as error:
        print(f"shoal: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, config.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop
        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    return asyncio.run(_serve(config))


async def _serve(config) -> int:
    from broker.app import Broker

    broker = Broker(config)
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, broker.request_stop)
    try:
        await broker.start()
    except (StartupError, OSError) as error:
        print(f"shoal: cannot start: {error}", file=sys.stderr)
        await broker.stop()
        return 1
    try:
        await broker.run_until_stopped()
    finally:
        await broker.stop()
    return 1 if broker.failed else 0
