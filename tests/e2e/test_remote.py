"""Sharing results between clones through the repo's DVC remotes, run-cache included.

Repo A runs the pipeline once on a tiny archive, commits `dvc.lock` and the git-tracked results,
and pushes with `--run-cache` to the default remote (a directory in the home directory, here a
temporary one) and to the team remote (an S3 bucket on a moto server at 127.0.0.1). Fresh clones
with empty DVC caches then pull and `dvc repro`: DVC's own output must show that no stage ran,
and every output must equal A's byte for byte.
"""

import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from tests.support.project import (
    ALL_STAGES,
    copy_tiny_pipeline,
    dvc_result,
    module_result,
    run_dvc,
    run_in,
    stages_run,
)
from tools.pull import TamperedManifestError, check_manifests, files_not_fetched

TRAIN_STAGES = {"train@basic", "train@l1", "train@l2"}
BUCKET = "team-bucket"
# What DVC prints for a stage whose outputs are already there, or which it restores from the run-cache.
SKIPPED = re.compile(r"^Stage '([^']+)' didn't change, skipping$", re.MULTILINE)
RESTORED = re.compile(r"^Stage '([^']+)' is cached - skipping run, checking out outputs$", re.MULTILINE)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Iterator[Path]:
    """A temporary home directory for the `dvc` subprocesses, where the default remote `~/...` lives."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free port of 127.0.0.1 holding one empty bucket, and fake credentials."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        # The `dvc` subprocesses inherit these; no AWS profile or config of the user may leak in.
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    server.stop()


def _point_team_remote_at(repo: Path, endpoint: str) -> None:
    """What a teammate's `.dvc/config.local` holds: the committed placeholders replaced by the test bucket."""
    run_dvc(repo, "remote", "modify", "--local", "team", "url", f"s3://{BUCKET}/imdb-regularization")
    run_dvc(repo, "remote", "modify", "--local", "team", "endpointurl", endpoint)


