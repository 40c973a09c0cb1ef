import pytest

from sapabench.core.errors import ConfigError, UnknownNameError
from sapabench.core.registry import Registry


@pytest.fixture()
def reg():
    r: Registry[dict] = Registry("recipe")

    @r.register("mixup", description="mixes images")
    def mixup(alpha: float = 1.0) -> dict:
        return {"alpha": alpha}

    @r.register("sgd")
    def sgd() -> dict:
        """Plain SGD.

        More text."""
        return {}

    @r.register("sam")
    def sam(rho: float = 0.05) -> dict:
        return {"rho": rho}

    return r


def test_list_uses_fnmatch_patterns(reg):
    assert reg.list() == ["mixup", "sam", "sgd"]
    assert reg.list("s*") == ["sam", "sgd"]
    assert reg.list("?am") == ["sam"]
    assert reg.list("nothing*") == []


def test_create_passes_options(reg):
    assert reg.create("sam", rho=0.1) == {"rho": 0.1}
    assert reg.create("mixup") == {"alpha": 1.0}


def test_description_defaults_to_first_docstring_line(reg):
    assert reg.entry("sgd").description == "Plain SGD."
    assert reg.entry("mixup").description == "mixes images"


def test_unknown_name_suggests_closest(reg):
    with pytest.raises(UnknownNameError, match=r"unknown recipe 'mixpu'; did you mean 'mixup'\?"):
        reg.create("mixpu")
    with pytest.raises(UnknownNameError, match="known: mixup, sam, sgd"):
        reg.entry("zzzzzz")


def test_unknown_option_is_a_config_error_listing_options(reg):
    with pytest.raises(ConfigError, match=r"recipe 'sam'.*rhoo.*options are: rho"):
        reg.create("sam", rhoo=0.1)


def test_duplicate_and_bad_names_are_refused(reg):
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("sgd")(lambda: {})
    with pytest.raises(ValueError):
        reg.register("has space")
