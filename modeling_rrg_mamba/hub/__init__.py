"""Sharing on the Hugging Face Hub: a self-contained remote-code export of the models, model cards, save and push.

``save_for_hub(model, processor, folder)`` writes a folder that ``AutoModelForImageTextToText`` and
``AutoProcessor`` load with ``trust_remote_code=True`` in an environment without this package;
``push_to_hub(model, processor, repo_id, folder)`` uploads it.
"""

from .model_card import load_evaluation, render_model_card, required_packages
from .remote_code import collect_modules, export_remote_code, flat_module_name
from .sharing import MODEL_AUTO_CLASSES, push_to_hub, save_for_hub, write_auto_maps

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
