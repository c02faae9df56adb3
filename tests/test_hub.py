"""Sharing on the Hub: flat remote-code export, auto_map, model cards, push (mocked), and loading in a fresh Python
process that cannot import modeling_rrg_mamba (same weights, same processor output, same generated ids)."""

import ast
import importlib
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from conftest import SMALLEST_RRG_MAMBA
from huggingface_hub import ModelCard
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast
from transformers.dynamic_module_utils import (
    check_imports,
    get_imports,
    get_relative_import_files,
    get_relative_imports,
)
from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

import modeling_rrg_mamba.emrrg as emrrg_package
import modeling_rrg_mamba.rrg_mamba as rrg_package
from modeling_rrg_mamba._compat import portable_tokenizer_config
from modeling_rrg_mamba.emrrg import EMRRGConfig, EMRRGForConditionalGeneration, EMRRGProcessor
from modeling_rrg_mamba.hub import export_remote_code, load_evaluation, push_to_hub, render_model_card, save_for_hub
from modeling_rrg_mamba.image_processing_xray import XrayImageProcessor
from modeling_rrg_mamba.rrg_mamba import (
    RRGMambaConfig,
    RRGMambaForConditionalGeneration,
    RRGMambaImageProcessor,
    RRGMambaProcessor,
    RRGMambaTokenizer,
)

GENERATE = dict(num_beams=2, min_new_tokens=6, max_new_tokens=6, do_sample=False)
EMRRG_PROMPT = "Human: <Img>{image}</Img> describe the film . Assistant:"
METRICS = {
    "metrics": {
        "BLEU_1": 0.5123,
        "BLEU_2": 0.35,
        "BLEU_3": 0.25,
        "BLEU_4": 0.2046,
        "METEOR": 0.21,
        "ROUGE_L": 0.4,
        "CIDEr": 0.45,
        "ce_14_micro_precision": 0.31,
        "ce_14_micro_recall": 0.22,
        "ce_14_micro_f1": 0.257,
    },
    "num_pairs": 590,
    "clean_style": "iu_xray",
    "ce_labeler": "rule-based CheXpert-style labeler",
    "ce_uncertain_policy": "negative",
}


def tiny_rrg_mamba():
    torch.manual_seed(0)
    config = RRGMambaConfig(**SMALLEST_RRG_MAMBA)
    tokenizer = RRGMambaTokenizer.from_reports(
        ["The heart is normal. No effusion.", "Lungs are clear. No pneumothorax."], threshold=1
    )
    processor = RRGMambaProcessor(RRGMambaImageProcessor(size=64, crop_size=64), tokenizer)
    return RRGMambaForConditionalGeneration(config).eval(), processor