@pytest.fixture(scope="module")
def repo_a(tmp_path_factory, home, s3_endpoint) -> Path:
    """The tiny pipeline run and committed with its results, pushed to both remotes with the run-cache."""
    repo = copy_tiny_pipeline(tmp_path_factory.mktemp("remote"), name="a")
    run_dvc(repo, "repro")
    run_in(repo, "git", "add", "dvc.lock", "metrics", "plots", "data/.gitignore", "models/.gitignore")
    run_in(repo, "git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "results")
    _point_team_remote_at(repo, s3_endpoint)
    for remote in ("storage", "team"):
        run_dvc(repo, "push", "--remote", remote, "--run-cache")
    return repo


def _fresh_clone(repo: Path, name: str, revision: str = "HEAD") -> Path:
    """A git clone of `repo` beside it at `revision`: code, params and git-tracked files, no DVC cache."""
    clone = repo.parent / name
    run_in(repo.parent, "git", "clone", "-q", str(repo), str(clone))
    run_in(clone, "git", "checkout", "-q", revision)
    assert not (clone / ".dvc" / "cache").exists()
    return clone


def _output_digests(repo: Path) -> dict[str, str]:
    """SHA-256 of every file the pipeline wrote, DVC-cached or git-tracked, by path in the repo."""
    return {
        path.relative_to(repo).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in ("data", "models", "metrics", "plots")
        for path in sorted((repo / folder).rglob("*"))
        if path.is_file() and path.name != ".gitignore"
    }


def _assert_same_results(clone: Path, repo_a: Path) -> None:
    for name in ("basic", "l1", "l2"):
        assert (clone / "metrics" / f"{name}.json").read_bytes() == (repo_a / "metrics" / f"{name}.json").read_bytes()
    assert _output_digests(clone) == _output_digests(repo_a)


def test_the_default_remote_is_a_directory_in_the_home_made_by_the_first_push(repo_a, home):
    storage = home / "dvc-storage" / "imdb-regularization"
    assert run_dvc(repo_a, "remote", "default").strip() == "storage"
    assert str(storage) in run_dvc(repo_a, "remote", "list")
    assert (storage / "files" / "md5").is_dir()
    assert sum(path.is_file() for path in (storage / "runs").rglob("*")) == len(ALL_STAGES - {"plots"})


def test_push_run_cache_fills_the_s3_bucket(repo_a, s3_endpoint):
    bucket = boto3.resource("s3", endpoint_url=s3_endpoint).Bucket(BUCKET)
    keys = [item.key for item in bucket.objects.filter(Prefix="imdb-regularization/")]
    assert any(key.startswith("imdb-regularization/files/md5/") for key in keys)
    # DVC keeps run-cache entries only for stages whose `cache: false` outputs are all metrics: not `plots`.
    entries = [key for key in keys if key.startswith("imdb-regularization/runs/")]
    assert len(entries) == len(ALL_STAGES - {"plots"})


@pytest.mark.parametrize("remote", ["storage", "team"])
def test_a_fresh_clone_pulls_every_result_and_repro_runs_nothing(repo_a, s3_endpoint, remote):
    clone = _fresh_clone(repo_a, f"clone-{remote}")
    if remote == "team":
        _point_team_remote_at(clone, s3_endpoint)
    run_dvc(clone, "pull", "--remote", remote, "--run-cache")
    output = run_dvc(clone, "repro")
    assert stages_run(output) == set()
    assert set(SKIPPED.findall(output)) == ALL_STAGES
    assert "Data and pipelines are up to date" in output
    _assert_same_results(clone, repo_a)


def test_without_a_committed_lock_repro_pull_restores_the_trainings_from_the_run_cache(repo_a, s3_endpoint):
    clone = _fresh_clone(repo_a, "clone-without-lock", revision="HEAD~1")
    assert not (clone / "dvc.lock").exists()
    _point_team_remote_at(clone, s3_endpoint)
    run_dvc(clone, "remote", "default", "--local", "team")
    output = run_dvc(clone, "repro", "--pull")
    assert set(RESTORED.findall(output)) == {"fetch", "encode"} | TRAIN_STAGES
    # Metrics and plots are git-tracked (`cache: false`), so the remote has no copy: those
    # cheap stages rerun, and no training does.
    assert stages_run(output) == ALL_STAGES - {"fetch", "encode"} - TRAIN_STAGES
    assert "stages.train" not in output
    _assert_same_results(clone, repo_a)


def _object_path(repo: Path, output: str, file_name: str) -> str:
    """Where the content of `<output>/<file_name>` lies in a DVC remote or cache: `files/md5/<2>/<30>`."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    directory_md5 = next(
        out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", []) if out["path"] == output
    )
    listing = (repo / ".dvc" / "cache" / "files" / "md5" / directory_md5[:2] / directory_md5[2:]).read_text()
    md5 = next(entry["md5"] for entry in json.loads(listing) if entry["relpath"] == file_name)
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def _corrupt(data: bytes) -> bytes:
    """The same length, a few bytes in the middle changed."""
    middle = len(data) // 2
    return data[:middle] + bytes(byte ^ 0xFF for byte in data[middle : middle + 4]) + data[middle + 4 :]


def test_a_corrupted_object_in_the_directory_remote_fails_pull_and_a_good_remote_repairs_it(repo_a, home):
    corrupted = home / "corrupted-storage"
    shutil.copytree(home / "dvc-storage" / "imdb-regularization", corrupted)
    damaged = corrupted / _object_path(repo_a, "models/l1", "weights.npz")
    damaged.chmod(0o644)
    damaged.write_bytes(_corrupt(damaged.read_bytes()))
    clone = _fresh_clone(repo_a, "clone-corrupted-directory")
    run_dvc(clone, "remote", "modify", "--local", "storage", "url", str(corrupted))

    result = dvc_result(clone, "pull")
    assert result.returncode != 0
    assert "models/l1" in result.stdout + result.stderr
    assert not (clone / "models" / "l1").exists()
    assert not any((clone / ".dvc" / "cache").rglob(damaged.name))
    # `tools.pull` names the file, not just its output.
    result = module_result(clone, "tools.pull")
    error_lines = [line for line in result.stderr.splitlines() if "not fetched intact" in line]
    assert result.returncode == 1, result.stderr
    assert len(error_lines) == 1 and "tools.pull: models/l1/weights.npz: not" in error_lines[0], result.stderr
    assert not (clone / "models" / "l1").exists()

    run_dvc(clone, "remote", "modify", "--local", "--unset", "storage", "url")
    run_dvc(clone, "pull")
    _assert_same_results(clone, repo_a)


def test_a_corrupted_object_in_the_s3_remote_fails_pull(repo_a, s3_endpoint):
    s3 = boto3.resource("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="corrupted-bucket")
    damaged_key = "imdb-regularization/" + _object_path(repo_a, "models/l2", "weights.npz")
    for item in s3.Bucket(BUCKET).objects.filter(Prefix="imdb-regularization/"):
        body = item.get()["Body"].read()
        s3.Object("corrupted-bucket", item.key).put(Body=_corrupt(body) if item.key == damaged_key else body)
    clone = _fresh_clone(repo_a, "clone-corrupted-s3")
    _point_team_remote_at(clone, s3_endpoint)
    run_dvc(clone, "remote", "modify", "--local", "team", "url", "s3://corrupted-bucket/imdb-regularization")

    result = dvc_result(clone, "pull", "--remote", "team")
    assert result.returncode != 0
    assert "models/l2" in result.stdout + result.stderr
    assert not (clone / "models" / "l2").exists()


def _manifest(repo: Path, output: str) -> tuple[str, list[dict[str, str]]]:
    """The md5 of `output`'s directory manifest in `repo`'s dvc.lock, and its entries from `repo`'s cache."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    md5 = next(
        out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", []) if out["path"] == output
    )
    return md5, json.loads((repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).read_text())


