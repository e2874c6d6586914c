"""runtime.users: the per-user loop resumes after a kill with the same files, shards merge into the
unsharded result, settings changes redo users, and the shard flags come from torchrun's environment."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from data.cli import run
from data.errors import InputError
from runtime import merge
from runtime.users import (DONE_FILE, MANIFEST_FILE, Shard, add_shard_arguments, resolve_shard, run_users,
                           shard_from_args, user_folder)

REPO_ROOT = Path(__file__).resolve().parent.parent
USERS = ["u1", "user/2", "u3", "u4", "u5"]     # "user/2" is no safe folder name


def work(user: str, folder: Path) -> dict:
    """A stand-in for per-user training: an adapter folder and the user's predictions."""
    (folder / "adapter").mkdir()
    (folder / "adapter" / "weights.txt").write_text(f"weights of {user}\n")
    return {f"{user}-q1": f"headline by {user}", f"{user}-q2": f"second by {user}"}


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (hidden ones too) with its bytes."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file()}


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("unsharded")
    run_users(root, USERS, work, key={"lr": 1e-4}, task="LaMP_4")
    return snapshot(root)


def test_one_run_writes_user_folders_markers_and_merged_predictions(unsharded):
    assert json.loads(unsharded[MANIFEST_FILE])["users"] == USERS
    assert unsharded["users/u1/adapter/weights.txt"] == b"weights of u1\n"
    odd = user_folder(Path("."), "user/2").name
    assert odd != "user/2" and odd.startswith("user_2-") and f"users/{odd}/{DONE_FILE}" in unsharded
    merged = json.loads(unsharded["predictions.json"])
    assert merged["task"] == "LaMP_4"
    assert [g["id"] for g in merged["golds"]] == [f"{u}-q{i}" for u in USERS for i in (1, 2)]
    assert not [name for name in unsharded if ".partial-" in name]


def test_an_exception_after_k_users_then_a_rerun_ends_with_the_same_files(tmp_path, unsharded):
    calls, failed = [], []

    def failing(user, folder):
        calls.append(user)
        if len(calls) == 3 and not failed:
            failed.append(user)
            (folder / "half-written.bin").write_bytes(b"\0")
            raise RuntimeError("out of memory")
        return work(user, folder)

    with pytest.raises(RuntimeError):
        run_users(tmp_path, USERS, failing, key={"lr": 1e-4}, task="LaMP_4")
    assert not (tmp_path / "predictions.json").exists()
    assert not user_folder(tmp_path, "u3").exists()          # the user in progress left nothing
    calls.clear()
    run_users(tmp_path, USERS, failing, key={"lr": 1e-4}, task="LaMP_4")
    assert calls == ["u3", "u4", "u5"]                        # finished users are skipped
    assert snapshot(tmp_path) == unsharded


WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_runtime_users import USERS, work
    from runtime.users import run_users

    def slow(user, folder):
        result = work(user, folder)
        (folder / "adapter" / "started").write_text("x")
        time.sleep(float(sys.argv[2]))
        (folder / "adapter" / "started").unlink()
        return result

    run_users(Path(sys.argv[1]), USERS, slow, key={{"lr": 1e-4}}, task="LaMP_4")
