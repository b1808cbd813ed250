"""The shipped example, as `make run` has it: `llmops example train` against a platform
whose tracker is MLflow's embedded local store. The tiny GPT-2's loss falls in its MLflow
run, and the trained model is the run's ``model`` artifact when the job ends."""

from __future__ import annotations

import re

from click.testing import CliRunner

from llmops.cli import main as llmops_cli
from llmops.testing.console import running_platform
from llmops.testing.waiting import wait_for

API = "/llm-ops/v1"


def test_the_example_job_trains_into_an_mlflow_run_with_the_model_as_artifact() -> None:
    from mlflow.tracking import MlflowClient

    with running_platform(env={"LLMOPS_PLUGINS": "mlflow"}, console=False) as server:
        result = CliRunner().invoke(
            llmops_cli,
            [
                "example", "train", "--url", server.url, "--api-key", server.admin_key,
                "--steps", "30", "-p", "batch_size=8", "-p", "vocab_size=500",
                "--wait", "--timeout", "240",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        job_id = re.search(r"submitted training job (\w+)", result.output)[1]  # type: ignore[index]
        url = f"{API}/training/jobs/{job_id}/experiment-run"
        run = wait_for(
            lambda: (found := server.api.get(url).json())["status"] == "finished" and found,
            timeout=60,
            interval=0.5,
            what="the run to be finished",
        )

        assert run["provider"] == "mlflow"
        store = server.data_dir / "data" / "plugins" / "mlflow" / "mlflow.db"
        tracking = MlflowClient(tracking_uri=f"sqlite:///{store}")
        losses = [m.value for m in tracking.get_metric_history(run["externalId"], "loss")]
        assert len(losses) == 3
        assert losses[-1] < losses[0] - 0.5, losses
        mlflow_run = tracking.get_run(run["externalId"])
        assert mlflow_run.info.status == "FINISHED"
        assert mlflow_run.data.tags["llmops.training_job_id"] == job_id
        assert mlflow_run.data.tags["llmops.dataset"] == "tiny-gpt2-sample"
        model = {a.path for a in tracking.list_artifacts(run["externalId"], "model")}
        assert {"model/model.safetensors", "model/config.json"} <= model
