"""What `python app.py` prints: one line once the default model can answer, nothing else.

    python -m pytest tests/app/test_console.py -v
"""

import logging
import warnings

import httpx

from benchmarks.serve import ServerProcess


def test_the_server_prints_one_line_when_the_model_is_ready():
    with ServerProcess(fake=True) as server:  # `python app.py` on the fake model, in a subprocess
        assert httpx.get(server.url + "health").status_code == 200
        lines = server.log_text().splitlines()
    assert lines == [f"text2sql is ready at {server.url} (fake loaded in 0 s)"]


def test_quiet_console_drops_library_notices_and_keeps_errors(fake_models):
    import huggingface_hub
    import transformers

    import app

    bitsandbytes = logging.getLogger("bitsandbytes.backends.cpu.ops")
    verbosity = transformers.logging.get_verbosity()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            app.quiet_console()
            warnings.warn_explicit("is_gradient_checkpointing is deprecated", FutureWarning, "modeling_utils.py", 1,
                                   module="transformers.modeling_utils")
            warnings.warn_explicit("a warning of ours", FutureWarning, "api.py", 1, module="webapp.api")
        assert [str(w.message) for w in caught] == ["a warning of ours"]
        assert not bitsandbytes.isEnabledFor(logging.WARNING) and bitsandbytes.isEnabledFor(logging.ERROR)
    finally:
        logging.getLogger("bitsandbytes").setLevel(logging.NOTSET)
        transformers.logging.set_verbosity(verbosity)
        transformers.logging.enable_progress_bar()
        huggingface_hub.utils.enable_progress_bars()
