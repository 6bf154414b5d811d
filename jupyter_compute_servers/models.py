"""The compute server model: states, actions, configuration, and their validation.

One shape for every cloud, so the UI, the cost estimate and scripts speak one language. A cloud
says which configuration fields apply to it and fills its defaults (see ``clouds.base``).
"""

from __future__ import annotations

import copy
import enum
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConflictError, NotFoundError, ValidationError


class State(str, enum.Enum):
    DEPROVISIONED = "deprovisioned"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    OFF = "off"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    DEPROVISIONING = "deprovisioning"
    ERROR = "error"

    @property
    def is_transitional(self) -> bool:
        return self in TRANSITIONAL_STATES


TRANSITIONAL_STATES = frozenset(
    {State.STARTING, State.STOPPING, State.SUSPENDING, State.DEPROVISIONING}
)


class Action(str, enum.Enum):
    START = "start"
    STOP = "stop"
    SUSPEND = "suspend"
    RESUME = "resume"
    REBOOT = "reboot"
    DEPROVISION = "deprovision"


@dataclass(frozen=True)
class Transition:
    """An action: the states it may start from, the state shown while it runs, where it ends."""

    from_states: frozenset[State]
    during: State
    to: State


TRANSITIONS: dict[Action, Transition] = {
    Action.START: Transition(
        frozenset({State.DEPROVISIONED, State.OFF}), State.STARTING, State.RUNNING
    ),
    # From error too: a server that stopped answering can be stopped (its processes ended) and
    # started again.
    Action.STOP: Transition(
        frozenset({State.RUNNING, State.SUSPENDED, State.ERROR}), State.STOPPING, State.OFF
    ),
    Action.SUSPEND: Transition(frozenset({State.RUNNING}), State.SUSPENDING, State.SUSPENDED),
    Action.RESUME: Transition(frozenset({State.SUSPENDED}), State.STARTING, State.RUNNING),
    # A reboot keeps the server running throughout, as far as anyone outside can tell.
    Action.REBOOT: Transition(frozenset({State.RUNNING}), State.RUNNING, State.RUNNING),
    Action.DEPROVISION: Transition(
        frozenset({State.OFF, State.RUNNING, State.SUSPENDED, State.ERROR}),
        State.DEPROVISIONING,
        State.DEPROVISIONED,
    ),
}

#: Said by the API and the UI before a deprovision, which cannot be undone.
DEPROVISION_WARNING = (
    "Deprovisioning deletes the server's machine and its disk. Everything on the server's disk "
    "that was not synced back to the Jupyter root is lost. The configuration is kept, so the "
    "server can be started again from a fresh disk."
)


def allowed_actions(state: State, *, supports_suspend: bool) -> list[str]:
    """The actions (and ``delete``) a user may take on a server in ``state``."""
    return list(_ALLOWED_ACTIONS[state, supports_suspend])


def _allowed_actions(state: State, *, supports_suspend: bool) -> tuple[str, ...]:
    actions = [
        action.value
        for action, transition in TRANSITIONS.items()
        if state in transition.from_states and (supports_suspend or action is not Action.SUSPEND)
    ]
    if state is State.STARTING:
        # Cancels the start (a job still queued, a GPU still awaited, a machine booting) and
        # stops what it made (ComputeServerManager._cancel_start).
        actions.append(Action.STOP.value)
    if state is State.DEPROVISIONED:
        actions.append("delete")
    return tuple(actions)


#: ``allowed_actions`` of every state, worked out once: listing 500 servers asked it 500 times.
_ALLOWED_ACTIONS = {
    (state, supports_suspend): _allowed_actions(state, supports_suspend=supports_suspend)
    for state in State
    for supports_suspend in (False, True)
}


def check_action_allowed(action: Action, state: State, *, supports_suspend: bool) -> Transition:
    """The transition for ``action`` from ``state``, or a 409 that names what is allowed."""
    allowed = allowed_actions(state, supports_suspend=supports_suspend)
    transition = TRANSITIONS[action]
    # From the table: a stop while starting is no transition but a cancel (the manager's).
    if state not in transition.from_states or (action is Action.SUSPEND and not supports_suspend):
        if action is Action.SUSPEND and not supports_suspend:
            reason = "this server's cloud does not support suspend"
        else:
            reason = f"the server is {state.value}"
        raise ConflictError(
            f"Cannot {action.value}: {reason}. Allowed now: {', '.join(allowed) or 'nothing'}.",
            state=state.value,
            allowed_actions=allowed,
        )
    return transition


