"""Model folders for the Triton ``planner`` role, written per deployment (the model path varies).

The planner is not in the default repository (``model_repository/``): a server only loads it when
asked, through ``TritonServer(extra_model_dirs={"planner": <dir>})``. Two variants, one contract
(``PROMPT`` → ``TEXT``):

- :func:`write_planner_repository`: the CPU python-backend model over any local Hugging Face
  causal LM (``model_repository_llm/planner``);
- :func:`write_vllm_planner_repository`: the GPU production pair, a BLS face named ``planner``
  (``model_repository_llm/planner_vllm``) over a vLLM-backend model (docs/llm_planner.md).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from avalign.errors import AvalignError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
LLM_TEMPLATES = PACKAGE_DIR / "model_repository_llm"
PLANNER_MODEL_ENV = "AVALIGN_PLANNER_MODEL"
"""Environment variable naming the local HF model folder a locally started server plans with."""


def _pbtxt_string(value: str) -> str:
    """A protobuf text-format string literal (quotes and backslashes escaped)."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _set_parameters(config_text: str, values: dict[str, str]) -> str:
    """Replace the ``parameters { key: K ... }`` lines of a template config, one per line."""
    lines = config_text.splitlines()
    seen = set()
    for i, line in enumerate(lines):
        for key, value in values.items():
            if line.startswith(f'parameters {{ key: "{key}" '):
                lines[i] = f'parameters {{ key: "{key}" value: {{ string_value: {_pbtxt_string(value)} }} }}'
                seen.add(key)
    for key in values:
        if key not in seen:
            lines.append(f'parameters {{ key: "{key}" value: {{ string_value: {_pbtxt_string(values[key])} }} }}')
    return "\n".join(lines) + "\n"


def _copy_template(template: Path, model_dir: Path) -> None:
    if model_dir.exists():
        shutil.rmtree(model_dir)
    shutil.copytree(template, model_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def write_planner_repository(target_dir: str | Path, model_path: str | Path, *, max_new_tokens: int = 256,
                             constrain_json: bool = True, chat_template: str = "auto",
                             num_threads: int = 1, name: str = "planner") -> Path:
    """Write the CPU planner model folder ``target_dir/name`` for the HF model at ``model_path``.

    Returns the model folder, ready for ``TritonServer(extra_model_dirs={"planner": it})``.
    """
    model_path = Path(model_path).resolve()
    if not (model_path / "config.json").is_file():
        raise AvalignError(f"planner model {model_path}: not a Hugging Face model folder (no config.json)")
    model_dir = Path(target_dir) / name
    _copy_template(LLM_TEMPLATES / "planner", model_dir)
    config = (model_dir / "config.pbtxt").read_text()
    config = config.replace('name: "planner"', f"name: {_pbtxt_string(name)}", 1)
    config = _set_parameters(config, {
        "model_path": str(model_path),
        "max_new_tokens": str(int(max_new_tokens)),
        "constrain_json": "true" if constrain_json else "false",
        "chat_template": chat_template,
        "num_threads": str(int(num_threads)),
        # The copy is outside the package: tell its model.py where avalign is.
        "avalign_include": str(PACKAGE_DIR.parent),
    })
    (model_dir / "config.pbtxt").write_text(config)
    return model_dir


def write_vllm_planner_repository(target_dir: str | Path, model: str, *, tokenizer_path: str | None = None,
                                  llm_name: str = "planner_llm", max_new_tokens: int = 256,
                                  engine_args: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write the GPU pair into the repository ``target_dir``: ``planner`` (BLS face) and
    ``llm_name`` (vLLM backend, ``1/model.json`` = engine arguments with ``model``).

    ``model`` is what vLLM loads (a path inside the serving container, or a hub id where the
    server may download); ``tokenizer_path`` (a local folder the BLS face can read) enables the
    chat template. Returns ``{"planner": dir, llm_name: dir}``.
    """
    root = Path(target_dir)
    face = root / "planner"
    _copy_template(LLM_TEMPLATES / "planner_vllm", face)
    config = _set_parameters((face / "config.pbtxt").read_text(), {
        "llm_model": llm_name, "tokenizer_path": tokenizer_path or "", "max_new_tokens": str(int(max_new_tokens)),
    })
    (face / "config.pbtxt").write_text(config)

    llm = root / llm_name
    if llm.exists():
        shutil.rmtree(llm)
    (llm / "1").mkdir(parents=True)
    args = {"model": model, "dtype": "auto", "max_model_len": 8192, "gpu_memory_utilization": 0.85,
            "enforce_eager": False, "disable_log_requests": True, **(engine_args or {})}
    (llm / "1" / "model.json").write_text(json.dumps(args, indent=2) + "\n")
    (llm / "config.pbtxt").write_text(
        "# vLLM backend: decoupled, batching left to vLLM (the backend completes inputs and outputs).\n"
        'backend: "vllm"\n'
        "max_batch_size: 0\n"
        "model_transaction_policy { decoupled: true }\n"
        "instance_group [ { kind: KIND_MODEL count: 1 } ]\n"
    )
    return {"planner": face, llm_name: llm}


def local_planner_dirs(workspace: str | Path, model_path: str | Path | None = None) -> dict[str, Path]:
    """``extra_model_dirs`` for a locally started server that must also serve ``planner``.

    ``model_path`` defaults to ``$AVALIGN_PLANNER_MODEL``; without either, a clear error.
    """
    model_path = model_path or os.environ.get(PLANNER_MODEL_ENV)
    if not model_path:
        raise AvalignError(
            f"planner 'llm' on a local tritonserver needs {PLANNER_MODEL_ENV}=<local Hugging Face model folder>,"
            " or a triton_url of a server that serves the 'planner' model (docs/llm_planner.md)")
    return {"planner": write_planner_repository(Path(workspace), model_path)}