def tiny_emrrg():
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [EMRRG_PROMPT, "no acute cardiopulmonary abnormality . heart size is normal ."]
    backend.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"]))
    backend.post_processor = processors.TemplateProcessing(
        single="[BOS] $A", special_tokens=[("[BOS]", backend.token_to_id("[BOS]"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )
    processor = EMRRGProcessor(
        XrayImageProcessor(size=32, crop_size=32), tokenizer, image_seq_length=5, prompt_template=EMRRG_PROMPT
    )
    torch.manual_seed(0)
    # the <image> token is the last id, outside the LLM's vocabulary, so generate() cannot emit it
    config = EMRRGConfig(
        vision_config=dict(hidden_size=16, num_hidden_layers=1, image_size=32, patch_size=16, d_state=4),
        text_config=dict(
            model_type="llama",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=len(tokenizer) - 1,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        hybrid_layer_interval=1,
        image_token_id=processor.image_token_id,
    )
    model = EMRRGForConditionalGeneration(config).eval()
    with torch.no_grad():  # open the (zero-initialised) gates so the hybrid cross-attention takes part
        for hybrid in model.hybrid_attentions:
            hybrid.gated_cross_attn.gate.bias.fill_(1.0)
    return model, processor


def weight_sums(model) -> dict:
    return {name: float(tensor.double().sum()) for name, tensor in model.state_dict().items()}


def run_in_process(model, processor, image_path: str) -> dict:
    inputs = processor(images=[Image.open(image_path)])
    with torch.no_grad():
        ids = model.generate(**inputs, **GENERATE)
    return {
        "ids": ids.tolist(),
        "pixel_sum": float(inputs["pixel_values"].double().sum()),
        "input_ids": inputs["input_ids"].tolist() if "input_ids" in inputs else None,
        "weights": weight_sums(model),
    }


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("image") / "film.png"
    Image.fromarray((np.random.default_rng(0).random((72, 60)) * 255).astype(np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, image_path):
    """Both architectures saved with save_for_hub, plus their in-process generations on the same film."""
    bundles = {}
    for name, build in (("rrg_mamba", tiny_rrg_mamba), ("emrrg", tiny_emrrg)):
        model, processor = build()
        folder = save_for_hub(
            model,
            processor,
            tmp_path_factory.mktemp("hub") / f"tiny-{name}",
            model_card_metrics=METRICS if name == "rrg_mamba" else None,
            dataset_name="IU X-Ray (test split)",
            datasets=["iu-xray"],
        )
        bundles[name] = {
            "folder": folder,
            "model": model,
            "processor": processor,
            "expected": run_in_process(model, processor, image_path),
        }
    return bundles


@pytest.fixture(scope="module")
def saved_plainly(tmp_path_factory, image_path):
    """Both architectures saved with their own save_pretrained (model, then processor, into one folder), as a user or
    the Trainer does, plus their in-process generations on the same film."""
    bundles = {}
    for name, build in (("rrg_mamba", tiny_rrg_mamba), ("emrrg", tiny_emrrg)):
        model, processor = build()
        folder = tmp_path_factory.mktemp("plain") / f"tiny-{name}"
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        expected = run_in_process(model, processor, image_path)
        bundles[name] = {"folder": folder, "model": model, "processor": processor, "expected": expected}
    return bundles


FRESH_PROCESS_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    from collections import OrderedDict
    assert importlib.util.find_spec("modeling_rrg_mamba") is None, "modeling_rrg_mamba is importable"
    import torch, transformers
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline
    from transformers.models.auto.auto_factory import _BaseAutoModelClass, _LazyAutoMapping
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if hasattr(transformers, "AutoModelForVision2Seq"):  # transformers 4.x
        from transformers import AutoModelForVision2Seq
    else:  # 5.x dropped it: a stand-in with the same name, which is all trust_remote_code loading looks at
        class AutoModelForVision2Seq(_BaseAutoModelClass):
            _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())

        transformers.AutoModelForVision2Seq = transformers.models.auto.AutoModelForVision2Seq = AutoModelForVision2Seq

    request = json.loads(sys.argv[1])
    results = {}
    for name, folder in request["folders"].items():
        model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        inputs = processor(images=[Image.open(request["image"])])
        with torch.no_grad():
            ids = model.generate(**inputs, **request["generate"])
            v2s = AutoModelForVision2Seq.from_pretrained(folder, trust_remote_code=True).eval()
            v2s_ids = v2s.generate(**inputs, **request["generate"])
        results[name] = {
            "ids": ids.tolist(), "vision2seq_ids": v2s_ids.tolist(),
            "pixel_sum": float(inputs["pixel_values"].double().sum()),
            "input_ids": inputs["input_ids"].tolist() if "input_ids" in inputs else None,
            "weights": {k: float(v.double().sum()) for k, v in model.state_dict().items()},
            "classes": [
                type(obj).__module__ for obj in (model, processor, processor.image_processor, processor.tokenizer)
            ],
        }
        try:
            pipe = pipeline("image-text-to-text", model=folder, trust_remote_code=True)
            prompt = processor.default_prompt() if hasattr(processor, "default_prompt") else ""  # RRG-Mamba: no prefix
            output = pipe(images=request["image"], text=prompt, return_full_text=False,
                          generate_kwargs=dict(request["generate"]))  # 4.57's pipeline writes into the dict
            results[name]["pipeline"] = {"text": output[0]["generated_text"]}
        except Exception as error:
            results[name]["pipeline"] = {"error": f"{type(error).__name__}: {error}"}
    results["package_imported"] = any(m.split(".")[0] == "modeling_rrg_mamba" for m in sys.modules)
    print("RESULTS" + json.dumps(results))
    """
)


def site_packages(python: str) -> list[str]:
    """The site-packages folders of the interpreter ``python``."""
    if python == sys.executable:
        paths = sysconfig.get_paths()
        return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    code = "import json, sysconfig; p = sysconfig.get_paths(); print(json.dumps([p['purelib'], p['platlib']]))"
    listed = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return list(dict.fromkeys(json.loads(listed.stdout)))


def fresh_process(tmp_path: Path, request: dict, python: str = sys.executable) -> dict:
    """Run FRESH_PROCESS_SCRIPT with ``python -S`` (no .pth files, so not the editable install of this package),
    site-packages on PYTHONPATH, a working directory outside the repository, offline, and its own module cache."""
    site_dirs = site_packages(python)
    work = tmp_path / "cwd"
    work.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "HF_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(site_dirs),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf_home"),
        HF_MODULES_CACHE=str(tmp_path / f"modules-{Path(python).parent.parent.name}"),
    )
    completed = subprocess.run(
        [python, "-S", "-c", FRESH_PROCESS_SCRIPT, json.dumps(request)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULTS"))
    return json.loads(line[len("RESULTS") :])


def assert_same_as_in_process(results: dict, bundles: dict) -> None:
    """What FRESH_PROCESS_SCRIPT loaded without this package matches the in-process models of ``bundles``."""
    assert results.pop("package_imported") is False
    for name, result in results.items():
        expected = bundles[name]["expected"]
        # every class came from the copied remote code, none from an installed package of ours
        assert all(module.startswith("transformers_modules.") for module in result["classes"][:3]), result["classes"]
        assert result["weights"] == expected["weights"], f"{name}: weights differ after loading"
        assert result["pixel_sum"] == pytest.approx(expected["pixel_sum"], rel=1e-6)
        assert result["input_ids"] == expected["input_ids"]
        assert result["ids"] == expected["ids"], f"{name}: generated ids differ from the in-process model"
        assert result["vision2seq_ids"] == expected["ids"], f"{name}: AutoModelForVision2Seq (4.x) path differs"
        assert len(expected["ids"][0]) >= GENERATE["min_new_tokens"]
    # Both run in the image-text-to-text pipeline and give the decoded new tokens of generate(): EMRRG after its
    # prompt (the pipeline strips the prompt from the full decoded text, leaving a leading space), RRG-Mamba from an
    # empty report prefix (decoder_input_ids = <bos>, where generate() starts by itself).
    assert all("text" in results[name]["pipeline"] for name in bundles), {
        name: results[name]["pipeline"] for name in bundles
    }
    emrrg = bundles["emrrg"]
    new_tokens = [row[len(emrrg["expected"]["input_ids"][0]) :] for row in emrrg["expected"]["ids"]]
    expected_text = emrrg["processor"].batch_decode(new_tokens, skip_special_tokens=True)[0]
    assert results["emrrg"]["pipeline"]["text"].strip() == expected_text.strip() != ""
    rrg = bundles["rrg_mamba"]
    expected_report = rrg["processor"].batch_decode(rrg["expected"]["ids"], skip_special_tokens=True)[0]
    assert results["rrg_mamba"]["pipeline"]["text"].strip() == expected_report  # may be empty: an untrained model


def fresh_request(bundles: dict, image_path: str) -> dict:
    return {
        "folders": {name: str(bundle["folder"]) for name, bundle in bundles.items()},
        "image": image_path,
        "generate": GENERATE,
    }


@pytest.mark.slow
def test_fresh_process_loads_both_models_and_generates_the_same_ids(saved, image_path, tmp_path):
    assert_same_as_in_process(fresh_process(tmp_path, fresh_request(saved, image_path)), saved)


@pytest.mark.slow
def test_fresh_process_loads_folders_written_by_save_pretrained(saved_plainly, image_path, tmp_path):
    """A plain model.save_pretrained + processor.save_pretrained folder loads with trust_remote_code=True where this
    package was never imported, as a save_for_hub folder does."""
    assert_same_as_in_process(fresh_process(tmp_path, fresh_request(saved_plainly, image_path)), saved_plainly)


# ----------------------------------------------------------------- saved on one transformers series, loaded on another

REPO = Path(__file__).resolve().parents[1]
OTHER_PYTHON_VARIABLE = "RRG_MAMBA_OTHER_PYTHON"

OTHER_SERIES_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch, transformers
    from PIL import Image
    import modeling_rrg_mamba

    request = json.loads(sys.argv[1])
    results = {"version": transformers.__version__, "package": modeling_rrg_mamba.__file__}
    for name, folder in request["folders"].items():
        model = transformers.AutoModelForImageTextToText.from_pretrained(folder).eval()
        processor = transformers.AutoProcessor.from_pretrained(folder)
        inputs = processor(images=[Image.open(request["image"])])
        with torch.no_grad():
            ids = model.generate(**inputs, **request["generate"])
        results[name] = {
            "ids": ids.tolist(),
            "input_ids": inputs["input_ids"].tolist() if "input_ids" in inputs else None,
            "weights": {k: float(v.double().sum()) for k, v in model.state_dict().items()},
            "tokenizer": type(processor.tokenizer).__name__,
        }
    print("RESULTS" + json.dumps(results))
    """
)


def transformers_major(python: Path) -> str | None:
    """The major version of the transformers installed beside the interpreter ``python`` (read from its
    dist-info, without starting it)."""
    found = sorted(python.parent.parent.glob("lib/python*/site-packages/transformers-*.dist-info"))
    return found[0].name.removeprefix("transformers-").split(".")[0] if found else None


def other_series_python() -> str | None:
    """An interpreter with a transformers of another major series than this one: ``$RRG_MAMBA_OTHER_PYTHON``, else
    the first of the repository's ``.venv*`` environments (scripts/bootstrap.sh) that has one."""
    if os.environ.get(OTHER_PYTHON_VARIABLE):
        return os.environ[OTHER_PYTHON_VARIABLE]
    this = transformers.__version__.split(".")[0]
    for python in sorted(REPO.glob(".venv*/bin/python")):
        if transformers_major(python) not in (None, this):
            return str(python)
    return None


@pytest.mark.slow
def test_folders_saved_here_load_on_the_other_transformers_series(saved_plainly, image_path, tmp_path):
    """Folders saved with save_pretrained on this series (5.x writes TokenizersBackend and a list of
    extra_special_tokens, which 4.57 cannot read) load on the other one: with this checkout imported, and through
    their remote code where it is not."""
    python = other_series_python()
    if python is None:
        other = "4.57" if transformers.__version__.startswith("5.") else "5.x"
        pytest.skip(
            f"no Python with transformers {other} beside this one: set {OTHER_PYTHON_VARIABLE} or build one with "
            f"scripts/bootstrap.sh{' --transformers 4.57' if other == '4.57' else ''}"
        )
    request = fresh_request(saved_plainly, image_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "HF_"))}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    completed = subprocess.run(
        [python, "-c", OTHER_SERIES_SCRIPT, json.dumps(request)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULTS"))
    results = json.loads(line[len("RESULTS") :])
    assert results.pop("version").split(".")[0] != transformers.__version__.split(".")[0]
    assert Path(results.pop("package")).resolve().parent.parent == REPO  # this checkout, not another install
    for name, result in results.items():
        expected = saved_plainly[name]["expected"]
        assert result["weights"] == expected["weights"], name
        assert result["input_ids"] == expected["input_ids"], name
        assert result["ids"] == expected["ids"], f"{name}: generated ids differ on transformers {result}"
    assert results["emrrg"]["tokenizer"] in ("PreTrainedTokenizerFast", "TokenizersBackend")
    fresh = fresh_process(tmp_path, request, python=python)
    assert_same_as_in_process(fresh, saved_plainly)


def image_processor_auto_map(folder: Path) -> dict:
    """transformers 5 saves the image processor inside processor_config.json, 4.57 in preprocessor_config.json."""
    nested = json.loads((folder / "processor_config.json").read_text()).get("image_processor")
    return (nested or json.loads((folder / "preprocessor_config.json").read_text()))["auto_map"]


@pytest.mark.parametrize("name", ["rrg_mamba", "emrrg"])
def test_export_is_flat_self_contained_and_minimal(saved, name):
    folder = saved[name]["folder"]
    config = json.loads((folder / "config.json").read_text())
    entry_files = {folder / f"{ref.split('.')[0]}.py" for ref in config["auto_map"].values()}
    processor_config = json.loads((folder / "processor_config.json").read_text())
    entry_files.add(folder / f"{processor_config['auto_map']['AutoProcessor'].split('.')[0]}.py")
    entry_files.add(folder / f"{image_processor_auto_map(folder)['AutoImageProcessor'].split('.')[0]}.py")
    tokenizer_map = json.loads((folder / "tokenizer_config.json").read_text()).get("auto_map")
    if tokenizer_map:
        entry_files.add(folder / f"{tokenizer_map['AutoTokenizer'][0].split('.')[0]}.py")
    # what transformers' loader will copy from the auto_map entries is exactly the set of exported files
    reachable = set(entry_files)
    for entry in entry_files:
        reachable.update(Path(path) for path in get_relative_import_files(entry))
    assert reachable == set(folder.glob("*.py"))
    # from a local folder transformers 4.57 copies only the files each entry file imports itself: those suffice
    for entry in entry_files:
        direct = {folder / f"{module}.py" for module in get_relative_imports(entry)}
        assert {Path(path) for path in get_relative_import_files(entry)} <= direct, entry.name
    for path in folder.glob("*.py"):
        assert "modeling_rrg_mamba" not in get_imports(path), path.name
        check_imports(path)  # every third-party import is installed
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and (folder / f"{node.module}.py").exists(), (path.name, node.module)
    # classes named by auto_map are defined in the named files
    for ref in config["auto_map"].values():
        module, cls = ref.split(".")
        tree = ast.parse((folder / f"{module}.py").read_text())
        assert cls in {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def test_auto_maps_point_at_the_flat_modules(saved):
    rrg = saved["rrg_mamba"]["folder"]
    config = json.loads((rrg / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_rrg_mamba.RRGMambaConfig",
        "AutoModel": "modeling_rrg_mamba.RRGMambaForConditionalGeneration",
        "AutoModelForImageTextToText": "modeling_rrg_mamba.RRGMambaForConditionalGeneration",
        "AutoModelForVision2Seq": "modeling_rrg_mamba.RRGMambaForConditionalGeneration",
    }
    assert json.loads((rrg / "tokenizer_config.json").read_text())["auto_map"] == {
        "AutoTokenizer": ["tokenization_rrg_mamba.RRGMambaTokenizer", None]
    }
    processor_config = json.loads((rrg / "processor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoProcessor": "processing_rrg_mamba.RRGMambaProcessor"}
    assert image_processor_auto_map(rrg) == {"AutoImageProcessor": "image_processing_rrg_mamba.RRGMambaImageProcessor"}
    # the model needs SS2D and its kernels (the Triton ones too, imported where Triton is) but not the 1-D Mamba
    # mixer: only what it imports is exported
    names = {path.stem for path in rrg.glob("*.py")}
    assert {"layers_ss2d", "ops_selective_scan", "ops_triton_selective_scan_routes", "report_text"} <= names
    assert not {"layers_mamba_mixer", "layers", "ops_triton"} & names
    emrrg = saved["emrrg"]["folder"]
    assert (
        json.loads((emrrg / "config.json").read_text())["auto_map"]["AutoConfig"] == "configuration_emrrg.EMRRGConfig"
    )
    assert "auto_map" not in json.loads((emrrg / "tokenizer_config.json").read_text())  # a transformers tokenizer
    assert json.loads((emrrg / "generation_config.json").read_text())["eos_token_id"] == 3


def test_model_card_front_matter_metrics_and_citation(saved):
    card = ModelCard.load(saved["rrg_mamba"]["folder"] / "README.md")
    assert card.data.license == "apache-2.0"
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "image-text-to-text"
    assert {"rrg-mamba", "radiology-report-generation", "custom_code"} <= set(card.data.tags)
    assert card.data.datasets == ["iu-xray"]
    assert "| BLEU-1 | 0.512 |" in card.text and "| BLEU-4 | 0.205 |" in card.text and "| CIDEr | 0.450 |" in card.text
    assert "| all 14 CheXpert observations | micro | 0.310 | 0.220 | 0.257 |" in card.text
    assert "IU X-Ray (test split)" in card.text and "590 reports" in card.text
    assert "Not for clinical use" in card.text
    assert "Hou, Xiaodi" in card.text and "10.24963/ijcai.2025/824" in card.text
    assert "timm" in card.text and "pydicom" in card.text  # requirements read from the exported code
    emrrg = ModelCard.load(saved["emrrg"]["folder"] / "README.md")
    assert "rrg-mamba" not in emrrg.data.tags and "emrrg" in emrrg.data.tags
    assert "uploaded without evaluation results" in emrrg.text
    assert "arXiv:2510.16776" in emrrg.text and "Not for clinical use" in emrrg.text
    assert "`llama` language model (2 layers, width\n32)" in emrrg.text


def test_evaluation_json_from_file_and_trainer_prefixes(tmp_path):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"eval_BLEU_4": 0.1, "eval_ROUGE_L": 0.3, "eval_loss": 2.0, "epoch": 3}))
    evaluation = load_evaluation(path)
    assert evaluation.nlg == [("BLEU-4", 0.1), ("ROUGE-L", 0.3)]
    assert evaluation.ce == []


def test_evaluation_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_evaluation(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        load_evaluation(broken)
    with pytest.raises(ValueError, match="'BLEU_1' should be a number"):
        load_evaluation({"BLEU_1": "high"})
    with pytest.raises(ValueError, match="no known metric keys"):
        load_evaluation({"accuracy": 0.9})
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_evaluation(listed)


def test_render_model_card_needs_a_template(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="rrg_mamba.md"):
        render_model_card(saved["rrg_mamba"]["model"], repo_id="me/tiny", template_dir=tmp_path)


def test_save_for_hub_rejects_models_it_cannot_export(saved, tmp_path):
    model, processor = saved["rrg_mamba"]["model"], saved["rrg_mamba"]["processor"]
    with pytest.raises(ValueError, match="processor"):
        save_for_hub(model, None, tmp_path / "a")
    bare = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, vocab_size=10
        )
    )
    with pytest.raises(ValueError, match="not a model of modeling_rrg_mamba"):
        save_for_hub(bare, processor, tmp_path / "b")


def test_register_for_auto_class_does_not_break_saving(saved, tmp_path):
    model, processor = saved["rrg_mamba"]["model"], saved["rrg_mamba"]["processor"]
    type(model).register_for_auto_class("AutoModelForImageTextToText")
    try:
        folder = save_for_hub(model, processor, tmp_path / "registered")
    finally:
        type(model)._auto_class = None
    assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoModelForImageTextToText"] == (
        "modeling_rrg_mamba.RRGMambaForConditionalGeneration"
    )
    assert type(model)._auto_class is None


@pytest.mark.parametrize("name", ["rrg_mamba", "emrrg"])
def test_save_pretrained_writes_the_code_and_auto_map_of_save_for_hub(saved, saved_plainly, name):
    plain, hub = saved_plainly[name]["folder"], saved[name]["folder"]
    assert {p.name for p in plain.glob("*.py")} == {p.name for p in hub.glob("*.py")}
    for path in plain.glob("*.py"):
        assert path.read_text() == (hub / path.name).read_text(), path.name
    for file in ("config.json", "processor_config.json", "tokenizer_config.json"):
        assert json.loads((plain / file).read_text()).get("auto_map") == json.loads((hub / file).read_text()).get(
            "auto_map"
        ), file
    assert image_processor_auto_map(plain) == image_processor_auto_map(hub)
    assert not (plain / "README.md").exists()  # the model card is save_for_hub's


@pytest.mark.parametrize("name", ["rrg_mamba", "emrrg"])
def test_saved_folder_loads_with_the_package_classes_where_it_is_imported(saved_plainly, image_path, name):
    """auto_map in the folder does not change loading where the package is imported: the Auto classes use its
    registered classes (no trust_remote_code needed), with the same weights and outputs."""
    bundle = saved_plainly[name]
    model = transformers.AutoModelForImageTextToText.from_pretrained(bundle["folder"]).eval()
    processor = transformers.AutoProcessor.from_pretrained(bundle["folder"])
    assert type(model) is type(bundle["model"]) and type(processor) is type(bundle["processor"])
    loaded, expected = run_in_process(model, processor, image_path), bundle["expected"]
    # transformers 5 loads the fast image processor, the in-process one is the slow one: equal to float tolerance
    assert loaded.pop("pixel_sum") == pytest.approx(expected["pixel_sum"], rel=1e-6)
    assert loaded == {key: value for key, value in expected.items() if key != "pixel_sum"}


def test_plain_save_after_register_for_auto_class(saved_plainly, tmp_path):
    model, processor = saved_plainly["emrrg"]["model"], saved_plainly["emrrg"]["processor"]
    type(model).register_for_auto_class("AutoModelForImageTextToText")
    type(processor).register_for_auto_class("AutoProcessor")
    try:
        model.save_pretrained(tmp_path)
        processor.save_pretrained(tmp_path)
    finally:
        type(model)._auto_class = type(processor)._auto_class = None
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"]["AutoModelForImageTextToText"] == (
        "modeling_emrrg.EMRRGForConditionalGeneration"
    )
    assert json.loads((tmp_path / "processor_config.json").read_text())["auto_map"] == {
        "AutoProcessor": "processing_emrrg.EMRRGProcessor"
    }


