"""The package as it ships: built into an sdist and a wheel, installed into a fresh venv.

There is no Docker engine here, and the image only installs this wheel (see the
Dockerfile), so what this test runs is what the image runs: if a module, a static file
or an entry point were left out of the package, it fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from harness.server import free_port
from tests.conftest import READ_KEY, SHARE_KEYS, WRITE_KEY
from tests.support.golden import CASE_IDS, CASES, assert_matches, expected_of, replay_flags
from tests.support.logs import read_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _run(*cmd: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], check=True, capture_output=True, text=True, timeout=300, **kw
    )  # type: ignore[call-overload]


def _source_copy(dest: Path) -> Path:
    """The files a commit of this tree would hold (tracked or new, never ignored ones);
    outside a git checkout, the tree without the venv and caches."""
    if not (ROOT / ".git").exists():
        skip = shutil.ignore_patterns(
            ".venv", "*cache*", "__pycache__", ".hypothesis", "*.egg-info"
        )
        shutil.copytree(ROOT, dest, ignore=skip)
        return dest
    listed = _run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.stdout.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv outside the checkout with only the built wheel installed.

    Its dependencies come from the test venv through a `.pth` line (a plain path, so
    the checkout's editable install there is not activated): no network is needed, and
    nothing of ours can be imported except from the wheel.
    """
    base = tmp_path_factory.mktemp("package")
    src = _source_copy(base / "src")
    dist = base / "dist"
    # No flags: build makes the sdist, then the wheel from the unpacked sdist, so a
    # file missing from the sdist is missing from the wheel too.
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, src)
    assert len(list(dist.glob("*.tar.gz"))) == 1
    (wheel,) = dist.glob("*.whl")
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    purelib = _run(
        venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ).stdout.strip()
    (Path(purelib) / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv / "bin" / "python",
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        wheel,
    )
    yield venv


def _env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing points back at the checkout."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **extra}


def test_our_packages_import_from_the_wheel(installed: Path, tmp_path: Path):
    code = (
        "import billing, flows, ingest_api, programs, sdk, state, webhooks\n"
        "for m in (billing, flows, ingest_api, programs, sdk, state, webhooks):\n"
        "    print(m.__file__)\n"
    )
    files = _run(installed / "bin" / "python", "-c", code, cwd=tmp_path, env=_env())
    for line in files.stdout.split():
        assert line.startswith(str(installed)), line
    assert "usage: billing" in _run(installed / "bin" / "billing", "--help", env=_env()).stdout


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_installed_replay_matches_the_examples(installed: Path, tmp_path: Path, case: Path):
    expected = expected_of(case)
    out = tmp_path / "out.jsonl"
    _run(
        installed / "bin" / "billing",
        "replay",
        case.with_suffix(".jsonl"),
        "--output",
        out,
        *replay_flags(expected),
        cwd=tmp_path,
        env=_env(),
    )
    assert_matches(read_jsonl(out), expected)


def test_compose_commands_exist_in_the_installed_package(installed: Path, tmp_path: Path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    commands = []
    for service in compose["services"].values():
        for cmd in (service.get("command"), service.get("healthcheck", {}).get("test")):
            if cmd and cmd[0] == "CMD":
                cmd = cmd[1:]
            if cmd and cmd[0] == "billing":
                commands.append(cmd[1])
    assert {"serve", "flows", "flows-health", "webhooks"} <= set(commands)
    for sub in commands:
        _run(installed / "bin" / "billing", sub, "--help", cwd=tmp_path, env=_env())


def test_installed_serve_answers_readyz_and_serves_its_pages(
    installed: Path, tmp_path: Path, redis_url: str, prefix: str, redis_client: object
):
    port = free_port()
    env = _env(
        REDIS_URL=redis_url,
        BILLING_KEY_PREFIX=prefix,
        BILLING_API_KEYS=WRITE_KEY,
        BILLING_READ_KEYS=READ_KEY,
        BILLING_SHARE_KEYS=SHARE_KEYS,
    )
    cmd = [str(installed / "bin" / "billing"), "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr and proc.stderr.read()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "billing serve never became ready"
            time.sleep(0.2)
        # Package data: the dashboard and the vendored chart library ship in the wheel.
        page = httpx.get(f"{base}/dashboard", params={"key": READ_KEY}, timeout=5)
        assert page.status_code == 200 and "<html" in page.text.lower()
        chart = httpx.get(f"{base}/static/vendor/uplot-1.6.31/uPlot.iife.min.js", timeout=5)
        assert chart.status_code == 200 and "uPlot" in chart.text
    finally:
        proc.terminate()
        proc.wait(10)
