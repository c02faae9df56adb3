"""Sharing on the Hugging Face Hub: a self-contained remote-code export of the models, model cards, save and push.

``save_for_hub(model, processor, folder)`` writes a folder that ``AutoModelForImageTextToText`` and
``AutoProcessor`` load with ``trust_remote_code=True`` in an environment without this package, with a model card;
``push_to_hub(model, processor, repo_id, folder)`` uploads it. (A plain ``save_pretrained`` of the models and
processors writes the same code and ``auto_map`` entries, see :mod:`modeling_rrg_mamba.saving`; the export functions
are re-exported here.)
"""

from ..remote_code import collect_modules, export_remote_code, flat_module_name
from ..saving import MODEL_AUTO_CLASSES, write_auto_maps
from .model_card import load_evaluation, render_model_card, required_packages
from .sharing import push_to_hub, save_for_hub

__all__ = [
    "MODEL_AUTO_CLASSES",
    "collect_modules",
    "export_remote_code",
    "flat_module_name",
    "load_evaluation",
    "push_to_hub",
    "render_model_card",
    "required_packages",
    "save_for_hub",
    "write_auto_maps",
]