@pytest.mark.parametrize("part", ["model", "processor"])
def test_save_pretrained_push_to_hub_uploads_the_folder_with_its_code(saved_plainly, tmp_path, monkeypatch, part):
    """save_pretrained(push_to_hub=True) writes the folder, code included, then calls push_to_hub (mocked: no
    network here; the real one saves again into a temporary folder and uploads it) with the upload settings."""
    obj, folder = saved_plainly["rrg_mamba"][part], tmp_path / "tiny-model"
    pushes = []

    def push_to_hub(repo_id, commit_message=None, private=None, token=None, create_pr=False):
        pushes.append({"repo_id": repo_id, "commit_message": commit_message, "private": private, "token": token})
        pushes[-1]["files"] = {path.name for path in folder.glob("*")}

    monkeypatch.setattr(obj, "push_to_hub", push_to_hub)
    obj.save_pretrained(folder, push_to_hub=True, commit_message="first", private=True, token="hf_x")
    (push,) = pushes
    assert push.pop("files") >= {"modeling_rrg_mamba.py" if part == "model" else "processing_rrg_mamba.py"}
    assert push == {"repo_id": "tiny-model", "commit_message": "first", "private": True, "token": "hf_x"}


def test_portable_tokenizer_config():
    written_by_5 = {
        "tokenizer_class": "TokenizersBackend",
        "extra_special_tokens": ["<image>", "<x>"],
        "additional_special_tokens": ["<x>"],
        "bos_token": "[BOS]",
    }
    assert portable_tokenizer_config(written_by_5) == {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "additional_special_tokens": ["<x>", "<image>"],
        "bos_token": "[BOS]",
    }
    assert written_by_5["tokenizer_class"] == "TokenizersBackend"  # the input is left alone
    named = {"tokenizer_class": "LlamaTokenizer", "extra_special_tokens": {"image_token": "<image>"}}
    assert portable_tokenizer_config(named) == named


