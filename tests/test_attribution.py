"""Attribution maps: one interface for every captum method, checked against references and known results.

References used here: integrated-gradients completeness (Sundararajan et al. 2017), guided backprop's rule worked
by hand on a tiny ReLU6 network, the cascading randomisation test (Adebayo et al. 2018), and exact object masks
from the procedural ``shapes`` set.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tl_lab.inside.attribution import (
    Attribution,
    GuidedReLU6,
    explain,
    get_method,
    guided_copy,
    list_methods,
    register_method,
)
from tl_lab.inside.sanity import mask_scores, randomize_stage, sanity_check

# IG with a handful of steps (to keep tests cheap) rightly warns that it has not converged.
pytestmark = [pytest.mark.filterwarnings("ignore:integrated gradients has not converged"),
              pytest.mark.usefixtures("one_thread")]  # see conftest.one_thread

METHODS = ("saliency", "integrated_gradients", "grad_cam", "occlusion", "guided_backprop")
CHEAP = {"integrated_gradients": {"n_steps": 4}, "occlusion": {"window": 16, "stride": 16}}
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@contextmanager
def eval_mode(model: nn.Module):
    """Eval mode for a reference computation, then every module's mode as it was (lite0 is shared by the session)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode




@pytest.fixture(scope="module")
def images():
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=gen)


@pytest.fixture(scope="module")
def cat():
    from tl_lab.backbones.samples import sample_photo

    return sample_photo("cat").image()


@pytest.fixture(scope="module")
def cat_small(lite0, cat):
    """The cat photo as uint8 (1, 3, 112, 112): cheap enough for many-step IG on two shared cores."""
    x = lite0.make_transform(112)(cat)
    mean = torch.tensor(lite0.spec.mean).view(3, 1, 1)
    std = torch.tensor(lite0.spec.std).view(3, 1, 1)
    return ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)[None]


# ---- the registry and the interface ------------------------------------------------------------------------------


def test_registry_says_what_each_method_needs():
    infos = {m.name: m for m in list_methods()}
    assert tuple(infos) == METHODS
    assert [n for n, m in infos.items() if m.needs_layer] == ["grad_cam"]
    assert sorted(n for n, m in infos.items() if m.needs_baseline) == ["integrated_gradients", "occlusion"]
    assert len({m.display_name for m in infos.values()}) == len(infos)
    for m in infos.values():
        assert m.captum_class.__module__.startswith("captum.attr"), m
        assert m.compute.__name__ == f"_{m.name}"  # each method's function is declared in its one entry
        assert "20" in m.paper and m.description
    with pytest.raises(dataclasses.FrozenInstanceError):
        infos["saliency"].needs_layer = True
    with pytest.raises(ValueError, match="a method named 'saliency' is already registered"):
        register_method(infos["saliency"])


@pytest.mark.parametrize("module", ["attribution", "attribution_inputs", "guided", "sanity"])
def test_attribution_uses_captum_public_api_only(module):
    """No ``captum._utils`` / ``captum.<pkg>._private`` imports and no overridden private captum methods."""
    import ast
    import importlib

    source = Path(importlib.import_module(f"tl_lab.inside.{module}").__file__).read_text()
    tree = ast.parse(source)
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert [m for m in modules if m.startswith("captum") and any(p.startswith("_") for p in m.split("."))] == []
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("captum")
             for a in n.names]
    assert not [n for n in names if n.startswith("_")]
    methods = [f.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for f in c.body
               if isinstance(f, ast.FunctionDef)]
    assert "_register_hooks" not in methods and "_backward_hook" not in methods
    assert "captum._" not in source


