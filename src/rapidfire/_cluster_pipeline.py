"""Running redis-py's synchronous cluster pipeline without its resends.

redis-py's asyncio cluster pipeline takes ``allow_redirections=False`` in
``execute``; its synchronous one takes it only in ``send_cluster_commands``.
With redirections allowed, the synchronous pipeline sends a command whose
reply was lost to a connection error once more by itself, which would repeat
a push that may have run. rapidfire follows redirections itself instead (see
``SyncExecutor._send_many``). Used by the generated ``_executor.py`` only.
"""

from __future__ import annotations

from typing import Any

__all__ = ["execute_without_resends"]


def execute_without_resends(pipe: Any) -> list[Any]:
    """Send the pipeline's commands once; errors come back as replies."""
    strategy = getattr(pipe, "_execution_strategy", None)  # redis-py >= 6
    queue = strategy.command_queue if strategy is not None else pipe.command_stack
    try:
        return list(
            pipe.send_cluster_commands(
                queue, raise_on_error=False, allow_redirections=False
            )
        )
    finally:
        pipe.reset()