def test_processor_save_writes_a_portable_tokenizer_config(saved_plainly):
    config = json.loads((saved_plainly["emrrg"]["folder"] / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert "<image>" in config["additional_special_tokens"]
    assert not isinstance(config.get("extra_special_tokens"), list)


def test_push_to_hub_saves_then_uploads_the_folder(saved, tmp_path, monkeypatch):
    """The upload itself is never run: HfApi is replaced by a recorder (no network here)."""
    calls = []

    class RecordingApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private, exist_ok, repo_type):
            calls.append(("create_repo", repo_id, private, exist_ok, repo_type))

        def upload_folder(self, repo_id, folder_path, commit_message, repo_type, allow_patterns=None):
            uploaded = [
                name for name in sorted(os.listdir(folder_path)) if allow_patterns is None or name in allow_patterns
            ]
            calls.append(("upload_folder", repo_id, uploaded, repo_type))
            return "commit-info"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    model, processor = saved["rrg_mamba"]["model"], saved["rrg_mamba"]["processor"]
    assert push_to_hub(model, processor, "someone/tiny-rrg-mamba", tmp_path / "push", token="hf_x") == "commit-info"
    assert calls[0] == ("init", "hf_x")
    assert calls[1] == ("create_repo", "someone/tiny-rrg-mamba", True, True, "model")
    uploaded = calls[2][2]
    assert calls[2][:2] == ("upload_folder", "someone/tiny-rrg-mamba")
    assert {"README.md", "config.json", "model.safetensors", "modeling_rrg_mamba.py", "processor_config.json"} <= set(
        uploaded
    )
    assert 'from_pretrained("someone/tiny-rrg-mamba"' in (tmp_path / "push" / "README.md").read_text()


def test_export_into_a_training_folder_leaves_its_pickles_out(saved, tmp_path, monkeypatch):
    """A training output folder holds optimizer / RNG / TrainingArguments pickles: they are named in a warning and
    never uploaded; only what the export wrote goes to the Hub."""
    import huggingface_hub

    uploads = []

    class RecordingApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, *args, **kwargs):
            pass

        def upload_folder(self, repo_id, folder_path, commit_message, repo_type, allow_patterns=None):
            uploads.append(allow_patterns)

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    folder = tmp_path / "run"
    (folder / "checkpoint-4").mkdir(parents=True)
    for name in ("optimizer.pt", "rng_state.pth", "training_args.bin", "checkpoint-4/optimizer.pt"):
        (folder / name).write_bytes(b"pickle")
    model, processor = saved["rrg_mamba"]["model"], saved["rrg_mamba"]["processor"]
    with pytest.warns(UserWarning, match="optimizer.pt, rng_state.pth, training_args.bin"):
        save_for_hub(model, processor, folder)
    push_to_hub(model, processor, "someone/run", folder)
    (patterns,) = uploads
    assert {"config.json", "model.safetensors", "README.md", "modeling_rrg_mamba.py"} <= set(patterns)
    assert not any(name.endswith((".pt", ".pth", ".bin")) or name.startswith("checkpoint") for name in patterns)
    assert not list(folder.glob(".export-*"))  # the staging folder is gone


