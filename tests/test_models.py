"""The state machine and the editing rules, checked exhaustively."""

from __future__ import annotations

import itertools

import pytest

from jupyter_compute_servers.errors import ConflictError, ValidationError
from jupyter_compute_servers.models import (
    TRANSITIONS,
    Action,
    GpuSpec,
    ServerConfig,
    State,
    allowed_actions,
    check_action_allowed,
    check_config_change,
    parse_config_fields,
)

# The contract, written out independently of TRANSITIONS: action -> (from states, during, to).
CONTRACT = {
    "start": ({"deprovisioned", "off"}, "starting", "running"),
    "stop": ({"running", "suspended", "error"}, "stopping", "off"),
    "suspend": ({"running"}, "suspending", "suspended"),
    "resume": ({"suspended"}, "starting", "running"),
    "reboot": ({"running"}, "running", "running"),
    "deprovision": ({"off", "running", "suspended", "error"}, "deprovisioning", "deprovisioned"),
}


@pytest.mark.parametrize(("action", "state"), list(itertools.product(Action, State)))
def test_every_transition_is_allowed_or_refused_as_the_contract_says(action, state):
    from_states, during, to = CONTRACT[action.value]
    if state.value in from_states:
        transition = check_action_allowed(action, state, supports_suspend=True)
        assert (transition.during.value, transition.to.value) == (during, to)
    else:
        with pytest.raises(ConflictError) as error:
            check_action_allowed(action, state, supports_suspend=True)
        assert error.value.status == 409
        assert error.value.details["state"] == state.value
        assert error.value.details["allowed_actions"] == allowed_actions(
            state, supports_suspend=True
        )
        assert state.value in error.value.message


def test_suspend_is_refused_where_the_cloud_cannot():
    assert "suspend" not in allowed_actions(State.RUNNING, supports_suspend=False)
    with pytest.raises(ConflictError, match="does not support suspend"):
        check_action_allowed(Action.SUSPEND, State.RUNNING, supports_suspend=False)


def test_delete_only_when_deprovisioned():
    for state in State:
        assert ("delete" in allowed_actions(state, supports_suspend=True)) == (
            state is State.DEPROVISIONED
        )


def test_transitional_states_allow_nothing_but_stopping_a_start():
    for state in (State.STOPPING, State.SUSPENDING, State.DEPROVISIONING):
        assert allowed_actions(state, supports_suspend=True) == []
    # A start that waits (a GPU queue, a pending job) can be given up.
    assert allowed_actions(State.STARTING, supports_suspend=True) == ["stop"]


def test_transitions_table_matches_contract():
    assert {a.value for a in TRANSITIONS} == set(CONTRACT)


BASE = ServerConfig(image="python", image_tag="system", cpu=2, memory_gb=4.0, gpu=None, disk_gb=10)


def changed(**values):
    return ServerConfig(**{**BASE.__dict__, **values})


@pytest.mark.parametrize(
    ("change", "allowed_in"),
    [
        ({"image": "pytorch"}, {State.DEPROVISIONED}),
        ({"region": "us-east1"}, {State.DEPROVISIONED}),
        ({"gpu": GpuSpec("T4", 1)}, {State.DEPROVISIONED}),
        ({"cpu": 4}, {State.OFF, State.DEPROVISIONED}),
        ({"memory_gb": 8.0}, {State.OFF, State.DEPROVISIONED}),
        ({"spot": True}, {State.OFF, State.DEPROVISIONED}),
        (
            {"disk_gb": 20},
            {State.DEPROVISIONED, State.OFF, State.RUNNING, State.SUSPENDED, State.ERROR},
        ),
        ({"disk_gb": 5}, {State.DEPROVISIONED}),
    ],
)
def test_editing_rules(change, allowed_in):
    for state in State:
        if state in allowed_in:
            assert check_config_change(BASE, changed(**change), state) == list(change)
        else:
            with pytest.raises(ConflictError) as error:
                check_config_change(BASE, changed(**change), state)
            assert error.value.field == f"config.{next(iter(change))}"


def test_gpu_type_and_count_change_when_off():
    with_gpu = changed(gpu=GpuSpec("T4", 1))
    after = ServerConfig(**{**with_gpu.__dict__, "gpu": GpuSpec("V100", 2)})
    assert check_config_change(with_gpu, after, State.OFF) == ["gpu"]
    with pytest.raises(ConflictError):
        check_config_change(with_gpu, after, State.RUNNING)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"cpu": "2"}, "config.cpu"),
        ({"cpu": True}, "config.cpu"),
        ({"cpu": 0}, "config.cpu"),
        ({"memory_gb": -1}, "config.memory_gb"),
        ({"gpu": {"count": 1}}, "config.gpu.type"),
        ({"gpu": {"type": "T4", "count": 0}}, "config.gpu.count"),
        ({"gpu": {"type": "T4", "extra": 1}}, "config.gpu.extra"),
        ({"disk_gb": 1.5}, "config.disk_gb"),
        ({"spot": "yes"}, "config.spot"),
        ({"zone": "us central;rm -rf"}, "config.zone"),
        ({"bogus": 1}, "config.bogus"),
        ({"extra": []}, "config.extra"),
    ],
)
def test_config_field_validation_names_the_field(config, field):
    with pytest.raises(ValidationError) as error:
        parse_config_fields(config)
    assert error.value.field == field
    assert error.value.status == 400
