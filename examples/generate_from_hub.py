"""Generate a report with a shared checkpoint, without installing rrg-mamba: only transformers, torch and the
packages listed on the model card are needed (the model code comes with the checkpoint)::

    python examples/generate_from_hub.py me/rrg-mamba-iu-xray frontal.png lateral.png
"""

import argparse

from transformers import AutoModelForImageTextToText, AutoProcessor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", help="Hub repository id or local folder written by save_for_hub")
    parser.add_argument("images", nargs="+", help="the views of one study (PNG, JPEG or DICOM)")
    parser.add_argument("--num-beams", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    args = parser.parse_args()

    model = AutoModelForImageTextToText.from_pretrained(args.repo, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(args.repo, trust_remote_code=True)
    inputs = processor(images=[args.images])
    output = model.generate(**inputs, num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
    if "input_ids" in inputs:  # decoder-only (EMRRG): drop the prompt
        output = output[:, inputs["input_ids"].shape[1] :]
    print(processor.batch_decode(output, skip_special_tokens=True)[0])


if __name__ == "__main__":
    main()