def test_in_process_registration_uses_vision2seq_only_where_it_exists(monkeypatch):
    """Both packages register on AutoModelForVision2Seq where it exists (transformers 4.57); 5.x dropped the class,
    so there a stand-in for it is installed and the registration rerun."""
    AutoModelForVision2Seq = getattr(sys.modules["transformers"], "AutoModelForVision2Seq", None)
    if AutoModelForVision2Seq is None:
        assert transformers.__version__.split(".")[0] != "4"

        class AutoModelForVision2Seq(_BaseAutoModelClass):
            _model_mapping = _LazyAutoMapping(CONFIG_MAPPING_NAMES, OrderedDict())

        # sys.modules, not the name bound above: importing the EMRRG package replaces the transformers module object
        monkeypatch.setattr(
            sys.modules["transformers"], "AutoModelForVision2Seq", AutoModelForVision2Seq, raising=False
        )
        emrrg_package._register_auto_classes()
        importlib.reload(rrg_package)  # its registration runs at import
    assert AutoModelForVision2Seq._model_mapping[EMRRGConfig] is EMRRGForConditionalGeneration
    assert AutoModelForVision2Seq._model_mapping[RRGMambaConfig] is RRGMambaForConditionalGeneration


# ----------------------------------------------------------------------------------------------------------------
# The exporter on a synthetic package: re-exports, aliases, nested imports, and the import forms it refuses.


