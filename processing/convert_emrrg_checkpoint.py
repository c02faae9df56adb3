#!/usr/bin/env python
"""Convert an EMRRG authors' checkpoint into a model folder (the same as ``rrg-mamba convert``).

Examples:
    # EMRRG fine-tuned on CheXpert Plus + the LLM it names -> a folder with model, processor, card and code
    python processing/convert_emrrg_checkpoint.py --checkpoint EMRRG-CXP.pth --output_dir emrrg-cxp --allow_pickle
    # the pre-trained X-ray Mamba of MambaXray-VL alone -> an XrayMambaModel folder
    python processing/convert_emrrg_checkpoint.py --checkpoint MambaXrayCLIP-B.pth --output_dir xray-mamba-b \\
        --kind xray_mamba --allow_pickle

``--allow_pickle`` is needed because the authors' files also hold their argparse settings; only pass it for a file
you trust (reading it runs code). ``--text_model`` takes a local folder of Llama-2-7B-chat when offline.
"""

import sys

from modeling_rrg_mamba.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
