"""What building a micro world would still train, without training it (the sweep's dry run).

Kept out of `build.py` and `data.py`: their code is part of every model's key (`build.world_code`), and asking what is
cached must not change what is cached."""
from __future__ import annotations

from ..cache import cache_root, config_hash, is_complete
from ..config import to_dict
from .build import MODELS, model_artifacts, world_code
from .config import MicroConfig
from .data import content_hash, render


def to_build(cfgs: list[MicroConfig]) -> list[list[str]]:
    """For each config (worlds that share data and tokenizer, as in `build.build_micro_worlds`), what a build would
    still make: the models not in the cache, and in the first config's list the "data" and "tokenizer" they share.
    The data is rendered in memory for its hash (a few seconds), the same hash `build_data` keys the data by; the
    tokenizer's key repeats `build.build_tokenizer`'s, because a helper there would change `world_code` and so every
    cached model's key (`tests/test_micro_build.py` checks the two agree)."""
    digest = content_hash(render(cfgs[0].data))
    tok_key = config_hash("micro_tokenizer", to_dict(cfgs[0].tokenizer), digest, world_code())
    cached = {"data": cache_root() / "micro_data" / digest, "tokenizer": cache_root() / "micro_tokenizer" / tok_key}
    shared = [name for name, path in cached.items() if not is_complete(path)]
    return [(shared if i == 0 else []) + [m for m in MODELS if not is_complete(model_artifacts(cfg, tok_key)[0][m])]
            for i, cfg in enumerate(cfgs)]
