"""Kept name: the event types moved to ``lorakit.events`` (a neutral module, so kohya and run
no longer import each other). Import from there."""

from lorakit.events import (
    ERROR_KINDS as ERROR_KINDS,
)
from lorakit.events import (
    EVENT_TYPES as EVENT_TYPES,
)
from lorakit.events import (
    EVENTS_FILE as EVENTS_FILE,
)
from lorakit.events import (
    Checkpoint as Checkpoint,
)
from lorakit.events import (
    DatasetSummary as DatasetSummary,
)
from lorakit.events import (
    EpochStarted as EpochStarted,
)
from lorakit.events import (
    ErrorEvent as ErrorEvent,
)
from lorakit.events import (
    ErrorKind as ErrorKind,
)
from lorakit.events import (
    Event as Event,
)
from lorakit.events import (
    EventLog as EventLog,
)
from lorakit.events import (
    Finished as Finished,
)
from lorakit.events import (
    FinishStatus as FinishStatus,
)
from lorakit.events import (
    Progress as Progress,
)
from lorakit.events import (
    Sample as Sample,
)
from lorakit.events import (
    Started as Started,
)
from lorakit.events import (
    StateSaved as StateSaved,
)
from lorakit.events import (
    WarningEvent as WarningEvent,
)
from lorakit.events import (
    event_from_dict as event_from_dict,
)
from lorakit.events import (
    iter_events as iter_events,
)
from lorakit.events import (
    read_events as read_events,
)
