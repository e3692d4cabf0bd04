"""benchmarks/_results.py: every benchmark run leaves one JSON file with its figures and provenance."""

import importlib.util
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _results_module():
    spec = importlib.util.spec_from_file_location("_results", ROOT / "benchmarks" / "_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_run_writes_its_own_file_with_figures_and_provenance(tmp_path, capsys):
    results = _results_module()
    first = results.write_result("model_cost", {"256": {"lut": 26.6}}, params={"threads": 1}, out_dir=tmp_path)
    second = results.write_result("model_cost", {"256": {"lut": 27.0}}, out_dir=tmp_path)
    assert first != second and sorted(tmp_path.iterdir()) == sorted([first, second])
    record = json.loads(first.read_text())
    assert record["benchmark"] == "model_cost" and first.name.startswith("model_cost-")
    assert record["figures"] == {"256": {"lut": 26.6}} and record["params"] == {"threads": 1}
    assert len(record["commit"]) == 40 and record["machine"]["cpus"] >= 1
    assert record["command"]
    assert f"result: {first}" in capsys.readouterr().out


def test_results_folder_is_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", "benchmarks/results/model_cost-1.json"], cwd=ROOT)
    assert ignored.returncode == 0, "benchmark results must not show up in git status"
