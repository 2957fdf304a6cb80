import torch

from hpo_cls.package_versions import installed_version, torch_build


def test_versions_read_without_import_match_the_imported_packages():
    # A wheel's metadata may leave out the local build label that torch.__version__ carries (+cu130).
    assert installed_version("torch").split("+")[0] == torch.__version__.split("+")[0]
    assert torch.__version__ in torch_build()
    assert installed_version("hpo-cls-no-such-package") == "?"
