"""Make tiktoken and litellm work with no network.

litellm ships the cl100k_base and o200k_base vocabularies and a local copy of its model map.
Pointing ``TIKTOKEN_CACHE_DIR`` at those files and setting ``LITELLM_LOCAL_MODEL_COST_MAP``
before either library loads means no process ever waits on a download. Operators who set either
variable keep their value. This is the only module that writes to ``os.environ``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

from tokenwindow.settings import Settings, get_settings


def litellm_tokenizer_dir() -> Path:
    """Where litellm keeps its bundled tiktoken files, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("litellm is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "litellm_core_utils" / "tokenizers"


def offline_environment(settings: Settings) -> dict[str, str]:
    """The variables tiktoken and litellm read (at import or first load) to stay offline."""
    cache_dir = str(settings.tiktoken_cache_dir or litellm_tokenizer_dir())
    return {
        "TIKTOKEN_CACHE_DIR": cache_dir,
        # litellm overwrites TIKTOKEN_CACHE_DIR on import unless this one is set.
        "CUSTOM_TIKTOKEN_CACHE_DIR": cache_dir,
        "LITELLM_LOCAL_MODEL_COST_MAP": str(settings.litellm_local_model_cost_map),
    }


@functools.cache
def prepare_offline_environment() -> None:
    """Set the offline defaults once per process, before tiktoken or litellm load."""
    os.environ.update(offline_environment(get_settings()))
