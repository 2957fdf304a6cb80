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
