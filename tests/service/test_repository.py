"""The model repository on its own (`service.repository`): Triton's directory layout, which
version serves, reloads beside the serving version, failed loads, polling and unloading.
Versions load the oracle detector; a repository runs on a fresh event loop per test."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.errors import ModelLoadError, ModelNotFoundError
from service.metrics import ServiceMetrics
from service.repository import DirectoryCatalogue, FixedCatalogue, ModelRepository, VersionFile
from tests.service.conftest import make_settings


class Versions:
    """A catalogue whose versions a test adds, breaks and counts the loads of."""

    def __init__(self, detector) -> None:
        self.detector = detector
        self.models: dict[str, dict[int, VersionFile]] = {}
        self.loads: list[tuple[str, int]] = []

    def add(self, name: str, version: int, *, broken: bool = False, stamp: float = 0.0) -> None:
        def load():
            self.loads.append((name, version))
            if broken:
                raise RuntimeError(f"cannot read {name}/{version}/model.keras")
            return self.detector

        self.models.setdefault(name, {})[version] = VersionFile(load, stamp)

    def catalogue(self) -> FixedCatalogue:
        return FixedCatalogue(self.models)  # the same dict: later additions are seen


def repository_of(versions: Versions, default: str | None = None) -> ModelRepository:
    settings = make_settings(default_model=default, max_batch_size=2)
    return ModelRepository(settings, ServiceMetrics(), catalogue=versions.catalogue())


def states(repository: ModelRepository) -> dict[tuple[str, str], str]:
    return {(row["name"], row["version"]): row["state"] for row in repository.index()}


@pytest.fixture
def versions(oracle_detector) -> Versions:
    return Versions(oracle_detector)


def test_directory_catalogue_reads_tritons_layout(tmp_path: Path):
    for folder in ("face/1", "face/2", "face/latest", "shapes/3", "empty"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "face" / "2" / "model.keras").write_bytes(b"x")
    (tmp_path / "README.md").write_text("not a model")
    scanned = DirectoryCatalogue(tmp_path).scan()
    assert {name: sorted(found) for name, found in scanned.items()} == {
        "face": [1, 2], "shapes": [3],
    }  # fmt: skip
    assert scanned["face"][2].stamp > 0 and scanned["face"][1].stamp == 0.0  # no file yet


def test_each_model_serves_its_latest_version(versions):
    versions.add("a", 1)
    versions.add("a", 4)
    versions.add("b", 2)

    async def scenario():
        repository = repository_of(versions, default="b")
        await repository.start()
        try:
            return repository.ready, repository.route(None).name, repository.route("a").version
        finally:
            await repository.close()

    assert asyncio.run(scenario()) == (True, "b", "4")
    assert sorted(versions.loads) == [("a", 4), ("b", 2)]


def test_a_new_version_takes_over_and_the_old_is_released_once_idle(versions):
    versions.add("m", 1)

    async def scenario():
        repository = repository_of(versions)
        await repository.start()
        old = repository.route("m")
        old.enter()  # a request accepted by version 1, still running
        versions.add("m", 2)
        await repository.load("m")
        during = (repository.route("m").version, states(repository)[("m", "1")])
        with pytest.raises(ModelNotFoundError):
            repository.route("m", "1")  # new requests cannot reach the old version
        old.leave()
        for _ in range(200):
            if states(repository)[("m", "1")] == "UNAVAILABLE":
                break
            await asyncio.sleep(0.01)
        after = states(repository)
        await repository.close()
        return during, after

    during, after = asyncio.run(scenario())
    assert during == ("2", "UNLOADING")
    assert after == {("m", "1"): "UNAVAILABLE", ("m", "2"): "READY"}


def test_a_version_that_fails_to_load_leaves_the_serving_one_and_is_in_the_index(versions):
    versions.add("m", 1)

    async def scenario():
        repository = repository_of(versions)
        await repository.start()
        versions.add("m", 2, broken=True)
        with pytest.raises(ModelLoadError, match="version 2 failed to load"):
            await repository.load("m")
        serving = repository.route("m").version
        rows = {row["version"]: row for row in repository.index()}
        await repository.close()
        return serving, rows

    serving, rows = asyncio.run(scenario())
    assert serving == "1"
    assert rows["1"]["state"] == "READY"
    assert rows["2"]["state"] == "UNAVAILABLE"
    assert "cannot read m/2/model.keras" in rows["2"]["reason"]


def test_polling_retries_a_failed_version_only_when_its_file_changed(versions):
    versions.add("m", 1)

    async def scenario():
        repository = repository_of(versions)
        await repository.start()
        versions.add("m", 2, broken=True, stamp=1.0)
        await repository.poll_once()
        await repository.poll_once()  # same file: not tried again
        tries = versions.loads.count(("m", 2))
        versions.add("m", 2, stamp=2.0)  # the file was replaced by a good one
        await repository.poll_once()
        serving = repository.route("m").version
        await repository.close()
        return tries, serving

    assert asyncio.run(scenario()) == (1, "2")


def test_polling_loads_new_models_and_unloads_removed_ones(versions):
    versions.add("a", 1)
    versions.add("b", 1)

    async def scenario():
        repository = repository_of(versions, default="a")
        await repository.start()
        versions.add("c", 1)
        del versions.models["b"]
        await repository.poll_once()
        loaded = sorted(model.name for model in repository.loaded())
        await repository.close()
        return loaded, repository.ready

    assert asyncio.run(scenario()) == (["a", "c"], True)


def test_unloaded_model_is_not_routed_and_not_waited_for(versions):
    versions.add("a", 1)
    versions.add("b", 1)

    async def scenario():
        repository = repository_of(versions, default="a")
        await repository.start()
        await repository.unload("b")
        with pytest.raises(ModelNotFoundError, match="'b'"):
            repository.route("b")
        ready = repository.ready
        with pytest.raises(ModelNotFoundError):
            await repository.unload("zzz")
        await repository.close()
        return ready

    assert asyncio.run(scenario()) is True


def test_a_broken_model_other_than_the_default_does_not_stop_start_up(versions):
    versions.add("a", 1)
    versions.add("b", 1, broken=True)

    async def scenario():
        repository = repository_of(versions, default="a")
        await repository.start()
        result = (repository.ready, states(repository)[("b", "1")])
        await repository.close()
        return result

    assert asyncio.run(scenario()) == (True, "UNAVAILABLE")


def test_start_refuses_a_default_model_the_repository_does_not_have(versions):
    versions.add("a", 1)
    with pytest.raises(ModelNotFoundError, match="default model 'zzz'"):
        asyncio.run(repository_of(versions, default="zzz").start())
