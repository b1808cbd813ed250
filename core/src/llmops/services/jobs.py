"""A training job's row and the credential its process gets: the part of training jobs
that pipelines and experiment runs build on (training builds on both)."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy.orm import Session

from llmops.db.models import TrainingJob
from llmops.errors import NotFound
from llmops.services.api_keys import Role, create_api_key


def job_secret_env(*, session: Session, job_id: str) -> dict[str, SecretStr]:
    """A fresh token scoped to the job, minted when the job is handed to its tool (so it
    is never stored in clear, not even in the outbox); revoked when the job ends. It is
    also the credential of the job's tracker proxy (the ``token`` of its ``JobAccess``)."""
    _key, token = create_api_key(
        session=session, name=f"job {job_id}", role=Role.JOB, training_job_id=job_id
    )
    return {"LLMOPS_JOB_TOKEN": SecretStr(token)}


def get_job(*, session: Session, job_id: str) -> TrainingJob:
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise NotFound(f"no training job with id {job_id!r}", resource="training-job", id=job_id)
    return job
