"""Training one configuration, pure torch: ``optim`` (optimizers, LR schedules), ``engine`` (one epoch,
evaluation), ``run`` (a trial epoch by epoch, exact resume), ``checkpoint`` (save, load, bundles),
``standalone`` (``hpo-cls train``)."""