def test_unknown_method_lists_the_valid_ones(lite0, images):
    with pytest.raises(ValueError, match="unknown attribution method 'gradcam'.*grad_cam.*guided_backprop"):
        explain("gradcam", lite0, images, 0)
    with pytest.raises(ValueError, match="saliency, integrated_gradients"):
        get_method("lime")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_input_sized_maps_for_a_batch(lite0, images, method):
    att = explain(method, lite0, images, [281, 7], **CHEAP.get(method, {}))
    assert att.method == method and att.display_name == get_method(method).display_name
    assert att.maps.shape == (2, 64, 64) and att.maps.dtype == np.float32
    assert np.isfinite(att.maps).all() and np.abs(att.maps).sum() > 0
    assert att.images.shape == (2, 64, 64, 3) and att.images.dtype == np.uint8
    np.testing.assert_array_equal(att.images, images.permute(0, 2, 3, 1).numpy())  # un-normalised exactly
    assert att.target == (281, 7) and att.target_names == ("tabby", "cock")
    assert att.layer == ("conv_head" if method == "grad_cam" else None)
    norm = att.normalized("abs")
    assert norm.shape == att.maps.shape and norm.min() >= 0 and norm.max() == 1.0


def test_noise_tunnel_wraps_a_method_reproducibly(lite0, images):
    plain = explain("saliency", lite0, images, 281)
    smooth = explain("saliency", lite0, images, 281, noise_tunnel=True, nt_samples=3)
    again = explain("saliency", lite0, images, 281, noise_tunnel=True, nt_samples=3)
    assert smooth.display_name == "Saliency (gradient) + SmoothGrad" and smooth.diagnostics["nt_samples"] == 3
    np.testing.assert_array_equal(smooth.maps, again.maps)  # seed=0 by default
    assert not np.allclose(smooth.maps, plain.maps)
    assert explain("saliency", lite0, images, 281, noise_tunnel=True, nt_samples=3, seed=1).maps.tolist() != \
        smooth.maps.tolist()
    cam = explain("grad_cam", lite0, images, 281, noise_tunnel=True, nt_samples=2)
    assert cam.maps.shape == (2, 64, 64)


def test_target_as_index_list_tensor_name_or_prediction(lite0, images):
    by_index = explain("saliency", lite0, images, 281)
    assert by_index.target == (281, 281)
    for target in ("tabby", "TABBY", [281, "tabby"], torch.tensor([281, 281])):
        att = explain("saliency", lite0, images, target)
        assert att.target == (281, 281)
        np.testing.assert_allclose(att.maps, by_index.maps, rtol=1e-5, atol=1e-8)
    assert explain("saliency", lite0, images, "tiger cat").target_names == ("tiger cat",) * 2
    predicted = explain("saliency", lite0, images)  # None: explain the model's own prediction
    assert predicted.target == tuple(predicted.diagnostics["predicted"].tolist())
    renamed = explain("saliency", lite0, images, "kitty", classes=[f"c{i}" for i in range(999)] + ["kitty"])
    assert renamed.target == (999, 999)


def test_bad_targets_say_what_to_do(lite0, images):
    with pytest.raises(ValueError, match="unknown class name 'tabby cat'; did you mean: 'tabby'"):
        explain("saliency", lite0, images, "tabby cat")
    with pytest.raises(ValueError, match="got 3 targets for 2 images"):
        explain("saliency", lite0, images, [1, 2, 3])
    with pytest.raises(ValueError, match="out of range: the model has 1000 classes"):
        explain("saliency", lite0, images, 1000)
    with pytest.raises(ValueError, match="pass classes="):
        explain("saliency", lite0.model, lite0.normalize(images), "tabby")


