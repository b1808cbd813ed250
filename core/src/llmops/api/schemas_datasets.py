"""Request and response bodies of dataset versions, their diffs, and the lineage graph."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, field_validator

from llmops.api.schemas import REF_LENGTH, ApiModel, DatasetOut, Degradable, Input

TagName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:/-]+$")]
TagValue = Annotated[str, Field(max_length=256)]


class DatasetVersionCreate(Input):
    message: str = Field(default="", max_length=2000)
    tags: dict[TagName, TagValue] = Field(
        default_factory=dict,
        max_length=32,
        description="name -> value (names: letters, digits and ._:/-; values up to 256)",
    )
    pipeline_id: str | None = Field(
        default=None,
        max_length=REF_LENGTH,
        description="the pipeline whose stage makes the version (its LLMOPS_PIPELINE_ID): the "
        "lineage graph shows that the pipeline wrote it",
    )


class DatasetVersionOut(Degradable):
    id: str
    dataset_id: str
    number: int = Field(description="1, 2, 3, ... within the dataset")
    provider: str | None = Field(description="the versioning plugin that keeps it")
    external_id: str | None = Field(description="the tool's id of the version (a commit)")
    parent_id: str | None = Field(description="the version before it")
    restored_from_id: str | None = Field(
        default=None, description="for a restore: the version whose content it brought back"
    )
    message: str
    tags: dict[str, str] = Field(default_factory=dict)
    author: str | None = Field(description="the API key's name that made it")
    file_count: int
    size_bytes: int
    checksum: str | None
    status: str
    push_state: str | None = Field(
        default=None,
        description="pending, pushed or failed: its push to the tool's remote (null: the "
        "tool keeps no remote)",
    )
    push_operation_id: str | None = None
    pipeline_id: str | None = Field(default=None, description="the pipeline that wrote it")
    created_at: datetime

    @field_validator("tags", mode="before")
    @classmethod
    def _no_tags(cls, value: Any) -> Any:
        return {} if value is None else value


class UploadResult(Degradable):
    """What an upload wrote and, with a versioning plugin on, the version it made
    (``degraded`` when the version could not be made or pushed: the files stay)."""

    dataset: DatasetOut
    written: list[str]
    version: DatasetVersionOut | None = None


class RowChangeOut(ApiModel):
    kind: str = Field(description="added, removed or changed")
    key: Any = Field(default=None, description="the row's key value, when rows have a key")
    before: Any = Field(default=None, description="the row before (a JSON object, a CSV row)")
    after: Any = None
    before_line: int | None = Field(default=None, description="its row number before (1-based)")
    after_line: int | None = None


class RowDiffOut(ApiModel):
    format: str = Field(description="jsonl, csv or tsv")
    key: str | None = Field(description="the field rows were matched by (null: by content)")
    rows_before: int
    rows_after: int
    added: int
    removed: int
    changed: int
    unchanged: int
    changes: list[RowChangeOut] = Field(description="a page of the changes, in row order")
    total_changes: int
    offset: int
    limit: int
    has_more: bool
    invalid_before: int = Field(
        default=0, description="rows not readable as the format says (compared as text)"
    )
    invalid_after: int = 0
    columns_before: list[str] | None = Field(default=None, description="a CSV file's header")
    columns_after: list[str] | None = None
    notes: list[str] = Field(
        default_factory=list, description="a header change, a key column missing, ..."
    )


class FileDiffOut(ApiModel):
    path: str
    change: str = Field(description="added, removed or modified")
    size_before: int | None = None
    size_after: int | None = None
    rows: RowDiffOut | None = Field(
        default=None, description="for JSONL and CSV files: what changed row by row"
    )


class DatasetVersionDiffOut(ApiModel):
    dataset_id: str
    from_version: DatasetVersionOut = Field(description="the version compared against")
    to_version: DatasetVersionOut
    files: list[FileDiffOut]
    files_added: int
    files_removed: int
    files_modified: int


class DatasetVersionList(ApiModel):
    items: list[DatasetVersionOut]


class LineageNodeOut(ApiModel):
    id: str = Field(description="<kind>:<id>")
    kind: str
    entity_id: str
    label: str
    page: str | None = Field(default=None, description="its console page")


class LineageEdgeOut(ApiModel):
    source: str
    target: str
    relation: str


class LineageOut(ApiModel):
    root: str
    nodes: list[LineageNodeOut]
    edges: list[LineageEdgeOut]
    truncated: bool = Field(description="more nodes lie beyond the answer's limit")