""")


def test_a_killed_process_resumes_to_the_same_files(tmp_path, unsharded):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    root = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, str(script), str(root), "0.5"], env=env, cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(root.glob(f"users/*/{DONE_FILE}"))) < 2:       # kill in the middle of the third user
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    while not list(root.glob("users/.*.partial-*/adapter/started")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(root.glob("users/.*.partial-*"))                  # a user was cut in the middle
    assert not (root / "predictions.json").exists()
    subprocess.run([sys.executable, str(script), str(root), "0"], env=env, cwd=REPO_ROOT, check=True,
                   capture_output=True)
    assert snapshot(root) == unsharded


def test_leftovers_of_a_kill_during_the_merge_are_removed_by_the_rerun(tmp_path, unsharded):
    run_users(tmp_path, USERS, work, key={"lr": 1e-4}, task="LaMP_4")
    (tmp_path / "predictions.json").unlink()                  # killed while writing it, after every user
    (tmp_path / ".predictions.json.x1y2.tmp").write_text('{"task": "LaMP_4", "go')
    (user_folder(tmp_path, "u4").parent / ".u4.partial-999").mkdir()     # and a copy cut by a kill
    run_users(tmp_path, USERS, work, key={"lr": 1e-4}, task="LaMP_4")
    assert snapshot(tmp_path) == unsharded


def test_two_shards_in_one_folder_merge_to_the_unsharded_run(tmp_path, unsharded):
    first = run_users(tmp_path, USERS, work, key={"lr": 1e-4}, shard=Shard(0, 2), task="LaMP_4")
    assert list(first) == ["u1", "u3", "u5"] and not (tmp_path / "predictions.json").exists()
    second = run_users(tmp_path, USERS, work, key={"lr": 1e-4}, shard=Shard(1, 2), task="LaMP_4")
    assert list(second) == ["user/2", "u4"]                   # the last shard to finish merges
    assert snapshot(tmp_path) == unsharded


def test_shards_in_their_own_folders_merge_with_the_cli(tmp_path, unsharded, capsys):
    for index in range(2):
        run_users(tmp_path / f"node{index}", USERS, work, key={"lr": 1e-4}, shard=Shard(index, 2), task="LaMP_4")
    assert run(merge.main, [str(tmp_path / "merged"), "--from", str(tmp_path / "node0")]) == 2
    assert "2 of 5 users are not done" in capsys.readouterr().err
    assert run(merge.main, [str(tmp_path / "merged"), "--from", str(tmp_path / "node0"),
                            str(tmp_path / "node1")]) == 0
    assert snapshot(tmp_path / "merged") == unsharded


def test_merge_cli_scores_against_golds(tmp_path, capsys):
    run_users(tmp_path, USERS, work, task="LaMP_4")
    golds = tmp_path / "golds.json"
    golds.write_text(json.dumps({"task": "LaMP_4", "golds": [
        {"id": f"{u}-q{i}", "output": f"headline by {u}" if i == 1 else "nothing alike"}
        for u in USERS for i in (1, 2)]}))
    assert run(merge.main, [str(tmp_path), "--golds", str(golds)]) == 0
    report = json.loads((tmp_path / "scores.json").read_text())
    assert report["num_examples"] == 10 and report["rouge-1"] == pytest.approx(0.5)   # half exact
    assert "LaMP_4 rouge-1:" in capsys.readouterr().out


def test_shards_disagreeing_on_the_run_do_not_merge(tmp_path, capsys):
    run_users(tmp_path / "a", USERS, work, key={"lr": 1e-4}, shard=Shard(0, 2), task="LaMP_4")
    run_users(tmp_path / "b", USERS, work, key={"lr": 2e-4}, shard=Shard(1, 2), task="LaMP_4")
    assert run(merge.main, [str(tmp_path / "m"), "--from", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "another run" in capsys.readouterr().err


def test_changed_settings_redo_users_and_same_settings_skip_them(tmp_path):
    calls = []

    def counted(user, folder):
        calls.append(user)
        return work(user, folder)

    run_users(tmp_path, USERS, counted, key={"lr": 1e-4})
    run_users(tmp_path, USERS, counted, key={"lr": 1e-4})
    assert calls == USERS
    run_users(tmp_path, USERS, counted, key={"lr": 2e-4})
    assert calls == USERS * 2
    assert not (tmp_path / "predictions.json").exists()       # no task: nothing to merge into predictions


def test_shard_comes_from_flags_then_torchrun_environment():
    assert resolve_shard(environ={}) == Shard(0, 1)
    assert resolve_shard(environ={"WORLD_SIZE": "4", "RANK": "3"}) == Shard(3, 4)
    assert resolve_shard(2, 1, environ={"WORLD_SIZE": "4", "RANK": "3"}) == Shard(1, 2)
    assert Shard(1, 2).users(USERS) == ["user/2", "u4"]
    for bad in ({"num_shards": 2, "shard_id": 2}, {"num_shards": 0}, {"environ": {"RANK": "x"}}):
        with pytest.raises(InputError):
            resolve_shard(**{"environ": {}, **bad})


def test_shard_flags_of_a_script_fall_back_to_torchrun(monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    add_shard_arguments(parser)
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    assert shard_from_args(parser.parse_args([])) == Shard(2, 3)
    assert shard_from_args(parser.parse_args(["--num_shards", "2", "--shard_id", "1"])) == Shard(1, 2)


def test_merge_cli_help():
    result = subprocess.run([sys.executable, "-m", "runtime.merge", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True)
    assert "--from" in result.stdout and "--golds" in result.stdout
