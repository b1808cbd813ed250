"""A Hugging Face Hub double: what a registry plugin meets on huggingface.co (or a mirror),
on 127.0.0.1, talked to with huggingface_hub unmodified through its endpoint setting
(``HfApi(endpoint=hub.url)``, ``snapshot_download(..., endpoint=hub.url)``); this package
does not import it::

    with running_hf_hub() as hub:
        sha = hub.add_repo("acme/tiny", {"config.json": "{}", "model.safetensors": data},
                           license="mit", pipeline_tag="text-generation")
        path = snapshot_download("acme/tiny", revision=sha, endpoint=hub.url,
                                 cache_dir=tmp, token=False)
        new = hub.push_commit("acme/tiny", {"config.json": '{"n_layer": 4}'})

Set ``HF_HUB_DISABLE_XET=1`` (or ``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``)
in the client: with ``hf_xet`` installed huggingface_hub uploads through Xet, which the
double does not model (its ``xet-write-token`` route is 404).

What is modelled
----------------
* Repos (models; datasets on the same routes with the ``datasets/`` prefix) as git keeps
  them (:mod:`.repo`): commits chained by parent with git's own ids (blob, tree and commit
  sha1s), ``main`` and other branches, tags, ``refs/pr/N``; a new repo starts with the
  Hub's ``initial commit`` (``.gitattributes``, by ``system``). A file is LFS as the Hub
  decides it (``.gitattributes`` patterns: ``*.safetensors``, ``*.bin``...; 10 MB or more;
  binary content); LFS objects live on disk under ``work_dir`` by sha256 and are streamed.
* The API: ``model_info``/``dataset_info`` at a revision (siblings; with ``blobs`` their
  size, ``blobId`` and ``lfs {sha256, size, pointerSize}``; ``cardData``, ``license``,
  ``tags``, ``pipeline_tag``, ``library_name`` read from the README's YAML front matter;
  ``config`` from config.json; ``safetensors`` parameter counts from the files' headers;
  ``expand``), search (``search``, ``author``, ``filter`` on tags, ``pipeline_tag``,
  ``gated``, ``sort``/``direction``, ``limit``, ``full``, ``cardData``, ``config``,
  ``expand``; pages through the ``Link`` header), the tree (``recursive``, ``expand`` with
  ``lastCommit``; 1000 entries a page, 50 expanded), ``paths-info``, refs (``include_prs``),
  commits (50 a page), branches and tags (create, delete), settings (visibility, gating),
  ``whoami-v2``, ``repos/create`` (409 when it exists), ``repos/delete``, ``validate-yaml``.
* Downloads: ``HEAD``/``GET /{repo}/resolve/{revision}/{path}``. A regular file answers
  200 with ``ETag`` (its git blob id), ``X-Repo-Commit`` and ``Content-Length``; an LFS
  file 302 to a signed URL on the storage host (:attr:`HfHubDouble.cdn_url`, another
  origin, so huggingface_hub drops the token there) with ``X-Linked-Etag`` (the sha256),
  ``X-Linked-Size`` and ``X-Repo-Commit``. Both hosts honour single ``Range`` requests
  (206, 416); bodies are sent from memory or straight from disk (``sendfile``).
* Uploads as ``upload_folder``/``create_commit`` make them: ``preupload`` (upload modes,
  ``shouldIgnore``, the remote oid of unchanged files), the LFS batch API (basic transfer:
  a signed PUT URL on the storage host, streamed to disk and checked against its sha256
  and size, then ``verify``), and the ndjson ``commit`` (``header``, ``file`` in base64,
  ``lfsFile``, ``deletedFile``, ``deletedFolder``; ``parentCommit`` checked, 412 when
  stale; regular files over 10 MB or binary refused as the Hub does); ``create_pr=1``
  opens ``refs/pr/N`` with the discussion number in ``pullRequestUrl``.
* Tokens (:meth:`~HfHubDouble.add_token`): a user and a role, read or write; users act in
  their namespace and in organisations (:meth:`~HfHubDouble.add_org`). Private repos are
  invisible to others (401 without a token, 404 with one, ``RepoNotFound``); an unknown
  token is 401 ``Invalid credentials in Authorization header`` on any route; writing needs
  a write token in the repo's namespace (403), a pull request any write token that can
  read the repo. Gated repos (:meth:`~HfHubDouble.grant_access`) show their metadata but
  serve files (but the card and ``.gitattributes``) to granted users only (``GatedRepo``).
* Errors as huggingface_hub reads them (:mod:`.errors`): ``{"error": ...}`` with
  ``X-Error-Message`` and ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
  ``EntryNotFound`` with ``X-Repo-Commit``, ``GatedRepo``), so it raises its own
  ``RepositoryNotFoundError``, ``RevisionNotFoundError``, ``RemoteEntryNotFoundError``,
  ``GatedRepoError``, ``HfHubHTTPError``.
* Test switches: :meth:`~HfHubDouble.down`/:meth:`~HfHubDouble.up` (both hosts, same
  ports, connections refused), :meth:`~HfHubDouble.rate_limit` (429 with ``Retry-After``
  and the ``RateLimit`` headers), :meth:`~HfHubDouble.fail`, :meth:`~HfHubDouble.slow`,
  :meth:`~HfHubDouble.interrupt` (a body cut mid-way), :meth:`~HfHubDouble.push_commit`,
  :meth:`~HfHubDouble.add_repo` (``unsafe_paths=True`` lets in names such as
  ``../evil.txt`` or ``a/../../evil``, listed and served verbatim, for traversal tests),
  the request log (:attr:`~HfHubDouble.requests`, tokens redacted), :meth:`~HfHubDouble.reset`
  and :meth:`~HfHubDouble.check_errors`.

What is not
-----------
Xet storage, multipart LFS uploads, the LFS batch API's ``download`` operation, git over
HTTP (clone, push), Spaces, discussions beyond a pull request's number, webhooks,
collections, inference, fine-grained tokens, OAuth, the security scanner (every file is
``safe``), download counters (``downloads`` is what :meth:`~HfHubDouble.add_repo` says),
the Hub's inference of ``pipeline_tag`` and ``library_name`` from the files (only the card
sets them), renamed repos (307), short commit shas as revisions. Timestamps have whole
seconds, as in git. A name served with ``unsafe_paths`` reaches the resolve route only if
the client sends it un-normalised.
"""

from __future__ import annotations

from llmops.testing.hf.double import HfHubDouble, HubRequest, TokenGrant, running_hf_hub
from llmops.testing.hf.errors import INVALID_CREDENTIALS, HubError
from llmops.testing.hf.repo import LFS_THRESHOLD, git_blob_id, lfs_pointer

__all__ = [
    "INVALID_CREDENTIALS",
    "LFS_THRESHOLD",
    "HfHubDouble",
    "HubError",
    "HubRequest",
    "TokenGrant",
    "git_blob_id",
    "lfs_pointer",
    "running_hf_hub",
]
