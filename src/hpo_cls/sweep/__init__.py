"""Running a sweep on Ray Tune: ``preflight`` (checks before any training), ``cluster`` (connect Ray),
``tuner`` (searcher, scheduler and Tuner wiring), ``callbacks`` (MLflow runs and progress per trial),
``outcome`` (trial statuses and the final summary), ``ray_links`` (checkpoints by hard link), ``reuse`` (reused trial workers that lose no trial)."""
