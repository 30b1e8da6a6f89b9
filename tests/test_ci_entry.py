"""`.ci/run` runs exactly the README's test command (so the two cannot drift) and reports failures faithfully.

The behavioural tests run a copy of `.ci/run` inside a throw-away repository whose `python3` is a stub on PATH: the
stub's `venv` creates stub `.venv/bin/pip` and `.venv/bin/python` that log their arguments, so the test sees exactly
which commands CI would run, in which folder and with which environment, without installing anything.
"""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

README_TEST_COMMAND = (
    'python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0 -e ".[dev]" && '
    ".venv/bin/ruff check . && .venv/bin/ruff format --check . && "
    "HF_HUB_OFFLINE=1 .venv/bin/python -m pytest tests"
)
CI_RUN = REPO_ROOT / ".ci" / "run"

_STUB_PYTHON3 = r"""#!/usr/bin/env bash
# stub for `python3 -m venv .venv`: creates logging stand-ins for .venv/bin/{pip,python}
echo "python3 $* | cwd=$PWD" >> "$STUB_LOG"
[ "$1 $2 $3" = "-m venv .venv" ] || exit 97
mkdir -p .venv/bin
cat > .venv/bin/pip <<'PIP'
#!/usr/bin/env bash
echo "pip $* | cwd=$PWD" >> "$STUB_LOG"
exit "${STUB_PIP_EXIT:-0}"
PIP
cat > .venv/bin/ruff <<'RUFF'
#!/usr/bin/env bash
echo "ruff $* | cwd=$PWD" >> "$STUB_LOG"
exit "${STUB_RUFF_EXIT:-0}"
RUFF
cat > .venv/bin/python <<'PY'
#!/usr/bin/env bash
if [ "$1" = "-c" ]; then
    echo "versions-query | cwd=$PWD" >> "$STUB_LOG"
    echo "python 3.x | torch stub | transformers stub"
    exit 0
fi
echo "python $* | HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-unset} | cwd=$PWD" >> "$STUB_LOG"
exit "${STUB_PYTEST_EXIT:-0}"
PY
chmod +x .venv/bin/pip .venv/bin/ruff .venv/bin/python
"""


def _readme_text() -> str:
    readme = REPO_ROOT / "README.md"
    if not readme.exists():
        pytest.skip("README.md does not exist yet")
    return readme.read_text(encoding="utf-8")


def test_readme_contains_the_test_command_verbatim():
    assert README_TEST_COMMAND in _readme_text()


def test_ci_run_contains_the_test_command_as_a_full_line():
    lines = [line.strip() for line in CI_RUN.read_text(encoding="utf-8").splitlines()]
    assert lines.count(README_TEST_COMMAND) == 1


def test_ci_run_is_an_executable_strict_bash_script():
    text = CI_RUN.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert os.stat(CI_RUN).st_mode & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(CI_RUN)], check=True)


def _run_ci_in_fake_repo(tmp_path: Path, **stub_env: str) -> tuple[subprocess.CompletedProcess, list[str], Path]:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy2(CI_RUN, repo / ".ci" / "run")
    stub_bin = tmp_path / "bin"
    stub_bin.mkdir()
    (stub_bin / "python3").write_text(_STUB_PYTHON3)
    (stub_bin / "python3").chmod(0o755)
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{stub_bin}{os.pathsep}{os.environ['PATH']}",
        "STUB_LOG": str(log),
        "HOME": str(tmp_path),
        **stub_env,
    }
    # started from elsewhere: the script must move to its repository root itself
    result = subprocess.run(
        [str(repo / ".ci" / "run")], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls, repo


def test_ci_run_executes_the_command_from_the_repo_root_then_reports_versions(tmp_path):
    result, calls, repo = _run_ci_in_fake_repo(tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls == [
        f"python3 -m venv .venv | cwd={repo}",
        f"pip install -q torch==2.13.0 -e .[dev] | cwd={repo}",
        f"ruff check . | cwd={repo}",
        f"ruff format --check . | cwd={repo}",
        f"python -m pytest tests | HF_HUB_OFFLINE=1 | cwd={repo}",
        f"versions-query | cwd={repo}",
    ]
    assert "transformers stub" in result.stdout


@pytest.mark.parametrize("failing_stage", ["STUB_PYTEST_EXIT", "STUB_RUFF_EXIT", "STUB_PIP_EXIT"])
def test_ci_run_propagates_failures_and_still_reports_versions(tmp_path, failing_stage):
    result, calls, _ = _run_ci_in_fake_repo(tmp_path, **{failing_stage: "3"})
    assert result.returncode == 3
    assert calls[-1].startswith("versions-query")
    ran_ruff = any(call.startswith("ruff check") for call in calls)
    ran_pytest = any(call.startswith("python -m pytest") for call in calls)
    assert ran_ruff == (failing_stage != "STUB_PIP_EXIT")  # style checks run first, right after the install
    assert ran_pytest == (failing_stage == "STUB_PYTEST_EXIT")


def test_the_dev_extra_installs_the_ruff_the_ci_command_calls():
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    dev_extra = pyproject.split("\ndev = [", 1)[1].split("]", 1)[0]  # tomllib is 3.11+, the package supports 3.10
    assert '"ruff' in dev_extra
    assert ".venv/bin/ruff check ." in README_TEST_COMMAND
