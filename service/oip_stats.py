"""The statistics extension: per model version, the numbers the Prometheus metrics count.

`GET /v2/models[/{m}[/versions/{v}]]/stats` and the ModelStatistics rpc answer the same JSON
form (field names of the protocol). The tallies come from `ModelMetrics`, which the batcher
and every protocol's request path feed with the observations that also go to Prometheus:
success / fail are finished requests of every protocol (`ssd_requests`, one per request, its
end-to-end time), queue is the batcher queue wait (`ssd_queue_wait_seconds`), compute_infer
the forward passes (`ssd_inference_seconds`; count = images computed, the pass's time counted
once per image, as Triton counts it), batch_stats the passes by real batch size
(`ssd_batch_size`). compute_input / compute_output and the cache are not measured apart
(decoding runs before the queue): they are reported as zero.
"""

from __future__ import annotations

from typing import Any

from service.errors import ModelNotFoundError
from service.metrics import Duration
from service.repository import ModelRepository, ModelVersion

_ZERO = {"count": 0, "ns": 0}


def select_versions(
    repository: ModelRepository, name: str = "", version: str = ""
) -> list[ModelVersion]:
    """The loaded versions a statistics request names: all of them (no name), the serving
    version of `name`, or `name` at `version`.

    Raises:
        ModelNotFoundError: `name` (at `version`) is not loaded.
    """
    if not name:
        if version:
            raise ModelNotFoundError("a statistics request naming a version must name its model")
        return sorted(repository.loaded(), key=lambda model: model.name)
    return [repository.route(name, version or None)]


def statistics(models: list[ModelVersion]) -> dict[str, Any]:
    """The statistics response: `{"model_stats": [...]}`, one entry per version."""
    return {"model_stats": [version_statistics(model) for model in models]}


def version_statistics(model: ModelVersion) -> dict[str, Any]:
    """One version's `$model_stat` object."""
    stats = model.metrics.snapshot()
    return {
        "name": model.name,
        "version": model.version,
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(stats.success),
            "fail": _duration(stats.fail),
            "queue": _duration(stats.queue),
            "compute_input": dict(_ZERO),
            "compute_infer": _duration(stats.compute_infer),
            "compute_output": dict(_ZERO),
            "cache_hit": dict(_ZERO),
            "cache_miss": dict(_ZERO),
        },
        "response_stats": {},
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": dict(_ZERO),
                "compute_infer": _duration(passes),
                "compute_output": dict(_ZERO),
            }
            for size, passes in sorted(stats.batches.items())
        ],
        "memory_usage": [],
    }


def _duration(value: Duration) -> dict[str, int]:
    return {"count": value.count, "ns": value.ns}
