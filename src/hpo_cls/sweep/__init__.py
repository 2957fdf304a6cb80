"""Running a sweep on Ray Tune: ``preflight`` (checks before any training), ``cluster`` (connect Ray),
``tuner`` (searcher, scheduler and Tuner wiring), ``callbacks`` (MLflow runs and progress per trial),
``outcome`` (trial statuses and the final summary), ``reuse`` (reused trial workers that lose no trial)."""
