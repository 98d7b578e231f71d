"""What a campaign needs of this machine, checked before a run writes anything.

The campaign file alone cannot tell (``load_campaign`` checks it): the label physics' files can
be read here (pseudopotentials, POTCARs), a GPU is there for ``committee.device: cuda``, and a
named foundation model is in mace's cache or can be downloaded now. Each failure is a
:class:`ConfigError` naming the file, the key and the fix: found at training, after the DFT
has been paid for, it would cost hours.
"""

from __future__ import annotations

import logging
from pathlib import Path

from al_loop.config import CampaignConfig
from al_loop.config_errors import ConfigError
from calculators.oracles import oracle_class

log = logging.getLogger(__name__)


def preflight(config: CampaignConfig) -> str:
    """Check this machine for ``config``; returns the label physics' identity (a hash)."""
    identity = _oracle_files(config)
    _device(config)
    _foundation(config)
    return identity


def _error(config: CampaignConfig, key_path: str, message: str) -> ConfigError:
    return ConfigError(message, file=config.source_file, key_path=key_path)


def _oracle_files(config: CampaignConfig) -> str:
    oracle = oracle_class(config.oracle.code)(config.oracle.settings)
    folder = oracle.folder_setting[0] if oracle.folder_setting else None
    where = "oracle.overrides" if folder is None else f"oracle.overrides.{folder}"
    given = getattr(oracle.settings, folder) if folder else None
    if given and not Path(given).expanduser().is_dir():
        raise _error(
            config,
            where,
            f"folder {given} does not exist on this machine; give the folder that holds the "
            "files, relative to the campaign file or absolute",
        )
    try:
        return oracle.physics_hash_for(config.system.elements)
    except (OSError, ValueError) as err:
        raise _error(config, where, str(err)) from None


def _device(config: CampaignConfig) -> None:
    if config.committee.device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise _error(
            config,
            "committee.device",
            f"cuda, but torch {torch.__version__} sees no GPU on this machine; set device: auto "
            "(a GPU where there is one) or cpu, or run on a GPU node",
        )


def _foundation(config: CampaignConfig) -> None:
    name = config.committee.foundation_model
    if name is None or Path(name).is_file():  # a file: load_campaign checked it
        return
    from calculators.models.mace_train import fetch_foundation

    try:
        path = fetch_foundation(name)
    except OSError as err:
        raise _error(
            config,
            "committee.foundation_model",
            f"{err}; download it where there is a network (mace puts it in ~/.cache/mace) and "
            "give its path, or copy it into this machine's ~/.cache/mace",
        ) from None
    log.info("foundation model %s: %s", name, path)
