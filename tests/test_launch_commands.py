"""launch.sh's small commands and refusals, without an engine: keys, settings it refuses in
one line, and where PyTorch's CPU builds come from when pip cannot find one."""

import os
import subprocess
import sys

from storage.keys import SECRET_PREFIX
from tests.harness import REPO, base_env

LAUNCH = str(REPO / "launch.sh")


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=REPO, env=base_env(**env), capture_output=True, text=True, timeout=300
    )


def test_keys_are_created_listed_and_revoked_through_launch_sh(tmp_path):
    data = str(tmp_path)
    created = run([LAUNCH, "keys", "create", "--name", "alice"], WORKBENCH_DATA_DIR=data)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith(SECRET_PREFIX)  # the key alone on stdout
    listed = run([LAUNCH, "keys", "list"], WORKBENCH_DATA_DIR=data)
    assert listed.stdout.splitlines()[0].split() == [
        "NAME",
        "ADMIN",
        "CREATED",
        "LAST",
        "USED",
        "REVOKED",
    ]
    assert listed.stdout.splitlines()[1].split()[:2] == ["alice", "no"]
    revoked = run([LAUNCH, "keys", "revoke", "alice"], WORKBENCH_DATA_DIR=data)
    assert (revoked.returncode, revoked.stdout) == (0, "Revoked key 'alice'.\n")
    again = run([LAUNCH, "keys", "revoke", "alice"], WORKBENCH_DATA_DIR=data)
    assert again.returncode == 1 and "no active key named 'alice'" in again.stderr


def test_a_tokenizer_path_without_tokenizer_json_is_refused_in_one_line(tmp_path):
    expected = (
        f"WORKBENCH_TOKENIZER_PATH: {tmp_path} has no tokenizer.json (it must name a "
        "folder holding the served model's tokenizer files)"
    )
    env = {
        "WORKBENCH_DATA_DIR": str(tmp_path),
        "WORKBENCH_PROFILE": "external",
        "WORKBENCH_UPSTREAM_URL": "http://127.0.0.1:9",
        "WORKBENCH_TOKENIZER_PATH": str(tmp_path),
    }
    launched = run([LAUNCH], **env)
    assert launched.returncode == 2
    assert launched.stderr.splitlines() == [f"launch.sh: error: {expected}"]
    for module in ("ui", "server"):
        direct = run([sys.executable, "-m", module], **env)
        assert direct.returncode == 1
        assert direct.stderr.splitlines() == [f"python -m {module}: error: {expected}"]


def _pip_install_through_launch_sh(tmp_path, requirement: str) -> subprocess.CompletedProcess:
    # pip as on a machine that has only PyPI's index (here: an empty one, so nothing is fetched).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", WORKBENCH_DATA_DIR=str(tmp_path))
    index = tmp_path / "index"
    index.mkdir()
    script = f'source {LAUNCH} && pip_install "$0" --no-deps --index-url "$1" "$2"'
    return subprocess.run(
        [
            "bash",
            "-c",
            script,
            str(REPO / ".venv" / "app" / "bin" / "pip"),
            index.as_uri(),
            requirement,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_torch_cpu_build_pip_cannot_find_is_explained_in_one_line(tmp_path):
    failed = _pip_install_through_launch_sh(tmp_path, "torch==2.13.0+cpu")
    assert failed.returncode == 1
    assert "No matching distribution found for torch==2.13.0+cpu" in failed.stderr
    assert failed.stderr.splitlines()[-1] == (
        "[launch] error: pip cannot find PyTorch's CPU build (PyPI does not serve it): run "
        "again with PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu"
    )


def test_other_missing_packages_get_pips_own_message_only(tmp_path):
    failed = _pip_install_through_launch_sh(tmp_path, "no-such-package-here==1.0")
    assert failed.returncode == 1
    assert "no-such-package-here" in failed.stderr and "PyTorch" not in failed.stderr
