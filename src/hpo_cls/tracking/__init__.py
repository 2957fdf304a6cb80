"""MLflow tracking: the writer thread, the runs and their tags, sweep summaries and plots."""
