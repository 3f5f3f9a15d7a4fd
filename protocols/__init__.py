"""wa-actor-engine protocols: every message that crosses an actor or the engine boundary.

Each message is a frozen, slotted, keyword-only dataclass, validated on construction
(``ValidationError``), picklable, and encodable with ``protocols.codec``.
"""

from protocols import codec
from protocols._schema import MAX_ID_LEN, MAX_TEXT_LEN, Message, Scalar, registry
from protocols.ai import AIFailure, AIReply, AIRequest
from protocols.chat import (
    REJECT_REASONS,
    STATUSES,
    Accepted,
    DeliveryReport,
    InboundMessage,
    OutboundReply,
    Outcome,
    Reason,
    Rejected,
    Status,
)
from protocols.control import (
    ActorStats,
    ShutdownReport,
    ShutdownRequest,
    StageReport,
    StatsReply,
    StatsRequest,
)
from protocols.errors import (
    CodecError,
    DecodeError,
    EncodeError,
    ProtocolError,
    ValidationError,
)
from protocols.management import (
    ACCOUNT_EVENTS,
    AccountEvent,
    AccountEventKind,
    AccountSpec,
    AddAccount,
    AddProvider,
    CommandResult,
    ProviderSpec,
    RemoveAccount,
    RemoveProvider,
)
from protocols.pipeline import (
    AIBatch,
    AIResults,
    CancelBatch,
    CollectOutcomes,
    DeliveryBatch,
    OutcomeBatch,
    SendBatch,
    SubmitBatch,
    SubmitResults,
)

__all__ = [
    "ACCOUNT_EVENTS",
    "MAX_ID_LEN",
    "MAX_TEXT_LEN",
    "REJECT_REASONS",
    "STATUSES",
    "AIBatch",
    "AIFailure",
    "AIReply",
    "AIRequest",
    "AIResults",
    "Accepted",
    "AccountEvent",
    "AccountEventKind",
    "AccountSpec",
    "ActorStats",
    "AddAccount",
    "AddProvider",
    "CancelBatch",
    "CodecError",
    "CollectOutcomes",
    "CommandResult",
    "DecodeError",
    "DeliveryBatch",
    "DeliveryReport",
    "EncodeError",
    "InboundMessage",
    "Message",
    "OutboundReply",
    "Outcome",
    "OutcomeBatch",
    "ProtocolError",
    "ProviderSpec",
    "Reason",
    "Rejected",
    "RemoveAccount",
    "RemoveProvider",
    "Scalar",
    "SendBatch",
    "ShutdownReport",
    "ShutdownRequest",
    "StageReport",
    "StatsReply",
    "StatsRequest",
    "Status",
    "SubmitBatch",
    "SubmitResults",
    "ValidationError",
    "codec",
    "registry",
]
