"""The built wheel carries what the package reads at run time: recipes, model-card templates and the demo data."""

import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import modeling_rrg_mamba
    from modeling_rrg_mamba.hub.model_card import MODEL_CARD_DIR
    from modeling_rrg_mamba.commands.demo import DEMO_DATA
    from modeling_rrg_mamba.training.recipes import load_recipe, resolve_recipe_path

    installed = Path(sys.argv[1]).resolve()
    assert Path(modeling_rrg_mamba.__file__).resolve().is_relative_to(installed), modeling_rrg_mamba.__file__
    for name in ("rrg_mamba_iu_xray", "rrg_mamba_mimic_cxr", "rrg_mamba_chexpert_plus", "emrrg_iu_xray",
                 "emrrg_mimic_cxr", "emrrg_chexpert_plus"):
        assert resolve_recipe_path(name).resolve().is_relative_to(installed), name
    assert Path(load_recipe("emrrg_mimic_cxr")["deepspeed"]).is_file()  # the DeepSpeed file next to the recipes
    for card in ("rrg_mamba.md", "emrrg.md", "_evaluation_and_use.md"):
        assert (MODEL_CARD_DIR / card).is_file(), card
    assert len(list((DEMO_DATA / "images").glob("*.jpg"))) == 40 and (DEMO_DATA / "ATTRIBUTION.md").is_file()
    print("OK")
    """
)


@pytest.mark.slow
def test_wheel_installs_recipes_model_cards_and_demo_data(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = next((tmp_path / "dist").glob("rrg_mamba-*.whl"))
    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    # -S: no .pth files, so not the editable install of the checkout; site-packages only for the dependencies
    site_dirs = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    completed = subprocess.run(
        [sys.executable, "-S", "-c", CHECK, str(installed)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": ":".join([str(installed), *site_dirs]), "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"},
    )
    assert completed.returncode == 0 and completed.stdout.strip().endswith("OK"), completed.stderr[-3000:]