def test_layer_defaults_to_the_backbones_gradcam_stage_and_accepts_names_or_modules(lite0, images):
    from tl_lab.backbones.registry import load_backbone

    assert explain("grad_cam", lite0, images, 1).diagnostics["layer_shape"] == (1280, 2, 2)
    stage5 = explain("grad_cam", lite0, images, 1, layer="stage5")  # stride 16: a 4x4 map at 64 px
    assert stage5.layer == "stage5" and stage5.raw.shape == (2, 1, 4, 4) and stage5.maps.shape == (2, 64, 64)
    by_module = explain("grad_cam", lite0, images, 1, layer=lite0.model.stage5)
    np.testing.assert_allclose(by_module.maps, stage5.maps)
    resnet = load_backbone("resnet18", pretrained=False, num_classes=3)
    assert explain("grad_cam", resnet, images, 0).layer == "layer4"
    with pytest.raises(ValueError, match="unknown layer 'stage9'.*stem, stage1"):
        explain("grad_cam", lite0, images, 1, layer="stage9")


def test_options_a_method_would_ignore_are_refused(lite0, images):
    with pytest.raises(ValueError, match="saliency takes no layer; it is an option of: grad_cam"):
        explain("saliency", lite0, images, 1, layer="stage6")
    with pytest.raises(ValueError, match="grad_cam takes no baseline.*integrated_gradients, occlusion"):
        explain("grad_cam", lite0, images, 1, baseline="blur")
    with pytest.raises(ValueError, match="occlusion takes no n_steps"):
        explain("occlusion", lite0, images, 1, n_steps=10)
    with pytest.raises(ValueError, match="baseline must be 'black', 'blur' or a tensor"):
        explain("integrated_gradients", lite0, images, 1, baseline="white", n_steps=4)


def test_inputs_are_checked_with_the_fix_named(lite0, images):
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\].*pass backbone.model"):
        explain("saliency", lite0, lite0.normalize(images), 1)
    with pytest.raises(TypeError, match="pass a Backbone"):
        explain("saliency", lite0.model, images, 1)  # uint8 into a plain module
    floats = explain("saliency", lite0, images.float() / 255, 1)
    np.testing.assert_allclose(floats.maps, explain("saliency", lite0, images, 1).maps, rtol=1e-4, atol=1e-7)
    single = explain("saliency", lite0, images[0], 1)
    assert single.maps.shape == (1, 64, 64)


def test_model_mode_and_gradients_are_left_as_they_were(lite0, images):
    model = lite0.model
    original_modes = [(m, m.training) for m in model.modules()]  # lite0 is shared by the session: put it back
    original_req = [(p, p.requires_grad) for p in model.parameters()]
    model.train()
    model.stage1.eval()  # a mixed state, as a FreezePlan leaves it
    frozen = next(model.stem.parameters())
    frozen.requires_grad_(False)
    before_modes = [m.training for m in model.modules()]
    before_req = [p.requires_grad for p in model.parameters()]
    try:
        for method in ("saliency", "grad_cam", "guided_backprop", "integrated_gradients"):
            explain(method, lite0, images, 1, **CHEAP.get(method, {}))
        assert [m.training for m in model.modules()] == before_modes
        assert [p.requires_grad for p in model.parameters()] == before_req
        assert all(p.grad is None for p in model.parameters())
        # Dropout (p=0.2 in the head) would make maps random if the model were left in train mode.
        a, b = (explain("saliency", lite0, images, 1).maps for _ in range(2))
        np.testing.assert_array_equal(a, b)
    finally:
        for m, mode in original_modes:
            m.training = mode
        for p, req in original_req:
            p.requires_grad_(req)


