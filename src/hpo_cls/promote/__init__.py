"""From a finished sweep to a deliverable model: ``select`` (runs from MLflow) -> ``retrain`` (Ray
tasks) -> ``ensemble`` (soft vote) -> ``evaluate`` -> ``register`` (Model Registry) -> ``predict``;
``pipeline`` runs the steps in order."""
