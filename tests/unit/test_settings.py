"""Settings from the environment: read, checked, and handed to the services they tune."""

from __future__ import annotations

import pytest

from senflow.projections.consumer import build_consumer
from senflow.projections.kept_docs import DEFAULT_MAX_BYTES
from senflow.projections.register import PROJECTION as REGISTER
from senflow.services.bus.topology import Topology
from senflow.services.settings import Settings, from_environment

pytestmark = pytest.mark.unit


def test_tuning_defaults_are_the_measured_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PREFETCH", "LINGER", "BUSY_RATE", "KEPT_BYTES"):
        monkeypatch.delenv(f"SENFLOW_CONSUMER_{name}", raising=False)
    monkeypatch.delenv("SENFLOW_RELAY_CHECKPOINT_EVERY", raising=False)
    s = Settings()
    assert (s.consumer_prefetch, s.consumer_linger, s.consumer_busy_rate) == (16, 0.1, 1000.0)
    assert s.consumer_kept_bytes == DEFAULT_MAX_BYTES and s.relay_checkpoint_every == 0.2


def test_tuning_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENFLOW_CONSUMER_LINGER", "0")
    monkeypatch.setenv("SENFLOW_CONSUMER_KEPT_BYTES", "0")
    monkeypatch.setenv("SENFLOW_RELAY_CHECKPOINT_EVERY", "1.5")
    s = from_environment()
    assert (s.consumer_linger, s.consumer_kept_bytes, s.relay_checkpoint_every) == (0, 0, 1.5)


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("SENFLOW_CONSUMER_LINGER", "-1", "greater than or equal to 0"),
        ("SENFLOW_CONSUMER_PREFETCH", "0", "greater than or equal to 1"),
        ("SENFLOW_RELAY_CHECKPOINT_EVERY", "soon", "valid number"),
    ],
)
def test_a_bad_value_stops_the_process_naming_the_variable_and_the_rule(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable, value, rule
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        from_environment()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert variable in err and rule in err and repr(value) in err


def test_a_consumer_is_built_with_its_tuning() -> None:
    service = build_consumer(
        REGISTER,
        None,  # type: ignore[arg-type]  # no statement runs while building
        None,  # type: ignore[arg-type]
        "amqp://guest:guest@127.0.0.1:5672/",
        Topology(prefix="unit-settings", partitions=2),
        prefetch=4,
        kept_bytes=0,
        linger=0.25,
        busy_rate=50.0,
    )
    assert (service.batcher.linger, service.batcher.busy_rate) == (0.25, 50.0)
    assert service.partitions == [0, 1]