# --- configuration -------------------------------------------------------------------------

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
COLOR_PATTERN = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_NOTES_LENGTH = 10_000


@dataclass(frozen=True)
class GpuSpec:
    type: str
    count: int
    #: A share of one GPU (MPS, on hosts whose admin allows it), e.g. 0.25; None: whole GPUs.
    fraction: float | None = None

    def to_json(self) -> dict[str, Any]:
        # Whole GPUs read as before shares existed: {"type", "count"}.
        if self.fraction is None:
            return {"type": self.type, "count": self.count}
        return {"type": self.type, "count": self.count, "fraction": self.fraction}


@dataclass(frozen=True)
class SpendLimit:
    """At most ``amount`` dollars in any ``period_days`` days."""

    amount: float
    period_days: int


@dataclass(frozen=True)
class DailyStop:
    """Stop the server every day at ``time`` (``HH:MM``) in ``timezone`` (an IANA name; None
    means the time zone of costs, ``c.ComputeServerCosts.timezone``)."""

    time: str
    timezone: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "timezone": self.timezone}


@dataclass(frozen=True)
class ServerConfig:
    """What a server is made of. Fields a cloud does not use are ``None``."""

    image: str | None = None
    image_tag: str | None = None
    machine_type: str | None = None
    cpu: int | None = None
    memory_gb: float | None = None
    gpu: GpuSpec | None = None
    disk_gb: int | None = None
    disk_type: str | None = None
    spot: bool | None = None
    region: str | None = None
    zone: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        # Field by field, not ``dataclasses.asdict``: its generic deep copy was a fifth of
        # ``GET servers`` with many servers.
        data = {name: getattr(self, name) for name in CONFIG_FIELDS}
        data["gpu"] = None if self.gpu is None else self.gpu.to_json()
        data["extra"] = copy.deepcopy(self.extra) if self.extra else {}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerConfig:
        """Load a configuration the store wrote (already validated)."""
        values: dict[str, Any] = {name: data.get(name) for name in CONFIG_FIELDS}
        gpu = values["gpu"]
        values["gpu"] = GpuSpec(**gpu) if gpu else None
        values["extra"] = dict(values["extra"] or {})
        return cls(**values)


CONFIG_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ServerConfig))


def _check_type(value: Any, kinds: tuple[type, ...], path: str, what: str) -> Any:
    # bool is an int in Python, but "cpu": true is a mistake, not 1 CPU.
    if isinstance(value, bool) and bool not in kinds:
        raise ValidationError(f"{path} must be {what}, not a boolean.", field=path)
    if not isinstance(value, kinds):
        raise ValidationError(f"{path} must be {what}, not {type(value).__name__}.", field=path)
    return value


def parse_int(value: Any, path: str, *, minimum: int, maximum: int | None = None) -> int:
    _check_type(value, (int,), path, "an integer")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValidationError(f"{path} must be {bound}; got {value}.", field=path)
    return int(value)


