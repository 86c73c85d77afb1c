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
    still make: "data", "tokenizer" and the models not in the cache. The data is rendered in memory for its hash (a
    few seconds), the same hash `build_data` keys the data by."""
    digest = content_hash(render(cfgs[0].data))
    tok_key = config_hash("micro_tokenizer", to_dict(cfgs[0].tokenizer), digest, world_code())
    cached = {"data": cache_root() / "micro_data" / digest, "tokenizer": cache_root() / "micro_tokenizer" / tok_key}
    shared = [name for name, path in cached.items() if not is_complete(path)]
    return [shared + [name for name in MODELS if not is_complete(model_artifacts(cfg, tok_key)[0][name])]
            for cfg in cfgs]
