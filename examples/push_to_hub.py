"""Share a trained RRG-Mamba or EMRRG checkpoint on the Hugging Face Hub.

Writes a self-contained folder (weights, processor, generation config, flat remote code, model card with the
metrics of an evaluation JSON) and, with --repo-id, uploads it (needs network and a write token)::

    python examples/push_to_hub.py outputs/rrg_mamba_iu --folder hub/rrg-mamba-iu \
        --metrics outputs/rrg_mamba_iu/test_metrics.json --dataset-name "IU X-Ray (R2Gen test split)" \
        --repo-id me/rrg-mamba-iu-xray
"""

import argparse

from transformers import AutoModelForImageTextToText, AutoProcessor

import modeling_rrg_mamba.emrrg  # noqa: F401  (registers the Auto classes)
import modeling_rrg_mamba.rrg_mamba  # noqa: F401
from modeling_rrg_mamba.hub import push_to_hub, save_for_hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="folder saved with model.save_pretrained + processor.save_pretrained")
    parser.add_argument("--folder", required=True, help="where to write the Hub-ready folder")
    parser.add_argument("--metrics", help="evaluation JSON for the model card's metrics table")
    parser.add_argument("--dataset-name", help="name of the evaluation data shown on the card")
    parser.add_argument("--datasets", nargs="*", default=[], help="Hub dataset ids for the card's front matter")
    parser.add_argument("--license", default="apache-2.0", help="licence of the weights (check the data's terms)")
    parser.add_argument("--repo-id", help="upload to this Hub repository (private unless --public)")
    parser.add_argument("--public", action="store_true")
    args = parser.parse_args()

    model = AutoModelForImageTextToText.from_pretrained(args.checkpoint)
    processor = AutoProcessor.from_pretrained(args.checkpoint)
    card = dict(license=args.license, datasets=args.datasets, dataset_name=args.dataset_name)
    if args.repo_id is None:
        print(save_for_hub(model, processor, args.folder, args.metrics, **card))
    else:
        print(push_to_hub(model, processor, args.repo_id, args.folder, args.metrics, private=not args.public, **card))


if __name__ == "__main__":
    main()
