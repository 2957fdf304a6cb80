"""The first trials start in worker processes the sweep asked Ray for while its checks ran."""

from __future__ import annotations

import sys
import time

import psutil
import pytest
from sweep_helpers import in_tune_trial_environment

from hpo_cls.sweep.prestart import prestart_trial_workers, raylet_stub


def _workers_in_tune_environment() -> set[int]:
    """Processes under this one (the local Ray's worker processes) in the environment Tune gives trials."""
    return in_tune_trial_environment(psutil.Process().children(recursive=True))


def _workers_registered_with_the_raylet() -> set[int]:
    """Worker processes the local raylet has registered (only those can be handed to an actor)."""
    from ray.core.generated import node_manager_pb2

    with raylet_stub() as stub:
        reply = stub.GetNodeStats(node_manager_pb2.GetNodeStatsRequest(), timeout=10)
    return {stats.pid for stats in reply.core_workers_stats}


@pytest.mark.ray
def test_a_trial_actor_as_tune_creates_it_starts_in_a_prestarted_worker():
    """Ray starts a worker process only when an actor asks and then only for that actor's runtime environment
    (Tune sets one on every trial): a worker prestarted in any other environment would sit idle."""
    import ray
    from ray.tune.execution.class_cache import _ActorClassCache

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20,
             _node_ip_address="127.0.0.1", logging_level="ERROR")
    try:
        assert not _workers_in_tune_environment()
        assert prestart_trial_workers(1)
        deadline = time.monotonic() + 120
        # ready: started in the trials' environment and registered (a started process is not yet offered)
        while (not (prestarted := _workers_in_tune_environment() & _workers_registered_with_the_raylet())
               and time.monotonic() < deadline):
            time.sleep(0.2)
        assert prestarted, "no worker process was started in the trials' environment"

        class Trial:
            def pid(self) -> int:
                import os

                return os.getpid()

        trial = _ActorClassCache().get(Trial).options(num_cpus=1).remote()  # the remote class Tune makes
        assert ray.get(trial.pid.remote()) in prestarted
    finally:
        ray.shutdown()


def test_the_prestart_asks_for_the_environment_tune_gives_its_trial_actors(monkeypatch):
    """The copy the prestart uses (no Ray Tune import before it) is Tune's own; a Ray upgrade that changes
    Tune's fails here instead of leaving the prestarted workers idle."""
    from ray.tune.execution.class_cache import DEFAULT_ENV_VARS, ENV_VARS_TO_PROPAGATE

    from hpo_cls.sweep import prestart

    assert prestart.TUNE_DEFAULT_ENV_VARS == DEFAULT_ENV_VARS
    assert prestart.TUNE_PROPAGATED_ENV_VARS == frozenset(ENV_VARS_TO_PROPAGATE)
    for name in ENV_VARS_TO_PROPAGATE:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    assert prestart.tune_trial_env_vars() == {**DEFAULT_ENV_VARS, "AWS_ACCESS_KEY_ID": "key"}


def test_without_grpc_or_workers_to_start_it_asks_nothing(monkeypatch):
    assert prestart_trial_workers(0) is False
    monkeypatch.setitem(sys.modules, "grpc", None)  # grpcio missing: the sweep goes on, its workers start later
    assert prestart_trial_workers(2) is False
    monkeypatch.delitem(sys.modules, "grpc")
    import ray

    assert prestart_trial_workers(2) is False and not ray.is_initialized(), "no Ray connected: none is started"
