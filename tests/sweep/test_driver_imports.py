"""A sweep's driver only hands work to trial processes: once this machine has counted its networks, measured
their speed and decoded its images, everything it does before the first trial starts leaves torch unimported
(2-4 s of CPU, on the cores the first trials' workers need to start)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

DRIVER_BEFORE_TRIALS = textwrap.dedent("""
    import sys
    from pathlib import Path
    from hpo_cls.spec import load_spec
    from hpo_cls.sweep.preflight import checked
    from hpo_cls.data.prepare import prepare_shared_cache
    from hpo_cls.sweep.estimate import estimate_for
    from hpo_cls.sweep.experiment import resolve_trainable, versions
    import hpo_cls.sweep.tuner

    spec = load_spec(Path(sys.argv[1]))
    result = checked(spec, check_tracking=True)
    prepare_shared_cache(spec.data, spec.fixed)
    estimate, lines = estimate_for(spec, result, None, 1)
    resolve_trainable(spec.trainable)
    versions()
    print(estimate is not None, "torch" in sys.modules)
""")


def test_a_repeated_sweeps_driver_starts_its_trials_without_importing_torch(tiny_spec, tmp_path, monkeypatch):
    spec = tiny_spec(tracking={"uri": f"sqlite:///{tmp_path}/mlflow.db"},
                     search={"sampler": "random", "space": {"backbone": {"choice": ["resnet18", "resnet34"]}}})
    monkeypatch.setenv("HPO_CLS_CACHE_DIR", str(tmp_path / "cache"))  # this machine's, as new
    runs = [subprocess.run([sys.executable, "-c", DRIVER_BEFORE_TRIALS, str(spec)], capture_output=True, text=True,
                           timeout=300, cwd=tmp_path) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr[-3000:]
    first, again = (r.stdout.split() for r in runs)
    assert first == ["True", "True"], "the first sweep on this machine counts, measures and decodes with torch"
    assert again == ["True", "False"]