def test_a_rewritten_directory_manifest_is_delivered_by_dvc_pull_and_refused_by_tools_pull(repo_a, home):
    tampered = home / "tampered-storage"
    shutil.copytree(home / "dvc-storage" / "imdb-regularization", tampered)
    l1_md5, l1_entries = _manifest(repo_a, "models/l1")
    _, basic_entries = _manifest(repo_a, "models/basic")
    basic_md5s = {entry["relpath"]: entry["md5"] for entry in basic_entries}
    assert basic_md5s != {entry["relpath"]: entry["md5"] for entry in l1_entries}
    # l1's manifest keeps its name (the md5 of its true bytes) but lists basic's files.
    manifest = tampered / "files" / "md5" / l1_md5[:2] / l1_md5[2:]
    manifest.chmod(0o644)
    manifest.write_text(json.dumps([{**entry, "md5": basic_md5s[entry["relpath"]]} for entry in l1_entries]))

    # DVC's gap: with `verify = true` it drops the bad manifest from the cache, silently, then checks
    # out from the remote's copy, so basic's weights arrive as l1's.
    clone = _fresh_clone(repo_a, "clone-tampered-dvc-pull")
    run_dvc(clone, "remote", "modify", "--local", "storage", "url", str(tampered))
    assert dvc_result(clone, "pull").returncode == 0
    assert not (clone / ".dvc" / "cache" / "files" / "md5" / l1_md5[:2] / l1_md5[2:]).exists()
    weights = Path("models") / "l1" / "weights.npz"
    assert (clone / weights).read_bytes() == (repo_a / "models" / "basic" / "weights.npz").read_bytes()
    assert (clone / weights).read_bytes() != (repo_a / weights).read_bytes()

    clone = _fresh_clone(repo_a, "clone-tampered-tools-pull")
    run_dvc(clone, "remote", "modify", "--local", "storage", "url", str(tampered))
    result = module_result(clone, "tools.pull")
    error_lines = [line for line in result.stderr.splitlines() if "tools.pull" in line]
    assert result.returncode == 1, result.stderr
    assert len(error_lines) == 1 and "models/l1" in error_lines[0] and "'storage'" in error_lines[0], result.stderr
    assert not (clone / "models" / "l1").exists()
    assert not (clone / ".dvc" / "cache" / "files" / "md5" / l1_md5[:2] / l1_md5[2:]).exists()

    run_dvc(clone, "remote", "modify", "--local", "--unset", "storage", "url")
    result = module_result(clone, "tools.pull")
    assert result.returncode == 0, result.stderr
    _assert_same_results(clone, repo_a)


def test_tools_pull_deletes_a_bad_manifest_in_the_local_cache_and_names_its_output(tmp_path):
    good, bad = b'[{"md5": "1", "relpath": "a"}]', b'[{"md5": "2", "relpath": "a"}]'
    good_md5 = hashlib.md5(good).hexdigest() + ".dir"
    bad_name = hashlib.md5(good + b" ").hexdigest() + ".dir"
    for md5, data in ((good_md5, good), (bad_name, bad)):
        (tmp_path / md5[:2]).mkdir(exist_ok=True)
        (tmp_path / md5[:2] / md5[2:]).write_bytes(data)

    with pytest.raises(TamperedManifestError, match=r"models/l1 \(manifest \w+\.dir in the local cache") as error:
        check_manifests(tmp_path, {good_md5: "models/basic", bad_name: "models/l1"}, remote=None)
    assert "models/basic" not in str(error.value)
    assert not (tmp_path / bad_name[:2] / bad_name[2:]).exists()
    assert (tmp_path / good_md5[:2] / good_md5[2:]).read_bytes() == good


def test_tools_pull_names_the_files_whose_objects_the_fetch_did_not_bring(tmp_path):
    listing = b'[{"md5": "aa11", "relpath": "model.keras"}, {"md5": "bb22", "relpath": "weights.npz"}]'
    manifest = hashlib.md5(listing).hexdigest() + ".dir"
    for name, data in ((manifest, listing), ("aa11", b"model")):
        (tmp_path / name[:2]).mkdir(exist_ok=True)
        (tmp_path / name[:2] / name[2:]).write_bytes(data)
    not_cached = hashlib.md5(b"other").hexdigest() + ".dir"
    outputs = {manifest: "models/l1", not_cached: "models/l2"}
    assert files_not_fetched(tmp_path, outputs) == ["models/l1/weights.npz"]
