from hpo_cls.cli import run

run()
