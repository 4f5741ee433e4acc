"""Which locations the review app serves: files under the roots only, never a way out of them."""

from __future__ import annotations

import pytest

from avalign.review.config import ReviewConfig, name_roots
from avalign.review.paths import PathRefused, locate, resolve_location


@pytest.fixture()
def roots(review_root):
    return name_roots([review_root])


def refused(roots, location: str) -> int:
    with pytest.raises(PathRefused) as info:
        resolve_location(roots, location)
    return info.value.status


def test_a_file_under_the_root_resolves(roots, review_root):
    assert resolve_location(roots, "var/data/media/src-0.mp4") == review_root / "data" / "media" / "src-0.mp4"
    # a symlink that stays inside the root is served as its target
    assert resolve_location(roots, "var/inside-link.mp4") == review_root / "data" / "media" / "src-0.mp4"


@pytest.mark.parametrize("location", [
    "var/../outside/secret.mp4",
    "var/data/../../outside/secret.mp4",
    "var/data/media/../../../../../etc/passwd",
    "var/data/./../data/media/src-0.mp4",  # '..' is refused even when it would stay inside
])
def test_dot_dot_is_forbidden(roots, location):
    assert refused(roots, location) == 403


@pytest.mark.parametrize("location", ["var//etc/passwd", "var/" + "/" * 3 + "etc/hostname"])
def test_absolute_paths_are_forbidden(roots, location):
    assert refused(roots, location) == 403


def test_symlinks_out_of_the_root_are_forbidden(roots):
    assert refused(roots, "var/escape.mp4") == 403
    assert refused(roots, "var/escape-dir/secret.mp4") == 403


def test_unknown_roots_missing_files_and_other_types_are_not_found(roots):
    assert refused(roots, "etc/passwd") == 404  # no root named etc
    assert refused(roots, "var/data/media/missing.mp4") == 404
    assert refused(roots, "var/data/media") == 404  # a folder is not a file
    assert refused(roots, "var/airflow/airflow.cfg") == 404  # secrets of the API server
    assert refused(roots, "var/airflow/simple_auth_manager_passwords.json.generated") == 404
    assert refused(roots, "var/.hidden.mp4") == 404


def test_nul_and_backslash_are_forbidden(roots):
    assert refused(roots, "var/data\x00.mp4") == 403
    assert refused(roots, "var/..\\outside\\secret.mp4") == 403


def test_locate_maps_paths_back_to_locations(roots, review_root, tmp_path):
    assert locate(roots, review_root / "data" / "media" / "src-0.mp4") == "var/data/media/src-0.mp4"
    assert locate(roots, str(review_root)) == "var"
    assert locate(roots, tmp_path / "elsewhere.mp4") is None
    assert locate(roots, review_root / "escape.mp4") is None  # resolved: it points outside
    assert locate(roots, "s3://bucket/key.mp4") is None
    assert locate(roots, None) is None


def test_roots_are_named_by_folder_and_made_unique(tmp_path):
    (tmp_path / "a" / "var").mkdir(parents=True)
    (tmp_path / "b" / "var").mkdir(parents=True)
    roots = name_roots([tmp_path / "a" / "var", tmp_path / "b" / "var"])
    assert list(roots) == ["var", "var-2"]


def test_config_from_env_defaults_to_var_and_reads_roots(tmp_path):
    cfg = ReviewConfig.from_env({"AVALIGN_VAR": str(tmp_path), "AVALIGN_REVIEW_MLFLOW_URI": "off"})
    assert cfg.roots == {tmp_path.name: tmp_path.resolve()}
    assert cfg.mlflow_tracking_uri is None
    two = ReviewConfig.from_env({"AVALIGN_REVIEW_ROOTS": f"{tmp_path}/x:{tmp_path}/y"})
    assert list(two.roots) == ["x", "y"]
    assert two.mlflow_tracking_uri.startswith("sqlite:///")