def test_plain_module_with_float_inputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    x = torch.randn(3, 3, 16, 16)
    with pytest.raises(ValueError, match="no default Grad-CAM layer; pass layer=.*'0', '2'"):
        explain("grad_cam", net, x, 0)
    cam = explain("grad_cam", net, x, [0, 1, 2], layer="3")
    assert cam.maps.shape == (3, 16, 16) and cam.raw.shape == (3, 1, 8, 8) and cam.layer == "3"
    ig = explain("integrated_gradients", net, x, 0, n_steps=64)  # "black" = zeros for a plain module
    out = net(x)[:, 0] - net(torch.zeros_like(x))[:, 0]
    np.testing.assert_allclose(ig.diagnostics["output_difference"], out.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert cam.images.shape == (3, 16, 16, 3)


def test_grad_cam_on_vit_tokens_uses_the_patch_grid():
    """Grad-CAM on a transformer: patch tokens reshaped to a grid; the last block has no patch gradient."""
    from torchvision.models import VisionTransformer

    from tl_lab.backbones.registry import Backbone, get_spec
    from tl_lab.backbones.zoo import staged_vit

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                            num_classes=3)
    nn.init.normal_(vit.heads.head.weight, std=0.5)  # torchvision zero-initialises it: a constant output
    model = staged_vit(vit)
    spec = dataclasses.replace(get_spec("vit_b_16"), stages=model.stage_names, gradcam_layer="block2",
                               input_size=32, min_input_size=32, fixed_input_size=False)
    bb = Backbone("tiny_vit", model, spec.stages, "head", lambda im: im, 32, {"categories": None}, spec)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    cam = explain("grad_cam", bb, x, 1, layer="block1")
    assert cam.raw.shape == (2, 1, 4, 4) and cam.maps.shape == (2, 32, 32)
    assert "4x4 grid (class token dropped)" in cam.diagnostics["note"]
    with pytest.raises(ValueError, match="'block2' is zero everywhere.*use an earlier block"):
        explain("grad_cam", bb, x, 1, layer="block2")
    default = explain("grad_cam", bb, x, 1)  # the registered stage is the last block: moved one down, and said so
    assert default.layer == "block1" and "used 'block1'" in default.diagnostics["layer_note"]
    np.testing.assert_allclose(default.maps, cam.maps)


# ---- references ----------------------------------------------------------------------------------------------------