def write_package(root: Path, files: dict) -> None:
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    def make(name: str, modeling_source: str, extra: dict | None = None) -> str:
        write_package(
            tmp_path / "src",
            {
                f"{name}/__init__.py": "",
                f"{name}/sub/__init__.py": "from .a import A\nfrom .b import helper as renamed\n",
                f"{name}/sub/a.py": "class A:\n    value = 7\n",
                f"{name}/sub/b.py": "def helper():\n    return 1\n",
                f"{name}/model/__init__.py": "",
                f"{name}/model/modeling_x.py": modeling_source,
                **(extra or {}),
            },
        )
        monkeypatch.syspath_prepend(str(tmp_path / "src"))
        importlib.invalidate_caches()
        return name

    return make


def test_exporter_follows_reexports_and_rewrites_nested_imports(synthetic, tmp_path, monkeypatch):
    package = synthetic(
        "hubpkg_ok",
        """\
        from __future__ import annotations
        import math
        from ..sub import A, renamed as r  # noqa
        from ..sub.b import (
            helper,
        )


        def total():
            from ..sub import renamed
            return A.value + r() + helper() + renamed() + math.floor(0.5)
        """,
    )
    out = tmp_path / "flat" / "exported"
    out.mkdir(parents=True)
    flat = export_remote_code([f"{package}.model.modeling_x"], out, home_package=f"{package}.model")
    assert flat == {
        f"{package}.model.modeling_x": "modeling_x",
        f"{package}.sub.a": "sub_a",
        f"{package}.sub.b": "sub_b",
    }
    source = (out / "modeling_x.py").read_text()
    assert "from .sub_a import A\nfrom .sub_b import helper as r  # noqa\n" in source
    assert "from .sub_b import helper\n" in source
    assert "    from .sub_b import helper as renamed\n" in source
    assert package not in source
    (out / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "flat"))
    assert importlib.import_module("exported.modeling_x").total() == 10


