"""AlignPartitionOperator: run the agent loop over one manifest partition."""

from __future__ import annotations

from typing import Any, Sequence

from airflow.sdk import BaseOperator


class AlignPartitionOperator(BaseOperator):
    """Align one partition (``avalign.tasks.align_partition``) and return its run summary (XCom).

    :param manifest_uri: the partition's manifest parquet (templated)
    :param output_uri: where ``runs/<run_id>/<partition>/`` is staged (templated)
    :param rebuild_id: storage run id; default the Airflow run id, path-safe (templated)
    :param triton_url: Triton gRPC host:port; empty starts a local tritonserver for the task
    :param config: ``AlignConfig`` overrides, e.g. ``{"max_cycles": 2}``
    """

    template_fields: Sequence[str] = ("manifest_uri", "output_uri", "rebuild_id", "triton_url")

    def __init__(self, *, manifest_uri: str, output_uri: str, rebuild_id: str | None = None,
                 triton_url: str = "", config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.manifest_uri = manifest_uri
        self.output_uri = output_uri
        self.rebuild_id = rebuild_id
        self.triton_url = triton_url
        self.config = dict(config or {})

    def execute(self, context: Any) -> dict[str, Any]:
        from avalign import tasks

        run_id = tasks.rebuild_id(str(context["run_id"]), self.rebuild_id)
        spec = tasks.resolve_spec({"dataset_uri": self.manifest_uri, "output_uri": self.output_uri,
                                   "rebuild_id": run_id, **self.config}, str(context["run_id"]))
        spec["triton_url"] = self.triton_url
        partition = self.manifest_uri.rstrip("/").rsplit("/", 1)[-1].removesuffix(".parquet")
        item = {"partition": partition, "manifest_uri": self.manifest_uri}
        return tasks.align_partition(item, spec, progress=self.log.info)
