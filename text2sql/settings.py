"""Every limit the toolkit enforces, in one place, with safe defaults.

Each field can be overridden by an environment variable named ``TEXT2SQL_<FIELD>``
(upper case), e.g. ``TEXT2SQL_QUERY_TIMEOUT_S=2``. Read once per call of
``get_settings()`` so tests can change the environment with monkeypatch.

    python -c "from text2sql.settings import get_settings; print(get_settings())"
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Settings:
    # Sandbox: what one SQL query may cost.
    query_timeout_s: float = 5.0
    """Wall-clock limit for one query, enforced inside SQLite by a progress handler."""
    max_rows: int = 1000
    """Rows returned at most; the result says "truncated" when there were more."""
    max_value_bytes: int = 10_000_000
    """SQLITE_LIMIT_LENGTH: the largest string or blob a query may build (stops huge string functions)."""
    max_sql_chars: int = 100_000
    """SQLITE_LIMIT_SQL_LENGTH: the longest SQL text accepted."""
    max_like_pattern_chars: int = 1000
    """SQLITE_LIMIT_LIKE_PATTERN_LENGTH: LIKE/GLOB matching backtracks inside one C call."""
    max_result_bytes: int = 50_000_000
    """Characters and bytes of values one query may return (1000 rows of 10 MB values would be 10 GB)."""
    query_workers: int = 4
    """Queries running at once, each in its own worker process that is killed when it overruns
    (0: run queries in the calling process, without the kill or the memory limit below)."""
    query_kill_after_s: float = 2.0
    """A worker still busy this long after ``query_timeout_s`` is killed: one long C call (e.g.
    instr() on multi-megabyte strings) never reaches the progress handler."""
    query_memory_bytes: int = 512 * 1024 * 1024
    """Address-space limit (RLIMIT_AS) of a query worker process."""

    # Uploads.
    max_upload_bytes: int = 50 * 1024 * 1024
    """Largest database file accepted (the app also caps the HTTP upload at this size)."""
    upload_retention_s: int = 3600
    """Gradio keeps an uploaded file in its cache this long, and looks for old ones as often."""

    # Schema -> prompt.
    sample_values: int = 3
    """Distinct example values shown per column in the prompt."""
    max_value_chars: int = 40
    """Example strings are cut to this many characters."""
    max_prompt_tokens: int = 3072
    """Prompt budget: sample values, then unlikely tables are dropped to fit (with a warning)."""
    schema_tables: int = 0
    """Show the prompt only this many tables, those most related to each question (0: every
    table). 3 gains EX on Spider dev (+5.2 points on the questions it changes, 1.5B greedy) but
    is not the default: a per-question schema has no per-database prefix to warm, so questions
    about a chosen database get slower (results/schema-tables/README.md)."""
    max_tables: int = 500
    """Tables read from one database at most (keeps schema rendering bounded on hostile files)."""
    introspection_timeout_s: float = 10.0
    """Time limit for reading a database's schema and sample values."""

    # Generation.
    default_model: str = ""
    """The registry entry used when none is named (app, CLI, REST, gradio_client); "" keeps the
    registry file's ``default``. E.g. ``qwen2.5-coder-0.5b-spider``: the fine-tuned 0.5B, half the
    default's memory, faster, less accurate, and it also runs on transformers."""
    engine: str = "auto"
    """Backend of registry entries whose backend is "auto": "auto" (llama.cpp when llama-cpp-python
    is installed and there is no NVIDIA GPU, else transformers), "llama.cpp" or "transformers"."""
    threads: int = 0
    """CPU threads llama.cpp computes with (0: every core this process may use)."""
    prefix_cache_mb: int = 256
    """llama.cpp: memory for the KV states of recently used schema prefixes (least recently used dropped first)."""
    dtype: str = "auto"
    """Weights dtype on CPU: "auto" (bf16 where the CPU has AVX512-BF16/AMX, else fp32), "bfloat16" or "float32"."""
    cpu_flags: str = ""
    """CPU feature flags to act on instead of /proc/cpuinfo's, comma-separated (e.g. "avx2"):
    every choice made from CPU features then follows these (text2sql/cpu.py)."""
    max_new_tokens: int = 256
    """Tokens generated at most for one SQL answer."""
    best_of_k: int = 4
    """Candidates per question in best-of-k mode (the first is the greedy answer)."""
    auto_k: int = 8
    """Candidates per question when auto mode escalates (greedy failed or returned nothing).
    8, not 4: on the 972 Spider dev questions auto scores 60.9% with 8 and 58.2% with 4,
    while 63% of questions keep the greedy answer (``python -m evaluation.auto_mode``)."""
    sampling_temperature: float = 0.8
    """Temperature the other best-of-k candidates are drawn at."""
    candidate_timeout_s: float = 2.0
    """Time limit for running one best-of-k candidate (several run per question)."""
    fix_column_names: bool = True
    """Put a query's unresolvable column names right where exactly one fix exists
    (``text2sql.sqlcheck.fix_column_names``; best-of-k candidates so fixed count only where none
    ran as written). Off: the model's SQL runs as written (``evaluate --no-column-fixes``)."""
    selection_rule: str = "vote"
    """How best of k picks among its groups of equal results: "vote" (the most votes, results
    with rows first) or "selector" (the fitted model, ``text2sql.selector``; not the default:
    on held-out train databases it did not beat the vote, results/tuning/README.md)."""

    # Serving.
    max_question_chars: int = 2_000
    """The longest question accepted (app and APIs)."""
    max_schema_chars: int = 200_000
    """The longest pasted schema accepted (app and APIs); parsing is not free."""
    queue_size: int = 64
    """Requests waiting for a model at most; more are refused with 503."""
    generation_concurrency: int = 1
    """Generations running at once (they share the CPU; more only adds latency)."""
    max_request_bytes: int = 2_000_000
    """Largest HTTP request body other than a file upload (JSON is parsed in memory)."""
    shutdown_grace_s: float = 3.0
    """On SIGTERM, how long open connections (every browser tab keeps one) may delay the stop;
    then the server closes them and deletes its files. Keep it under the platform's kill delay."""

    # Where converted model weights are cached.
    cache_dir: str = ""
    """Defaults to $XDG_CACHE_HOME/text2sql (or ~/.cache/text2sql)."""

    @property
    def cache_path(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(xdg) / "text2sql"


RUN_SETTINGS = ("schema_tables", "fix_column_names")
"""Settings that change a run's answers beyond its model and decoding (what a prompt shows, what
is done with the SQL): an evaluation records on each line those not at their default."""


def get_settings() -> Settings:
    """Defaults overridden by TEXT2SQL_* environment variables."""
    overrides = {}
    for field in dataclasses.fields(Settings):
        raw = os.environ.get(f"TEXT2SQL_{field.name.upper()}")
        if raw is None:
            continue
        kind = type(field.default)
        try:
            overrides[field.name] = _boolean(raw) if kind is bool else kind(raw)
        except ValueError:
            raise ValueError(f"TEXT2SQL_{field.name.upper()}={raw!r} is not a valid {kind.__name__}") from None
    return Settings(**overrides)


def _boolean(raw: str) -> bool:
    """"1", "true", "yes", "on" or "0", "false", "no", "off" (any case)."""
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)
