"""bench/: every benchmark runs as a file and as a module, ends with one JSON line holding its ratio, and
bench.collect (bash bench/run_all.sh) turns their last lines into bench/results.md, failures included."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import collect
from bench.collect import BENCHMARKS, Benchmark

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(path.stem for path in (REPO_ROOT / "bench").glob("bench_*.py"))


def test_run_all_knows_every_benchmark_script():
    assert sorted(benchmark.name for benchmark in BENCHMARKS) == SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_runs_as_a_file_and_as_a_module_and_has_quick(name):
    for command in ([f"bench/{name}.py"], ["-m", f"bench.{name}"]):
        done = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
        assert "--quick" in done.stdout


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def run_module(name: str, *argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"bench.{name}", *map(str, argv)], capture_output=True,
                          text=True, cwd=REPO_ROOT)


def test_dense_benchmark_ranks_alike_and_reports_its_ratios():
    done = run_module("bench_dense", "--questions", 40, "--profile_size", 30, "--questions_per_profile", 4,
                      "--dim", 8, "--sample_questions", 3)
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert result["search_k4_orders_beyond_rounding"] == 0 and result["sample_orders_torch_equal_faiss"] == 3
    assert result["speedup"] > 0 and result["search_k4_faiss_over_torch"] > 0


def test_kmeans_benchmark_json_has_its_ratio():
    done = run_module("bench_kmeans", "--num_points", 200, "--dim", 8, "--num_clusters", 10, "--iterations", 1)
    assert done.returncode == 0, done.stderr
    assert last_json(done.stdout)["speedup"] > 0


def test_quick_sets_defaults_but_explicit_options_win():
    from bench.bench_kmeans import make_parser
    from bench.quick import parse_bench_args

    assert parse_bench_args(make_parser(), ["--quick"]).num_points == 5000
    assert parse_bench_args(make_parser(), ["--quick", "--num_points", "50"]).num_points == 50
    assert parse_bench_args(make_parser(), []).num_points == 10000


# ----------------------------------------------------------------------------- collection (run_all.sh)

def fake(tmp_path: Path, name: str, body: str, ratio_key: str = "speedup") -> Benchmark:
    """A benchmark script that counts its runs in <name>.runs and then runs ``body``."""
    script = tmp_path / f"{name}.py"
    script.write_text(f"from pathlib import Path\nimport json, sys\n"
                      f"counter = Path({str(tmp_path / (name + '.runs'))!r})\n"
                      f"counter.write_text(str(int(counter.read_text()) + 1 if counter.exists() else 1))\n{body}\n")
    return Benchmark(name, f"fake {name}", ratio_key, "fast / slow", ("fast", "slow"), script=str(script))


def runs(tmp_path: Path, name: str) -> int:
    return int((tmp_path / f"{name}.runs").read_text())


def test_collect_reports_a_failing_benchmark_and_still_runs_the_others(tmp_path, capsys):
    benchmarks = [
        fake(tmp_path, "first", 'print("figures"); print(json.dumps({"fast": 10.0, "slow": 4, "speedup": 2.5}))'),
        fake(tmp_path, "broken", 'print("half way"); sys.stderr.write("Traceback\\nValueError: boom\\n"); sys.exit(3)'),
        fake(tmp_path, "silent", 'print("no json here")'),
        fake(tmp_path, "last", 'print(json.dumps({"fast": 1, "time_ratio": 1.2}))', ratio_key="time_ratio"),
    ]
    output, logs = tmp_path / "out" / "results.md", tmp_path / "logs"
    assert collect.main(["--output", str(output), "--log_dir", str(logs)], benchmarks=benchmarks) == 1
    text = output.read_text()
    rows = {line.split(":", 1)[0].strip("| "): line for line in text.splitlines() if line.startswith("| ") and ":" in line}
    assert "**2.5** (fast / slow)" in rows["first"] and "fast 10, slow 4" in rows["first"] and "| ok," in rows["first"]
    assert "FAILED: exit 3: ValueError: boom" in rows["broken"]
    assert "FAILED: no JSON object on its last line" in rows["silent"]
    assert "**1.2**" in rows["last"] and "| ok," in rows["last"]          # ran after the failures
    assert "2 of 4 benchmarks finished; failed: broken, silent." in text
    assert '`{"fast": 10.0, "slow": 4, "speedup": 2.5}`' in text            # last lines verbatim
    assert "cores" in text and "Load average" in text and "git commit" in text
    assert "ValueError: boom" in (logs / "broken.log").read_text()
    assert json.loads(collect.config_path(output).read_text())["output"] == str(output)
    assert not [path for path in output.parent.iterdir() if path.name not in ("results.md", "results.md.config.json")]
    assert "2 of 4 benchmarks finished" in capsys.readouterr().out

    # Rerun: finished benchmarks of the same command and commit are reused, failed ones run again.
    assert collect.main(["--output", str(output), "--log_dir", str(logs)], benchmarks=benchmarks) == 1
    assert [runs(tmp_path, name) for name in ("first", "broken", "silent", "last")] == [1, 2, 2, 1]
    assert "(reused)" in output.read_text()
    assert collect.main(["--output", str(output), "--log_dir", str(logs), "--rerun"], benchmarks=benchmarks) == 1
    assert runs(tmp_path, "first") == 2


def test_collect_reports_a_benchmark_over_its_timeout(tmp_path):
    benchmarks = [fake(tmp_path, "slow", "import time; time.sleep(30)"),
                  fake(tmp_path, "quick", 'print(json.dumps({"speedup": 3}))')]
    output = tmp_path / "results.md"
    assert collect.main(["--output", str(output), "--log_dir", str(tmp_path / "logs"), "--timeout", "2"],
                        benchmarks=benchmarks) == 1
    text = output.read_text()
    assert "FAILED: timed out after 2 s" in text and "**3**" in text


def test_collect_bad_option_is_one_line(tmp_path, capsys):
    from data.cli import run

    assert run(collect.main, ["--only", "bench_nothing", "--output", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and not (tmp_path / "r.md").exists()
