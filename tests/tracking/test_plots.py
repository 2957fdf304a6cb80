"""Report figures: the sweep draws confusion matrices in its MLflow writer thread while the main thread
draws Optuna's plots with pyplot, so they must not go through pyplot's global figure list."""

import threading

import matplotlib.pyplot as plt

from hpo_cls.tracking.plots import confusion_matrix_figure


def test_confusion_matrix_is_drawn_off_pyplot_in_a_thread(tmp_path):
    before = plt.get_fignums()
    errors = []

    def draw(i):
        try:
            figure = confusion_matrix_figure([[5, 1], [2, 7]], ["cat", "dog"])
            figure.savefig(tmp_path / f"cm{i}.png", dpi=50)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    main_figure = plt.figure()  # pyplot busy in the main thread meanwhile
    for t in threads:
        t.join()
    plt.close(main_figure)
    assert not errors
    assert plt.get_fignums() == before  # nothing left for anyone to close
    assert all((tmp_path / f"cm{i}.png").read_bytes().startswith(b"\x89PNG") for i in range(4))


def test_plot_study_holds_the_alternative_each_trial_used():
    from types import SimpleNamespace

    import yaml

    from hpo_cls.spec import parse_spec
    from hpo_cls.sweep.study_plots import build_study

    spec = parse_spec(yaml.safe_load("""
name: t
search:
  space:
    optimizer: {choice: [adamw, sgd]}
    lr:
      - {loguniform: [1.0e-4, 1.0e-2], when: {optimizer: adamw}}
      - {loguniform: [0.01, 0.2], when: {optimizer: sgd}}
"""))
    trials = [SimpleNamespace(trial_id="a", best_score=0.5, config={"optimizer": "adamw", "lr": 1e-3}),
              SimpleNamespace(trial_id="b", best_score=0.6, config={"optimizer": "sgd", "lr": 0.05})]
    study = build_study(spec, trials)
    assert [t.params for t in study.trials] == [{"optimizer": "adamw", "lr|optimizer=adamw": 1e-3},
                                                {"optimizer": "sgd", "lr|optimizer=sgd": 0.05}]


def test_sweep_plots_rank_importances_by_ped_anova_without_importing_scikit_learn(tmp_path):
    """The PNG and the HTML report compute importances the same way; the plotting process never pays
    scikit-learn's import (Optuna's fANOVA would), and a later `import sklearn` still works."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys
        from types import SimpleNamespace
        import yaml
        from hpo_cls.spec import parse_spec
        from hpo_cls.sweep.study_plots import optuna_plots
        spec = parse_spec(yaml.safe_load('''
        name: t
        search:
          space:
            lr: {{loguniform: [1.0e-4, 1.0e-1]}}
            weight_decay: {{loguniform: [1.0e-6, 1.0e-2]}}
        '''))
        trials = [SimpleNamespace(trial_id=str(i), best_score=0.1 * i, status="completed", config={{"lr": 10 ** -(1 + i / 2),
                                  "weight_decay": 10 ** -(6 - (i % 3))}}) for i in range(8)]
        figures = optuna_plots(spec, trials)
        assert "sklearn" not in sys.modules, "scikit-learn was imported"
        figures["param_importances.png"].savefig(r"{tmp_path}/imp.png")
        title = figures["param_importances.png"].axes[0].get_title()
        import sklearn  # nothing left blocking it
        print(sorted(figures), title)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "param_importances.png" in result.stdout and "parallel_coordinate.png" not in result.stdout
    assert (tmp_path / "imp.png").read_bytes().startswith(b"\x89PNG")


def test_importances_leave_early_stopped_trials_out():
    """A trial stopped after an epoch says little of its parameters: the importances use finished trials."""
    from types import SimpleNamespace

    import yaml

    from hpo_cls.spec import parse_spec
    from hpo_cls.sweep.study_plots import build_study

    spec = parse_spec(yaml.safe_load("name: t\nsearch: {space: {lr: {loguniform: [1.0e-4, 1.0e-1]}}}"))
    trials = [SimpleNamespace(trial_id=str(i), best_score=0.1 * i, status="completed" if i < 3 else "early_stopped",
                              config={"lr": 10 ** -(1 + i / 4)}) for i in range(8)]
    assert len(build_study(spec, trials).trials) == 8
    assert [t.value for t in build_study(spec, trials, statuses=("completed",)).trials] == [0.0, 0.1, 0.2]