def parse_number(
    value: Any,
    path: str,
    *,
    minimum: float,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> float:
    _check_type(value, (int, float), path, "a number")
    low_ok = value > minimum if exclusive_minimum else value >= minimum
    if not low_ok or (maximum is not None and value > maximum):
        low = f"> {minimum}" if exclusive_minimum else f">= {minimum}"
        bound = f"{low} and <= {maximum}" if maximum is not None else low
        raise ValidationError(f"{path} must be {bound}; got {value}.", field=path)
    return float(value)


def parse_str(
    value: Any,
    path: str,
    *,
    pattern: re.Pattern[str] | None = None,
    max_length: int = 200,
    hint: str = "",
) -> str:
    _check_type(value, (str,), path, "a string")
    if len(value) > max_length:
        raise ValidationError(f"{path} must be at most {max_length} characters.", field=path)
    # fullmatch: a pattern's "$" would also accept a trailing newline ("a\n").
    if pattern is not None and not pattern.fullmatch(value):
        raise ValidationError(f"{path} is not valid: {value!r}. {hint}".strip(), field=path)
    return value


#: The largest id the store can hold (a signed 64-bit integer); larger ones name nothing.
MAX_ID = 2**63 - 1


def parse_id(value: Any, path: str, what: str) -> int:
    """An id given in a request (``server_id``): an integer >= 1; one beyond any the store can
    hold is simply not found (404), like any other unknown id."""
    number = parse_int(value, path, minimum=1)
    if number > MAX_ID:
        raise NotFoundError(f"No {what} with id {number}.", field=path)
    return number


def parse_path_id(segment: str, path: str, what: str) -> int:
    """An id from a URL segment: a 404 naming it when it is not one (``servers/abc``)."""
    valid = len(segment) <= 19 and segment.isascii() and segment.isdigit()
    if not valid or not 1 <= int(segment) <= MAX_ID:
        raise NotFoundError(f"No {what} {segment[:40]!r}: ids are positive integers.", field=path)
    return int(segment)


def parse_bool(value: Any, path: str) -> bool:
    return bool(_check_type(value, (bool,), path, "true or false"))


def check_no_unknown(
    data: Mapping[str, Any], allowed: tuple[str, ...] | frozenset[str], path: str
) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        where = f"{path}." if path else ""
        raise ValidationError(
            f"Unknown field {where}{unknown[0]}. Allowed: {', '.join(sorted(allowed))}.",
            field=f"{where}{unknown[0]}",
        )


def parse_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{path} must be a JSON object.", field=path)
    return value


def parse_name(value: Any) -> str:
    return parse_str(
        value,
        "name",
        pattern=NAME_PATTERN,
        max_length=63,
        hint="Use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit.",
    )


def parse_color(value: Any) -> str:
    return parse_str(
        value,
        "color",
        pattern=COLOR_PATTERN,
        max_length=7,
        hint="Use a hex colour such as #1f77b4.",
    )


def parse_notes(value: Any) -> str:
    return parse_str(value, "notes", max_length=MAX_NOTES_LENGTH)


def parse_idle_timeout(value: Any) -> int | None:
    if value is None:
        return None
    return parse_int(value, "idle_timeout_minutes", minimum=1, maximum=60 * 24 * 30)


def parse_spend_limit(value: Any) -> SpendLimit | None:
    if value is None:
        return None
    data = parse_object(value, "spend_limit")
    check_no_unknown(data, ("amount", "period_days"), "spend_limit")
    for key in ("amount", "period_days"):
        if key not in data:
            raise ValidationError(f"spend_limit.{key} is required.", field=f"spend_limit.{key}")
    return SpendLimit(
        amount=parse_number(
            data["amount"],
            "spend_limit.amount",
            minimum=0,
            exclusive_minimum=True,
            maximum=1_000_000,
        ),
        period_days=parse_int(
            data["period_days"], "spend_limit.period_days", minimum=1, maximum=366
        ),
    )


_CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def parse_daily_stop(value: Any) -> DailyStop | None:
    if value is None:
        return None
    data = parse_object(value, "daily_stop")
    check_no_unknown(data, ("time", "timezone"), "daily_stop")
    if "time" not in data:
        raise ValidationError("daily_stop.time is required.", field="daily_stop.time")
    time = parse_str(
        data["time"],
        "daily_stop.time",
        pattern=_CLOCK_TIME,
        max_length=5,
        hint="Use 24-hour HH:MM, such as 19:00.",
    )
    timezone = data.get("timezone")
    if timezone is not None:
        timezone = parse_str(timezone, "daily_stop.timezone", max_length=64)
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValidationError(
                f"daily_stop.timezone {timezone!r} is not a known time zone; use an IANA name "
                f"such as Europe/Berlin.",
                field="daily_stop.timezone",
            ) from None
    return DailyStop(time=time, timezone=timezone)


# Fields of a server a PATCH may carry, and when each may change (see also ServerConfig below).
EDITABLE_ANY_TIME = (
    "name",
    "color",
    "notes",
    "idle_timeout_minutes",
    "spend_limit",
    "daily_stop",
    "sync",
    "workspace",
)
CREATE_FIELDS = ("cloud", "config", *EDITABLE_ANY_TIME)
PATCH_FIELDS = ("config", *EDITABLE_ANY_TIME)


_IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")
# NVML names GPUs with spaces ("NVIDIA A100-SXM4-80GB"); hosts and the local cloud offer those.
_GPU_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/@+()-]*$")
_NAME_HINT = "Use letters, digits and . _ : / @ + -, starting with a letter or digit."