def test_guided_backprop_follows_the_rule_through_relu6():
    """Springenberg et al.'s rule, worked by hand: at each ReLU6 pass grad * [0 < z < 6], then keep only > 0."""
    torch.manual_seed(0)
    l1, l2 = nn.Linear(6, 5), nn.Linear(5, 3)
    net = nn.Sequential(nn.Flatten(), l1, nn.ReLU6(), l2)
    x = torch.randn(1, 1, 2, 3) * 3
    att = explain("guided_backprop", net, x, 2)
    z = l1(x.flatten(1))[0]
    g = l2.weight[2] * ((z > 0) & (z < 6))
    expected = (g.clamp(min=0) @ l1.weight).reshape(1, 1, 2, 3)
    np.testing.assert_allclose(att.raw, expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert att.diagnostics["guided_activations"] == {"ReLU6": 1}


class _GuidedReLU6Rule(torch.autograd.Function):
    """Reference guided backprop through ReLU6, written from the rule (no captum): max(g, 0) * [0 < x < 6]."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * ((x > 0) & (x < 6))


class _RuleReLU6(nn.Module):
    def forward(self, x):
        return _GuidedReLU6Rule.apply(x)


def _guided_reference(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """d score / d x with every nn.ReLU6 replaced by the rule above (a copy of the model, in eval mode)."""
    import copy

    ref = copy.deepcopy(model).eval()
    for name, m in list(ref.named_modules()):
        if isinstance(m, nn.ReLU6):
            parent, _, child = name.rpartition(".")
            setattr(ref.get_submodule(parent), child, _RuleReLU6())
    x = x.clone().requires_grad_()
    ref(x)[:, target].sum().backward()
    return x.grad


def test_guided_relu6_is_relu6_forward_and_guided_backward():
    x = torch.tensor([-2.0, 0.0, 0.5, 5.9, 6.0, 7.0], requires_grad=True)
    g = torch.tensor([1.0, 1.0, -1.0, 2.0, 1.0, 1.0])
    torch.testing.assert_close(GuidedReLU6()(x), nn.ReLU6()(x), rtol=0, atol=0)
    net, report = guided_copy(nn.Sequential(nn.ReLU6(), nn.ReLU(), nn.SiLU()))
    assert isinstance(net[0], GuidedReLU6)  # the copy is rewritten ...
    assert report["guided_activations"] == {"ReLU6": 1, "ReLU": 1} and report["unguided_activations"] == {"SiLU": 1}
    assert "1 other activations (SiLU) pass plain gradients" in report["note"]
    # plain autograd through the rewrite is ReLU6's gradient: g * [0 < x < 6] (captum adds the max(., 0))
    (grad,) = torch.autograd.grad(GuidedReLU6()(x), x, g)
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, -1.0, 2.0, 0.0, 0.0]))


def test_guided_backprop_matches_the_rule_on_a_mixed_relu_relu6_net():
    """ReLU and ReLU6 (one module used twice, as Lite0's blocks do) against the rule computed by hand."""
    torch.manual_seed(0)
    act6 = nn.ReLU6()
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 7), act6, nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 5), act6,
                        nn.Linear(5, 3))
    x = torch.randn(4, 1, 2, 4) * 4
    att = explain("guided_backprop", net, x, [0, 1, 2, 0])
    # by hand, layer by layer: z_i pre-activations, g the gradient flowing back, guided at each activation
    l1, l2, l3, l4 = net[1], net[3], net[5], net[7]
    with torch.no_grad():
        z1 = l1(x.flatten(1))
        z2 = l2(z1.clamp(0, 6))
        z3 = l3(z2.clamp(min=0))
        g = l4.weight[[0, 1, 2, 0]]
        g = g.clamp(min=0) * ((z3 > 0) & (z3 < 6))
        g = (g @ l3.weight).clamp(min=0) * (z2 > 0)
        g = (g @ l2.weight).clamp(min=0) * ((z1 > 0) & (z1 < 6))
        expected = (g @ l1.weight).reshape(x.shape)
    np.testing.assert_allclose(att.raw, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert att.diagnostics["guided_activations"] == {"ReLU6": 1, "ReLU": 1}
    assert all(type(m) is not GuidedReLU6 for m in net.modules())  # the caller's model is never rewritten


def test_guided_backprop_on_lite0_equals_the_rule_applied_by_hand(lite0, images):
    ours = explain("guided_backprop", lite0, images, 281)
    with eval_mode(lite0.model) as model:
        expected = _guided_reference(model, lite0.normalize(images), 281)
    np.testing.assert_allclose(ours.raw, expected.numpy(), rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
    assert all(type(m) is not GuidedReLU6 for m in lite0.model.modules())


def test_guided_backprop_on_lite0_is_not_the_plain_gradient(lite0, images):
    """captum hooks nn.ReLU only; Lite0's activations are all nn.ReLU6, so captum alone would give the gradient."""
    import warnings

    from captum.attr import GuidedBackprop, Saliency

    x = lite0.normalize(images)
    with warnings.catch_warnings(), eval_mode(lite0.model) as model:
        warnings.simplefilter("ignore")
        captum_gbp = GuidedBackprop(model).attribute(x.clone(), target=281)
        gradient = Saliency(model).attribute(x.clone(), target=281, abs=False)
    torch.testing.assert_close(captum_gbp, gradient)  # why tl_lab extends the hooks
    ours = explain("guided_backprop", lite0, images, 281)
    assert ours.diagnostics["guided_activations"] == {"ReLU6": 18}  # stem, 16 blocks, conv_head
    corr = np.corrcoef(ours.raw.ravel(), gradient.detach().numpy().ravel())[0, 1]
    assert corr < 0.8, corr


@pytest.mark.slow
def test_integrated_gradients_completeness(lite0, cat_small):
    """The map sums to f(x) - f(black) up to captum's delta, and the delta is small with enough steps."""
    att = explain("integrated_gradients", lite0, cat_small, "tabby", n_steps=64)
    with torch.no_grad(), eval_mode(lite0.model) as model:
        fx = model(lite0.normalize(cat_small))[0, 281]
        f0 = model(lite0.normalize(torch.zeros_like(cat_small)))[0, 281]
    diff, total = float(fx - f0), float(att.raw.sum())
    delta = float(att.diagnostics["convergence_delta"][0])
    print(f"IG 64 steps: f(x)-f(0) = {diff:.4f}, sum = {total:.4f}, delta = {delta:.4f} ({abs(delta / diff):.2%})")
    assert abs(total - diff) <= abs(delta) + 1e-3 * abs(diff)
    assert abs(delta) < 0.05 * abs(diff) and "warning" not in att.diagnostics
    assert att.diagnostics["n_steps"] == 64 and att.diagnostics["baseline"] == "black"
    np.testing.assert_allclose(att.maps.sum(), total, rtol=1e-4)  # channel-summed maps keep completeness


@pytest.mark.slow
def test_ig_delta_shrinks_with_steps_and_other_baselines_work(lite0, cat_small):
    with pytest.warns(UserWarning, match=r"has not converged.*raise n_steps \(now 4, try 16\)"):
        few = explain("integrated_gradients", lite0, cat_small, 281, n_steps=4)
    assert "raise n_steps" in few.diagnostics["warning"]
    many = explain("integrated_gradients", lite0, cat_small, 281, n_steps=64)
    assert abs(many.diagnostics["relative_delta"][0]) < abs(few.diagnostics["relative_delta"][0])
    blur = explain("integrated_gradients", lite0, cat_small, 281, n_steps=8, baseline="blur")
    grey = explain("integrated_gradients", lite0, cat_small, 281, n_steps=8,
                   baseline=torch.full((3, 112, 112), 128, dtype=torch.uint8))
    assert blur.diagnostics["baseline"] == "blur" and grey.diagnostics["baseline"] == "tensor"
    assert blur.diagnostics["output_difference"][0] != few.diagnostics["output_difference"][0]


def test_mask_scores_against_hand_computed_values():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 0, 0], maps[0, 3, 3], maps[0, 1, 1] = 3.0, 1.0, -5.0  # negative evidence is not counted
    maps[1, 2, 2] = 2.0
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    masks[1, :2, :] = True
    att = Attribution("saliency", "Saliency", maps, (0, 0))
    s = mask_scores(att, torch.from_numpy(masks))
    np.testing.assert_allclose(s["energy"], [0.75, 0.0])
    np.testing.assert_allclose(s["pointing"], [1.0, 0.0])
    np.testing.assert_allclose(s["area"], [0.25, 0.5])
    assert s["energy_mean"] == pytest.approx(0.375) and s["area_mean"] == pytest.approx(0.375) and s["n"] == 2
    uniform = mask_scores(Attribution("saliency", "Saliency", np.ones((2, 4, 4), np.float32), (0, 0)), masks)
    np.testing.assert_allclose(uniform["energy"], uniform["area"])  # a flat map scores exactly the chance level
    with pytest.raises(ValueError, match="masks must match the maps' shape"):
        mask_scores(att, masks[:, :2])


def test_normalized_clips_outliers_for_display():
    m = np.linspace(-1, 1, 1600, dtype=np.float32).reshape(1, 40, 40)
    m[0, 0, 0] = -50.0  # one extreme pixel
    att = Attribution("integrated_gradients", "IG", m, (0,))
    signed = att.normalized("signed")
    assert signed.min() == -1.0 and signed.max() == 1.0 and signed[0, 30, 0] > 0.45  # not crushed by the outlier
    assert np.isclose(signed[0, 30, 0], m[0, 30, 0] / np.percentile(np.abs(m), 99))
    pos = att.normalized("positive")
    assert pos.min() == 0.0 and pos[0, 0, 0] == 0.0 and pos.max() == 1.0
    assert np.all(Attribution("grad_cam", "Grad-CAM", np.zeros((1, 3, 3), np.float32), (0,)).normalized() == 0)
    with pytest.raises(ValueError, match="'abs', 'positive' or 'signed'"):
        att.normalized("minmax")


def test_randomize_stage_reinitialises_every_parameter(lite0):
    import copy

    stage = copy.deepcopy(lite0.model.stage7)
    before = [p.detach().clone() for p in stage.parameters()]
    randomize_stage(stage)
    assert all(not torch.equal(a, b) for a, b in zip(before, stage.parameters()) if a.numel() > 1)


def test_sanity_check_arguments_and_report(lite0, images):
    res = sanity_check(lite0, images[:1], "tabby", methods=("saliency",), stages=["stage7", "head"])
    assert res.stages == ("head", "stage7")  # always cascaded from the top, whatever the order given
    assert [r.randomized for r in res.records] == [("head",), ("head", "stage7")]
    assert res.records[0].maps.shape == (1, 64, 64) and -1 <= res.correlations("saliency")[0] < 1
    # Skipping conv_head leaves a pretrained layer above a random one; here its ReLU6s saturate, every gradient is
    # zero, and the constant map has no rank correlation: nan, which counts as "changed" (never flagged).
    final = res.final("saliency")
    assert np.isnan(final) or -1 <= final < 1
    assert res.flagged == () or final > 0.5
    assert "randomised to" in str(res) and "flagged" in str(res)
    with pytest.raises(ValueError, match="stages must be distinct names from stem"):
        sanity_check(lite0, images[:1], 1, stages=["layer4"])
    with pytest.raises(ValueError, match="options given for methods not in"):
        sanity_check(lite0, images[:1], 1, methods=("saliency",), options={"integrated_gradients": {"n_steps": 4}})
    with pytest.raises(TypeError, match="needs a Backbone"):
        sanity_check(lite0.model, lite0.normalize(images), 1)
    with pytest.raises(ValueError, match="was not randomised"):
        res.flagged_at("stem")


# ---- real images: pretrained Lite0 on the cat photo ------------------------------------------------------------


def test_grad_cam_on_the_cat_photo_picks_a_cat_class_and_is_not_flat(lite0, cat):
    att = explain("grad_cam", lite0, cat, None)  # PIL in: resized and cropped by the backbone's transform
    assert att.target[0] in CAT_CLASSES, att.target_names
    assert att.maps.shape == (1, 224, 224) and att.raw.shape == (1, 1, 7, 7)
    m = att.maps[0]
    print(f"Grad-CAM, cat photo: {att.target_names[0]} p={att.diagnostics['target_prob'][0]:.3f}, "
          f"max/mean {m.max() / m.mean():.2f}")
    assert m.max() / m.mean() > 1.5  # a flat map would be 1.0


def test_grad_cam_finds_the_cat_pasted_into_another_photo(lite0, cat):
    """The cat fills the whole crop of its own photo, so where it is gets tested on a collage: the cat in the
    bottom-right quadrant of the rocket photo. Grad-CAM for the top (cat) class must put most of its mass there
    (chance: 0.25), and Grad-CAM for the rocket's class must not (Grad-CAM is class-discriminative)."""
    from tl_lab.backbones.samples import sample_photo

    canvas = sample_photo("rocket").image().resize((224, 224))
    canvas.paste(cat.crop((67, 0, 333, 266)).resize((112, 112)), (112, 112))
    x = torch.from_numpy(np.array(canvas)).permute(2, 0, 1)[None]
    mask = torch.zeros(1, 224, 224, dtype=torch.bool)
    mask[0, 112:, 112:] = True
    cat_cam = explain("grad_cam", lite0, x, None)
    rocket_cam = explain("grad_cam", lite0, x, "missile")
    on_cat, on_rocket = mask_scores(cat_cam, mask), mask_scores(rocket_cam, mask)
    print(f"Grad-CAM, collage: top class {cat_cam.target_names[0]}: {on_cat['energy_mean']:.2f} of the mass on the "
          f"cat; 'missile': {on_rocket['energy_mean']:.2f} (area {on_cat['area_mean']:.2f})")
    assert cat_cam.target[0] in CAT_CLASSES, cat_cam.target_names
    assert on_cat["energy_mean"] > 0.6 and on_cat["pointing_mean"] == 1.0
    assert on_rocket["energy_mean"] < 0.3


@pytest.fixture(scope="module")
def photos(lite0):
    """Three shipped photos as uint8 (3, 3, 128, 128)."""
    from tl_lab.backbones.samples import sample_photo

    to_pixels = lite0.make_transform(128)
    mean = torch.tensor(lite0.spec.mean).view(3, 1, 1)
    std = torch.tensor(lite0.spec.std).view(3, 1, 1)
    x = torch.stack([to_pixels(sample_photo(n).image()) for n in ("cat", "coffee", "rocket")])
    return ((x * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)


@pytest.mark.slow
def test_sanity_check_weight_randomisation(lite0, photos):
    """Adebayo et al. 2018 on pretrained Lite0: gradient maps follow the weights; guided backprop mostly doesn't."""
    before = {k: v.clone() for k, v in lite0.model.state_dict().items()}
    res = sanity_check(lite0, photos, None, options={"integrated_gradients": {"n_steps": 4}})
    print("\n" + str(res))
    assert res.stages[0] == "head" and res.stages[-1] == "stem" and len(res.stages) == 10
    for method in ("saliency", "integrated_gradients", "grad_cam"):
        assert res.final(method) < 0.4, (method, res.correlations(method))  # measured 0.12, 0.22, 0.23
    for method in ("saliency", "integrated_gradients"):  # a random classifier already changes them a lot
        assert res.correlations(method)[0] < 0.6, (method, res.correlations(method))
    # Guided backprop barely notices a random classifier, or random top stages: it mostly shows image edges.
    gbp = res.correlations("guided_backprop")
    assert min(gbp[:3]) > 0.9, gbp
    assert "guided_backprop" in res.flagged_at("stage7") and "saliency" not in res.flagged_at("stage7")
    assert res.flagged == ()  # ... but once every stage is random, no method keeps its map (here)
    assert all(torch.equal(v, lite0.model.state_dict()[k]) for k, v in before.items())  # the original is untouched
    assert res.original["saliency"].target == explain("saliency", lite0, photos, None).target


# ---- attribution quality against object masks (shapes) ---------------------------------------------------------


@pytest.mark.slow
def test_fine_tuned_maps_fall_on_the_object(tmp_path):
    """Fine-tune Lite0 on shapes; Grad-CAM and IG put far more positive mass on the object than its area."""
    from tl_lab.data.datasets import load_dataset
    from tl_lab.training.freeze import FreezePlan
    from tl_lab.training.loop import fit

    data = load_dataset("shapes", shots=10, image_size=128, per_class=30)
    run = fit("efficientnet_lite0", data, plan=FreezePlan.fine_tune(), epochs=5, progress=False, run_dir=tmp_path)
    test = data.test
    n = 12
    scores = {}
    cases = (("grad_cam", {}), ("grad_cam", {"layer": "stage6"}), ("integrated_gradients", {"n_steps": 16}))
    for method, opts in cases:
        att = explain(method, run, test.images[:n], test.labels[:n], **opts)
        scores[method + opts.get("layer", "")] = s = mask_scores(att, test.masks[:n])
    print("test acc", run.best["test_acc"], {k: (round(v["energy_mean"], 3), round(v["pointing_mean"], 3))
                                            for k, v in scores.items()}, "area", round(s["area_mean"], 3))
    area = s["area_mean"]
    assert run.best["test_acc"] > 0.6
    assert scores["grad_cam"]["energy_mean"] > 1.5 * area
    assert scores["grad_camstage6"]["energy_mean"] > 2.0 * area
    assert scores["integrated_gradients"]["energy_mean"] > 1.5 * area
