"""A network's parameter count is remembered per machine: the next sweep's pre-flight checks max_params
without importing torch, and a change to what builds the network counts it anew."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from hpo_cls.models import known_counts
from hpo_cls.models.classifier import count_parameters
from hpo_cls.spec import TrialConfig
from hpo_cls.sweep.preflight import ParameterBudget

CFG = TrialConfig(backbone="resnet18", attention="se", pretrained=False)


def test_a_count_made_once_is_read_back_by_a_process_that_never_imports_torch(tmp_path):
    expected = count_parameters(CFG, 7)
    script = textwrap.dedent("""
        import sys
        from hpo_cls.spec import TrialConfig
        from hpo_cls.sweep.preflight import ParameterBudget
        print(ParameterBudget(TrialConfig(backbone="resnet18", attention="se"), 7)({}), "torch" in sys.modules)
    """)
    env = {"PATH": "/usr/bin:/bin", "HPO_CLS_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
            for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-2000:]
    assert [r.stdout.split() for r in runs] == [[str(expected), "True"], [str(expected), "False"]]


def test_another_torch_or_model_code_counts_anew(tmp_path, monkeypatch):
    monkeypatch.setenv("HPO_CLS_CACHE_DIR", str(tmp_path))
    ParameterBudget(CFG, 7)(CFG)
    [key] = json.loads((tmp_path / known_counts.COUNTS_FILE).read_text())
    monkeypatch.setattr(known_counts, "_fingerprint", lambda: "another-build")
    assert known_counts.known_parameter_count(("resnet18",), 7) is None
    assert ParameterBudget(CFG, 7)(CFG) == count_parameters(CFG, 7)
    assert len(json.loads((tmp_path / known_counts.COUNTS_FILE).read_text())) == 2, f"kept {key} and added one"


def test_a_damaged_file_means_counting_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HPO_CLS_CACHE_DIR", str(tmp_path))
    (tmp_path / known_counts.COUNTS_FILE).write_text("{not json")
    assert ParameterBudget(CFG, 7)(CFG) == count_parameters(CFG, 7)
    assert list(json.loads((tmp_path / known_counts.COUNTS_FILE).read_text()).values()) == [count_parameters(CFG, 7)]
