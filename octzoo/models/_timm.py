"""Registration of the octave models in timm, so that ``timm.create_model("oct_resnet50")`` works.

Only names timm does not already have are registered: ``resnet50`` in timm stays timm's own model.
"""

from __future__ import annotations

from ._pretrained import default_weight, list_pretrained, pretrained_weight
from ._registry import create_model, list_models, model_entry

# timm looks up ``default_cfgs`` in the entry point's module to fill ``pretrained_cfg``.
default_cfgs: dict[str, dict] = {}
# pretrained_cfg keys that point timm at weights elsewhere; octzoo takes a local file instead.
_REMOTE_SOURCES = ("url", "hf_hub_id", "hf_hub_filename")
__all__: list[str] = []


def _entrypoint(name: str):
    def fn(pretrained=False, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None, device=None, **kwargs):
        # timm passes the tag of "arch.tag" as pretrained_cfg (a str; a dict or PretrainedCfg when a caller passes
        # its own); octzoo finds and checks the weights itself
        if isinstance(pretrained_cfg, dict):
            tag = pretrained_cfg.get("tag")
        else:
            tag = pretrained_cfg if isinstance(pretrained_cfg, str) else getattr(pretrained_cfg, "tag", None)
        overlay = dict(pretrained_cfg_overlay or {})
        if remote := sorted(k for k in _REMOTE_SOURCES if overlay.get(k)):
            raise ValueError(
                f"pretrained_cfg_overlay {remote}: octzoo's published weights come from its own registry; to load "
                "other weights, pass pretrained_cfg_overlay=dict(file='path/to/weights') or checkpoint_path"
            )
        if pretrained and overlay.get("file"):
            pretrained = overlay["file"]  # the tag's architecture and preprocessing, the file's weights
        model = create_model(f"{name}.{tag}" if tag else name, pretrained=pretrained, cache_dir=cache_dir, **kwargs)
        model.pretrained_cfg.update(overlay)  # timm's overlay: its keys replace the cfg's
        return model if device is None else model.to(device)

    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = __name__
    fn.__doc__ = f"octzoo's {name}, see ``octzoo.create_model``."
    return fn


def _default_cfg(name: str):
    """timm's DefaultCfg: one pretrained cfg per published tag (the default weight first), or the untagged
    architecture config when nothing is published."""
    from collections import deque

    from timm.models import PretrainedCfg
    from timm.models._pretrained import DefaultCfg

    entry = model_entry(name)
    default = default_weight(name, entry.default_alpha)
    tags = [n for n in list_pretrained(f"{name}.*") if default is None or n != default.name]
    weights = [pretrained_weight(n) for n in ([default.name] if default else []) + tags]
    if not weights:
        return entry.pretrained_cfg
    cfgs = {}
    for w in weights:
        cfg = {**entry.pretrained_cfg, **w.pretrained_cfg()}  # the weight's own facts over the architecture's
        cfg = {k: v for k, v in cfg.items() if k in PretrainedCfg.__dataclass_fields__}
        cfgs[w.tag] = PretrainedCfg(**cfg)
    return DefaultCfg(tags=deque(cfgs), cfgs=cfgs, is_pretrained=True)


def register_in_timm() -> list[str]:
    """Register every ``oct_`` model timm lacks; returns the names registered.

    The modules with an eager CPU fast path (``OctConvNormAct``, the ResNets' parameter-free octave shortcuts)
    become timm's FX leaf modules: timm's FX feature extraction then calls them as eager code does (fast path,
    folded norms), so a traced model computes exactly what the model does.
    """
    import timm
    from timm.models import register_model, register_notrace_module

    from ..layers import OctConvNormAct
    from .resnet_blocks import ConvertAlpha, ShortcutA

    for module in (OctConvNormAct, ConvertAlpha, ShortcutA):
        register_notrace_module(module)

    done = []
    for name in list_models("oct_*"):
        if timm.is_model(name):
            continue
        default_cfgs[name] = _default_cfg(name)
        fn = _entrypoint(name)
        globals()[name] = fn
        register_model(fn)
        done.append(name)
    return done
