"""rapidfire: answer a burst of chat messages with one reply.

Producers push each incoming message; rapidfire keeps a conversation's burst
together in Redis until the user goes quiet, then hands the whole batch to one
worker, leased, with nothing lost if that worker dies.

    from rapidfire import Batcher, BatchPolicy, RedisConfig

    batcher = Batcher(RedisConfig.from_env(), BatchPolicy.from_env())
    batcher.push("15550000001", {"text": "hi"}, dedupe_id="wamid.1")
    for batch in batcher.claim():
        ...  # reply once to batch.messages
        batcher.ack(batch)
"""

from ._async_batcher import AsyncBatcher
from ._batcher import Batcher
from ._codec import Codec, JsonCodec
from ._config import RedisConfig
from ._errors import (
    ArgumentTypeError,
    ConfigurationError,
    InvalidArgumentError,
    LayoutMismatchError,
    LeaseLostError,
    RapidfireError,
    RedisAuthenticationError,
    RedisCommandError,
    RedisUnavailableError,
    StoreError,
)
from ._logging import mask, show_full_ids
from ._models import (
    Batch,
    BatchView,
    ConversationState,
    DeadLetter,
    DrainReport,
    Peer,
    PushReceipt,
    ReadyReason,
    Stats,
)
from ._observer import Observer
from ._policy import BatchPolicy
from ._version import __version__

__all__ = [
    "ArgumentTypeError",
    "AsyncBatcher",
    "Batch",
    "BatchPolicy",
    "BatchView",
    "Batcher",
    "Codec",
    "ConfigurationError",
    "ConversationState",
    "DeadLetter",
    "DrainReport",
    "InvalidArgumentError",
    "JsonCodec",
    "LayoutMismatchError",
    "LeaseLostError",
    "Observer",
    "Peer",
    "PushReceipt",
    "RapidfireError",
    "ReadyReason",
    "RedisAuthenticationError",
    "RedisCommandError",
    "RedisConfig",
    "RedisUnavailableError",
    "Stats",
    "StoreError",
    "__version__",
    "mask",
    "show_full_ids",
]