def parse_config_fields(data: Any, path: str = "config") -> dict[str, Any]:
    """Type-check the fields present in a (possibly partial) configuration object.

    Range checks against what a cloud offers are the cloud's job; this only makes sure each
    value has the right shape, so that clouds can trust the types.
    """
    data = parse_object(data, path)
    check_no_unknown(data, CONFIG_FIELDS, path)
    parsed: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{path}.{key}"
        if value is None:
            parsed[key] = {} if key == "extra" else None
        elif key in ("image", "image_tag", "machine_type", "disk_type", "region", "zone"):
            parsed[key] = parse_str(
                value, where, pattern=_IDENTIFIER, max_length=128, hint=_NAME_HINT
            )
        elif key == "cpu":
            parsed[key] = parse_int(value, where, minimum=1, maximum=1024)
        elif key == "memory_gb":
            parsed[key] = parse_number(
                value, where, minimum=0, exclusive_minimum=True, maximum=24 * 1024
            )
        elif key == "disk_gb":
            parsed[key] = parse_int(value, where, minimum=1, maximum=64 * 1024)
        elif key == "spot":
            parsed[key] = parse_bool(value, where)
        elif key == "gpu":
            gpu = parse_object(value, where)
            check_no_unknown(gpu, ("type", "count", "fraction"), where)
            if "type" not in gpu:
                raise ValidationError(f"{where}.type is required.", field=f"{where}.type")
            parsed[key] = GpuSpec(
                type=parse_str(
                    gpu["type"],
                    f"{where}.type",
                    pattern=_GPU_TYPE,
                    max_length=64,
                    hint="Use a GPU type as offered, e.g. nvidia-tesla-t4 or NVIDIA A100 80GB.",
                ),
                count=parse_int(gpu.get("count", 1), f"{where}.count", minimum=1, maximum=16),
                fraction=(
                    None
                    if gpu.get("fraction") is None
                    else parse_number(
                        gpu["fraction"],
                        f"{where}.fraction",
                        minimum=0,
                        exclusive_minimum=True,
                        maximum=1,
                    )
                ),
            )
            if parsed[key].fraction is not None and parsed[key].count != 1:
                raise ValidationError(
                    f"{where}.count must be 1 with {where}.fraction (a share of one GPU).",
                    field=f"{where}.count",
                )
        elif key == "extra":
            parsed[key] = dict(parse_object(value, where))
    return parsed


#: When each configuration field may change (the editing rules).
ONLY_WHEN_DEPROVISIONED = frozenset({"image", "image_tag", "region", "zone", "disk_type"})
ONLY_WHEN_OFF_OR_DEPROVISIONED = frozenset(
    {"machine_type", "cpu", "memory_gb", "gpu", "spot", "extra"}
)


def check_config_change(old: ServerConfig, new: ServerConfig, state: State) -> list[str]:
    """Enforce the editing rules; return the names of the fields that change."""
    changed = [name for name in CONFIG_FIELDS if getattr(old, name) != getattr(new, name)]
    for name in changed:
        where = f"config.{name}"
        if name == "gpu" and (old.gpu is None) != (new.gpu is None):
            if state is not State.DEPROVISIONED:
                raise ConflictError(
                    f"Adding or removing GPUs needs a new machine: deprovision the server "
                    f"first (it is {state.value}).",
                    field=where,
                    state=state.value,
                )
        elif name in ONLY_WHEN_DEPROVISIONED and state is not State.DEPROVISIONED:
            raise ConflictError(
                f"{where} can change only while the server is deprovisioned (it is {state.value}).",
                field=where,
                state=state.value,
            )
        elif name in ONLY_WHEN_OFF_OR_DEPROVISIONED and state not in (
            State.OFF,
            State.DEPROVISIONED,
        ):
            raise ConflictError(
                f"{where} can change only while the server is off or deprovisioned (it is "
                f"{state.value}). Stop it first.",
                field=where,
                state=state.value,
            )
        elif name == "disk_gb":
            if state.is_transitional:
                raise ConflictError(
                    f"The disk cannot be resized while the server is {state.value}; try again "
                    f"when it is done.",
                    field=where,
                    state=state.value,
                )
            if (new.disk_gb or 0) < (old.disk_gb or 0) and state is not State.DEPROVISIONED:
                raise ConflictError(
                    f"A disk can only grow (from {old.disk_gb} GB) unless the server is "
                    f"deprovisioned (it is {state.value}).",
                    field=where,
                    state=state.value,
                )
    return changed
