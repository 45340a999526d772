"""Registration of the octave models in timm, so that ``timm.create_model("oct_resnet50")`` works.

Only names timm does not already have are registered: ``resnet50`` in timm stays timm's own model.
"""

from __future__ import annotations

from ._registry import create_model, list_models, model_entry

# timm looks up ``default_cfgs`` in the entry point's module to fill ``pretrained_cfg``.
default_cfgs: dict[str, dict] = {}
__all__: list[str] = []


def _entrypoint(name: str):
    def fn(pretrained=False, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None, **kwargs):
        # timm's own arguments: octzoo resolves weights itself and keeps its config on the model
        kwargs.pop("device", None)
        return create_model(name, pretrained=pretrained, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__module__ = __name__
    fn.__doc__ = f"octzoo's {name}, see ``octzoo.create_model``."
    return fn


def register_in_timm() -> list[str]:
    """Register every ``oct_`` model timm lacks; returns the names registered."""
    import timm
    from timm.models import register_model

    done = []
    for name in list_models("oct_*"):
        if timm.is_model(name):
            continue
        default_cfgs[name] = model_entry(name).pretrained_cfg
        fn = _entrypoint(name)
        globals()[name] = fn
        register_model(fn)
        done.append(name)
    return done
