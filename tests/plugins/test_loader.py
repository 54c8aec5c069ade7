"""The plugin loader, in-process: what a module becomes, and why an unusable plugin is refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from service.config import Settings
from service.losses.plugins import PluginError, registry, snake_case

from . import sample_plugins
from .sample_plugins import Counted

S = "tests.plugins.sample_plugins:"
IMPORT = "cannot import 'tests.plugins.broken_import': RuntimeError: the plugin's own start-up check failed"
JSON_TYPES = "float, int, bool, str, a Literal, an Optional, or a list or tuple of them"


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["nosuch.module:Loss"],
         "plugin 'nosuch.module:Loss': cannot import 'nosuch.module': ModuleNotFoundError: No module named 'nosuch'"),
        (["tests.plugins.broken_import:X"], f"plugin 'tests.plugins.broken_import:X': {IMPORT}"),
        (["tests.plugins.sample_plugins"], "plugin 'tests.plugins.sample_plugins': expected 'module:attr'"),
        ([S + "Nope"], f"plugin '{S}Nope': 'tests.plugins.sample_plugins' has no attribute 'Nope'"),
        ([S + "NoDefault"], f"plugin '{S}NoDefault': __init__ parameter 'alpha' has no default; every "
                            "hyper-parameter needs one"),
        ([S + "StarArgs"], f"plugin '{S}StarArgs': __init__ takes *args; every parameter must be named"),
        ([S + "TensorParam"], f"plugin '{S}TensorParam': __init__ parameter 'weight': torch.Tensor | None is no "
                              f"JSON param ({JSON_TYPES})"),
        ([S + "NoneDefault"], f"plugin '{S}NoneDefault': __init__ parameter 'margin' has no annotation, and its "
                              "default None tells no type"),
        ([S + "WrongDefault"], f"plugin '{S}WrongDefault': __init__ parameter 'margin': the default 'wide' is no "
                               "valid value (input should be a valid number)"),
        ([S + "PrivateParam"], f"plugin '{S}PrivateParam': __init__ parameter '_cache' starts with '_'; params are "
                               "public names"),
        ([S + "NoRoles"], f"plugin '{S}NoRoles': forward takes no roles"),
        ([S + "OptionalFirst"], f"plugin '{S}OptionalFirst': forward's first role 'weight' is optional; it gives "
                                "the batch size"),
        ([S + "StarForward"], f"plugin '{S}StarForward': forward takes **extra; every parameter must be named"),
        ([S + "UnknownRole"], f"plugin '{S}UnknownRole': declares role 'weights', which forward does not take"),
        ([S + "WeightsWithoutReduction"], f"plugin '{S}WeightsWithoutReduction': mean_weights needs a module whose "
                                          "__init__ takes reduction"),
        ([S + "not_a_module"], f"plugin '{S}not_a_module': expected an nn.Module subclass, a Loss, or a list of "
                               "them; got the function not_a_module"),
        ([S + "AN_INSTANCE"], f"plugin '{S}AN_INSTANCE': expected an nn.Module subclass, a Loss, or a list of "
                              "them; got an instance of MSELoss (name the class: instances are made per params)"),
        ([S + "MSELoss"], f"plugin '{S}MSELoss': name 'mse_loss' is already in use by the built-in loss 'mse'"),
        (["examples.plugins.template:MyLoss", S + "SpelledLikeMyLoss"],
         f"plugin '{S}SpelledLikeMyLoss': name 'my-loss' is already in use by 'my_loss' of plugin "
         "'examples.plugins.template:MyLoss' (names are compared ignoring case, '_', '-' and 'loss')"),
    ],
)  # fmt: skip
def test_an_unusable_plugin_is_refused_with_its_name_and_the_reason(specs, message):
    with pytest.raises(PluginError) as err:
        registry(tuple(specs))
    assert str(err.value) == message


def test_the_perceptual_example_needs_its_network_setting(monkeypatch):
    monkeypatch.delenv("LOSS_SERVICE_PERCEPTUAL_NETWORK", raising=False)
    with pytest.raises(PluginError) as err:
        registry(("examples.plugins.perceptual:PerceptualLoss",))
    assert str(err.value) == (
        "plugin 'examples.plugins.perceptual:PerceptualLoss': cannot import 'examples.plugins.perceptual': "
        "RuntimeError: LOSS_SERVICE_PERCEPTUAL_NETWORK is not set (the path of the TorchScript feature network)"
    )


def test_the_setting_takes_comma_separated_names(monkeypatch):
    monkeypatch.setenv("LOSS_SERVICE_PLUGINS", " a.b:C, d:E ,")
    assert Settings().plugins == ["a.b:C", "d:E"]
    assert Settings(plugins=[]).plugins == []


@pytest.mark.parametrize(
    ("cls", "name"),
    [("MyLoss", "my_loss"), ("MSELoss", "mse_loss"), ("Focal2d", "focal2d"), ("SSIMLoss", "ssim_loss"),
     ("perceptual", "perceptual"), ("HTTPErrorRate", "http_error_rate")],
)  # fmt: skip
def test_names_are_the_class_name_in_snake_case(cls, name):
    assert snake_case(cls) == name


def test_the_same_plugin_named_twice_is_served_once():
    losses = registry((S + "Typed", S + "Typed"))
    assert len(losses) == len(registry()) + 1


def test_a_template_module_becomes_a_catalog_entry():
    loss = registry((S + "Typed",)).get("Typed")
    entry = (loss.name, loss.aliases, loss.category, loss.reference)
    assert entry == ("typed", ("Typed",), "custom", f"deployer plugin {S}Typed")
    assert loss.summary == "Every kind of hyper-parameter a template may take; forward uses each of them."
    roles = [(r.name, r.shape, r.kind, r.optional) for r in loss.roles]
    assert roles == [("predict", "(N, *)", "float", False), ("label", "(N, *)", "float", False)]
    assert (loss.decomposable, loss.reductions) == (False, ("mean",))
    assert loss.params.model_json_schema()["properties"] == {
        "scale": {"default": 1.0, "title": "Scale", "type": "number"},
        "power": {"default": 2, "title": "Power", "type": "integer"},
        "absolute": {"default": False, "title": "Absolute", "type": "boolean"},
        "mode": {"default": "sum", "enum": ["sum", "max"], "title": "Mode", "type": "string"},
        "offset": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None, "title": "Offset"},
        "weights": {"anyOf": [{"items": {"type": "number"}, "type": "array"}, {"type": "null"}], "default": None,
                    "title": "Weights"},
        "pair": {"default": [0.0, 1.0], "maxItems": 2, "minItems": 2,
                 "prefixItems": [{"type": "number"}, {"type": "number"}], "title": "Pair", "type": "array"},
        "floor": {"default": 0.0, "description": "added to every term", "minimum": 0, "title": "Floor",
                  "type": "number"},
        "untyped": {"default": 0.5, "title": "Untyped", "type": "number"},
    }  # fmt: skip


def test_torch_nn_losses_subclassed_are_decomposable_and_take_no_legacy_params():
    losses = registry((S + "MyMSE", S + "NoInit"))
    mse, no_init = losses.get("my_mse"), losses.get("no_init")
    assert (mse.decomposable, mse.reductions, list(mse.params.model_fields)) == (True, ("mean", "sum", "none"), [])
    assert (no_init.decomposable, list(no_init.params.model_fields)) == (False, [])
    x, y = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    assert torch.equal(mse.forward({"input": x, "target": y}, mse.params()), F.mse_loss(x, y, reduction="none"))


def test_instances_are_made_once_per_params_device_and_dtype():
    loss = registry((S + "Counted",)).get("counted")
    x32, y32 = torch.randn(2, 3), torch.randn(2, 3)
    x64, y64 = x32.double(), y32.double()
    before = Counted.made
    for _ in range(3):
        loss.forward({"input": x32, "target": y32}, loss.params())
        loss.forward({"input": x32, "target": y32}, loss.params(scale=2.0))
        loss.forward({"input": x64, "target": y64}, loss.params(scale=2.0))
    assert Counted.made - before == 3


def test_an_instance_made_in_inference_mode_serves_gradients():
    """The engine computes value-only requests in inference mode: the instance it makes then (and its
    buffers) must still serve a later request that wants a gradient."""
    loss = registry((S + "Counted",)).get("counted")
    params = loss.params(scale=3.0)
    x, y = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    with torch.inference_mode():
        loss.forward({"input": x, "target": y}, params)
    leaf = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss.forward({"input": leaf, "target": y}, params).sum(), [leaf])
    torch.testing.assert_close(grad, 6.0 * (x - y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "message"),
    [("rows_lost", "plugin rows_lost returned shape () with reduction='none'; expected 2 rows first"),
     ("not_scalar", "plugin not_scalar returned shape (2, 3); expected a scalar tensor")],
)  # fmt: skip
def test_a_module_that_breaks_its_contract_raises_at_compute(name, message):
    loss = registry((S + "RowsLost", S + "NotScalar")).get(name)
    with pytest.raises(ValueError) as err:
        loss.forward({"input": torch.randn(2, 3), "target": torch.randn(2, 3)}, loss.params())
    assert str(err.value) == message


def test_a_loss_object_is_served_as_it_is():
    assert registry((S + "CUBE_ERROR",)).get("cube_error") is sample_plugins.CUBE_ERROR


def test_a_param_may_be_named_like_a_pydantic_method():
    loss = registry((S + "ShadowingParam",)).get("shadowing_param")
    x, y = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 0.0]])
    assert loss.forward({"input": x, "target": y}, loss.params.model_validate({"json": True})).item() == 1.0
    assert loss.forward({"input": x, "target": y}, loss.params()).item() == 0.0


def test_a_forward_parameter_with_a_default_is_an_optional_role():
    loss = registry((S + "OptionalWeight",)).get("optional_weight")
    assert [(r.name, r.optional) for r in loss.roles] == [("input", False), ("target", False), ("weight", True)]
    x, y, w = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.5]])
    assert loss.forward({"input": x, "target": y}, loss.params()).tolist() == [[1.0, 4.0]]
    assert loss.forward({"input": x, "target": y, "weight": w}, loss.params()).tolist() == [[2.0, 2.0]]