@pytest.mark.parametrize(
    "package, modeling_source, message",
    [
        ("hubpkg_star", "from ..sub.a import *\n", "import \\*"),
        ("hubpkg_plain", "import hubpkg_plain.sub.a\n", "'import hubpkg_plain...'"),
        ("hubpkg_module", "from .. import sub\n", "imports the module hubpkg_module.sub itself"),
        ("hubpkg_oneline", "if True: from ..sub import A\n", "own line"),
    ],
)
def test_exporter_refuses_imports_transformers_cannot_copy(synthetic, tmp_path, package, modeling_source, message):
    synthetic(package, modeling_source)
    with pytest.raises(ValueError, match=message):
        export_remote_code([f"{package}.model.modeling_x"], tmp_path, home_package=f"{package}.model")


def test_a_flat_copy_is_the_same_whichever_modules_were_the_entries(tmp_path):
    """A model's and its processor's save_pretrained export into one folder one after the other, so a module can be an
    entry of one export and only reached in the other: its flat copy must not depend on that."""
    home = "modeling_rrg_mamba.rrg_mamba"
    model = f"{home}.modeling_rrg_mamba"
    for name, entries in (("reached", [model]), ("entry", [model, "modeling_rrg_mamba.layers.ss2d"])):
        (tmp_path / name).mkdir()
        export_remote_code(entries, tmp_path / name, home_package=home)
    reached, entry = ({p.name: p.read_text() for p in (tmp_path / name).glob("*.py")} for name in ("reached", "entry"))
    assert reached == entry
    # layers_ss2d needs the kernels only through ops_selective_scan, and names them itself all the same
    assert "ops_kernels" in get_relative_imports(tmp_path / "reached" / "layers_ss2d.py")


