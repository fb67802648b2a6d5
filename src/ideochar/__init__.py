"""ideochar: character-consistent image generation across vendors, one request, one result.

The public surface is re-exported here. Importing it loads no vendor plugin and no heavy library:
plugins are found on first use of a client, Pillow only when an image's size is needed, the emulator
and the command line only when run.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ideochar._secrets import Secret
from ideochar.client import AsyncClient, Client
from ideochar.errors import (
    AllProvidersFailed,
    AuthenticationFailed,
    ContentFiltered,
    GenerationFailed,
    IdeocharError,
    InsufficientCredits,
    InvalidRequest,
    JobBusy,
    JournalUnavailable,
    MissingCredentials,
    OutcomeUnknown,
    OverBudget,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
    StateUnavailable,
    UnexpectedResponse,
    Unsupported,
)
from ideochar.events import Event
from ideochar.hookspecs import hookimpl
from ideochar.media import SERVER_INPUTS, ImageInput, InputKinds
from ideochar.request import CharacterRequest, ColorPalette, Edit, Generate, PaletteMember, Remix, is_visible
from ideochar.result import Attempt, CharacterResult, GeneratedImage, ImageFailure, JobHandle, RequestWarning
from ideochar.router import FailurePolicy
from ideochar.spec import CallContext, Provider, ProviderInfo, ProviderOutput, Quote

try:
    __version__ = version("ideochar")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = [
    "SERVER_INPUTS",
    "AllProvidersFailed",
    "AsyncClient",
    "Attempt",
    "AuthenticationFailed",
    "CallContext",
    "CharacterRequest",
    "CharacterResult",
    "Client",
    "ColorPalette",
    "ContentFiltered",
    "Edit",
    "Event",
    "FailurePolicy",
    "Generate",
    "GeneratedImage",
    "GenerationFailed",
    "IdeocharError",
    "ImageFailure",
    "ImageInput",
    "InputKinds",
    "InsufficientCredits",
    "InvalidRequest",
    "JobBusy",
    "JobHandle",
    "JournalUnavailable",
    "MissingCredentials",
    "OutcomeUnknown",
    "OverBudget",
    "PaletteMember",
    "Provider",
    "ProviderError",
    "ProviderInfo",
    "ProviderOutput",
    "ProviderUnavailable",
    "Quote",
    "RateLimited",
    "Remix",
    "RequestRejected",
    "RequestWarning",
    "Secret",
    "StateUnavailable",
    "UnexpectedResponse",
    "Unsupported",
    "__version__",
    "hookimpl",
    "is_visible",
]
