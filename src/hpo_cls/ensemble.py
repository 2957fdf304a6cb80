"""Where models registered before hpo-cls 0.2 find their code.

A registered ensemble is logged "from code": a script that runs ``from hpo_cls.ensemble import
EnsemblePyfunc``. The class now lives in :mod:`hpo_cls.promote.ensemble`; this name keeps every model
registered before the move loadable. New models import the new path.
"""

from hpo_cls.promote.ensemble import EnsemblePyfunc

__all__ = ["EnsemblePyfunc"]