def test_exporter_errors_on_real_and_missing_inputs(tmp_path):
    # the rule-based labeler imports a module object ("from . import lexicon"), which the loader cannot copy
    with pytest.raises(ValueError, match="lexicon itself"):
        export_remote_code(["modeling_rrg_mamba.labeler.rules"], tmp_path, home_package="modeling_rrg_mamba.labeler")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_remote_code(["modeling_rrg_mamba.report_text"], tmp_path / "nope", home_package="modeling_rrg_mamba")
    with pytest.raises(ValueError, match="one package"):
        export_remote_code(
            ["modeling_rrg_mamba.report_text", "json.decoder"], tmp_path, home_package="modeling_rrg_mamba"
        )


# -------------------------------------------------------------------------------------- end to end

E2E_REPORTS = {
    "rrg_mamba": "the heart is normal . no effusion .",
    "emrrg": "no acute cardiopulmonary abnormality . heart size is normal .",
}


def overfit_one_study(model, processor, image: Image.Image, report: str, steps: int = 150) -> tuple[float, float]:
    """A few Adam steps on one (film, report) pair; returns the first and last loss."""
    batch = processor(images=[image], reports=[report])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses[0], losses[-1]


@pytest.mark.slow
def test_end_to_end_train_save_fresh_load_generate_evaluate(image_path, tmp_path):
    """Both models: train, save_for_hub, load in a process without this package (Auto classes, remote code),
    generate, and score the generated report with the package's metrics."""
    from modeling_rrg_mamba.metrics import NLGEvaluator, compute_report_metrics

    image = Image.open(image_path)
    folders, processors = {}, {}
    for name, build in (("rrg_mamba", tiny_rrg_mamba), ("emrrg", tiny_emrrg)):
        model, processor = build()
        first, last = overfit_one_study(model, processor, image, E2E_REPORTS[name])
        assert last < 0.2 * first, f"{name}: training did not reduce the loss ({first:.3f} -> {last:.3f})"
        folders[name] = str(save_for_hub(model, processor, tmp_path / name))
        processors[name] = processor
    generate = dict(num_beams=2, max_new_tokens=24, do_sample=False)
    results = fresh_process(tmp_path, {"folders": folders, "image": image_path, "generate": generate})
    assert results.pop("package_imported") is False
    with NLGEvaluator() as evaluator:  # one METEOR JVM for both models
        for name, result in results.items():
            ids = result["ids"]
            if result["input_ids"] is not None:  # decoder-only EMRRG returns the prompt too
                ids = [row[len(result["input_ids"][0]) :] for row in ids]
            prediction = processors[name].batch_decode(ids, skip_special_tokens=True)[0]
            scores = compute_report_metrics([prediction], [E2E_REPORTS[name]], evaluator=evaluator)
            # the trained model reproduces its one training report, so the scores are those of an exact match
            assert scores["BLEU_1"] > 0.9 and scores["ROUGE_L"] > 0.9, (name, prediction, scores)
            assert result["pipeline"]["text"].strip() == prediction.strip(), (name, result["pipeline"])
            assert "ce_14_micro_f1" in scores
