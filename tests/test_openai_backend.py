"""The openai backend against a real OpenAI-compatible server on loopback: llama-cpp-python's
server (started by ``text2sql.llama_server``) serving the SmolLM2 GGUF, compared with the
in-process llama.cpp backend on the same file: the rendered prompt, greedy answers and their
stop, best of k, the pipeline and the CLI through it; then failures (a server that is down,
one that never answers, 429/503 from a proxy in front of the real server, a wrong key).

    python -m pytest tests/test_openai_backend.py -v
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import SERVER_KEY_ENV, SPIDER, build_db, served_smollm2
from tests.test_llamacpp import NOISE, PROMPTS, QUESTIONS, SINGER, forced_logits
from text2sql import engine
from text2sql.backends.openai import read_stream
from text2sql.errors import ModelUnavailableError
from text2sql.prompt import build_messages, build_repair_messages
from text2sql.registry import Registry
from text2sql.sqlout import sql_is_complete


@pytest.fixture
def registry(smollm2_server):
    engine.unload_all()
    yield Registry.from_dict({"models": {
        "served": served_smollm2(smollm2_server),
        "local": {"backend": "llama.cpp", "base": {"embedded": "smollm2-135m-instruct"}, "generation": {"max_new_tokens": 48}},
    }})
    engine.unload_all()


def entry(base_url: str, max_new_tokens: int = 32, **endpoint) -> Registry:
    """A registry with one model, ``variant``: the served entry with other settings."""
    return Registry.from_dict({"models": {"variant": served_smollm2(base_url, max_new_tokens, **endpoint)}})


def raw_completion(base_url: str, messages, **body) -> dict:
    """The server's own answer, not streamed and not stopped by us."""
    response = httpx.post(f"{base_url}/chat/completions", json={"model": "smollm2-135m", "messages": messages, **body},
                          headers={"Authorization": f"Bearer {os.environ[SERVER_KEY_ENV]}"}, timeout=120)
    response.raise_for_status()
    return response.json()


def token_logprobs(answer: dict) -> list[tuple[str, float]]:
    return [(entry["token"], entry["logprob"]) for entry in answer["choices"][0]["logprobs"]["content"]]


def local_logprobs(local, messages, tokens: list[str]) -> list[float]:
    """Our own log-probabilities of the server's answer tokens, on our rendering of ``messages``."""
    ids = local.model.tokenize("".join(tokens))
    assert [local.model.piece(i).decode() for i in ids] == tokens
    rows = forced_logits(local, local.token_ids(messages), ids)
    return [float(row[i] - row.max() - np.log(np.exp(row - row.max()).sum())) for row, i in zip(rows, ids)]


def test_the_server_renders_our_prompt_as_our_chat_template_does(registry, smollm2_server):
    """The same prompt tokens (the server's count equals ours), and the server's per-token
    log-probabilities of its greedy answer equal ours on our rendering within llama.cpp's batch
    noise; on another rendering (no system prompt) they don't."""
    local = engine.load_generator("local", registry)
    cases = PROMPTS + [build_repair_messages(SINGER, QUESTIONS[0], "SELECT count(*) FROM singers", "no such table: singers"),
                       [{"role": "system", "content": "Ünïcödé 数据库 tabs\tand\nnewlines"}, {"role": "user", "content": "q"}]]
    for messages in cases:
        answer = raw_completion(smollm2_server, messages, max_tokens=1, temperature=0)
        assert answer["usage"]["prompt_tokens"] == local.count_tokens(messages)
    answer = raw_completion(smollm2_server, PROMPTS[0], max_tokens=8, temperature=0, logprobs=True, top_logprobs=1)
    served = token_logprobs(answer)
    ours = local_logprobs(local, PROMPTS[0], [t for t, _ in served])
    assert max(abs(a - b) for (_, a), b in zip(served, ours)) <= NOISE
    elsewhere = local_logprobs(local, PROMPTS[0][1:], [t for t, _ in served])
    assert max(abs(a - b) for (_, a), b in zip(served, elsewhere)) > NOISE


CHATTY = [{"role": "user", "content": "Show the SQL query SELECT 1; in a code block and then explain it in detail."}]


def test_greedy_answers_stop_where_the_first_statement_ends(registry, smollm2_server):
    """An answer that holds a whole SQL statement ends with the token that completed it (the
    in-process stop rule, applied to the stream), where the server alone writes on."""
    generator = engine.load_generator("served", registry)
    local = engine.load_generator("local", registry)
    answers = generator.generate(PROMPTS + [CHATTY])
    assert len(answers) == len(PROMPTS) + 1
    for answer in answers:
        if sql_is_complete(answer):
            last_token = local.model.piece(local.model.tokenize(answer)[-1]).decode()
            assert not sql_is_complete(answer[: -len(last_token)])
    alone = raw_completion(smollm2_server, CHATTY, max_tokens=32, temperature=0)["choices"][0]["message"]["content"]
    assert sql_is_complete(answers[-1]) and alone.startswith(answers[-1]) and len(alone) > len(answers[-1]) + 20
    assert len(generator.generate([CHATTY], max_new_tokens=3)[0]) < len(answers[-1])


def texts(candidates) -> list[list[str]]:
    return [[c.text for c in per_prompt] for per_prompt in candidates]


def test_best_of_k_greedy_first_seeded_draws_with_log_likelihoods(registry, smollm2_server):
    """The first candidate is the greedy answer, the draws are seeded (texts equal on a second
    call; the numbers within llama.cpp's noise: the server's prompt cache differs between the
    calls), and each candidate's log-likelihood is the sum of the streamed tokens' log-probabilities.
    PROMPTS[1] is left out: its greedy answer hangs on a near tie that the cache state can flip."""
    prompts = PROMPTS[::2]
    generator = engine.load_generator("variant", entry(smollm2_server, max_new_tokens=12))
    candidates = generator.sample(prompts, k=3, temperature=1.0, seed=0)
    assert [len(c) for c in candidates] == [3, 3]
    assert [c[0].text for c in candidates] == generator.generate(prompts)
    for per_prompt in candidates:
        assert len({s.text for s in per_prompt[1:]}) > 1
        assert all(s.tokens > 0 and s.logprob < 0 for s in per_prompt)
    again = generator.sample(prompts, k=3, temperature=1.0, seed=0)
    assert texts(again) == texts(candidates)
    for first, second in zip(sum(again, []), sum(candidates, [])):
        assert abs(first.logprob - second.logprob) <= NOISE / 3 * first.tokens
    assert [t[1:] for t in texts(generator.sample(prompts, k=3, temperature=1.0, seed=1))] != [t[1:] for t in texts(candidates)]
    greedy = candidates[0][0]
    whole = token_logprobs(raw_completion(smollm2_server, prompts[0], max_tokens=greedy.tokens, temperature=0,
                                          logprobs=True, top_logprobs=1))
    assert "".join(t for t, _ in whole) == greedy.text
    assert abs(greedy.logprob - sum(p for _, p in whole)) <= NOISE / 3 * greedy.tokens


def test_a_server_that_ignores_n_still_gives_k_candidates(registry, smollm2_server):
    """``n: true`` on a server that answers one choice per request (llama.cpp's): the draws it
    left out are asked one by one."""
    generator = engine.load_generator("variant", entry(smollm2_server, max_new_tokens=8, n=True))
    candidates = generator.sample(PROMPTS[:1], k=3, temperature=1.0, seed=0)[0]
    assert len(candidates) == 3 and all(c.tokens > 0 for c in candidates)


def test_choices_streamed_together_are_read_apart():
    """vLLM's ``n``: one stream interleaving the choices' chunks (OpenAI's chunk format)."""
    def chunk(index, content, logprob, finish=None):
        part = {"index": index, "delta": {"content": content}, "finish_reason": finish,
                "logprobs": {"content": [{"token": content, "logprob": logprob}]}}
        return "data: " + json.dumps({"object": "chat.completion.chunk", "choices": [part]})

    lines = [chunk(0, "SELECT", -0.5), chunk(1, "Here", -1.0), chunk(0, " 1;", -0.25), chunk(1, " is", -2.0),
             chunk(0, " more", -9.0), chunk(1, " all", -1.0, finish="stop"), "data: [DONE]"]
    choices = read_stream(lines, wanted=2, deadline=time.monotonic() + 10)
    assert [(c.text, c.logprob, c.tokens, c.done) for c in choices.values()] == [
        ("SELECT 1;", -0.75, 2, True), ("Here is all", -4.0, 3, True)]


PEOPLE_SQL = "CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO person VALUES (1, 'Ann'), (2, 'Bob');"


@pytest.fixture
def people_db(tmp_path):
    return build_db(tmp_path / "people.sqlite", PEOPLE_SQL)


def test_the_pipeline_answers_through_the_server(served_registry, people_db):
    from text2sql.pipeline import Database, ask
    from text2sql.selection import Decoding

    database = Database.from_file(people_db)
    answer = ask(database, "How many people are there?")
    assert answer.generation.model == "served" and answer.generation.prompt_tokens > 40
    best = ask(database, "How many people are there?", decoding=Decoding.best_of(3, seed=0))
    assert len(best.generation.candidates) == 3
    assert best.generation.candidates[0].raw == answer.generation.raw
    assert all(c.error or c.votes for c in best.generation.candidates)


def test_the_cli_answers_through_the_server(served_registry, people_db, capsys):
    from text2sql.cli import main

    code = main(["ask", "--db", str(people_db), "--json", "How many people are there?"])
    payload = json.loads(capsys.readouterr().out)
    assert payload["model"] == "served" and "raw" in payload
    assert code in (0, 2)  # 2: SmolLM2's SQL failed, with the reason
    assert main(["models", "--json"]) == 0
    assert [(m["name"], m["backend"]) for m in json.loads(capsys.readouterr().out)] == [("served", "openai")]


def test_prompt_tokens_are_counted_as_the_server_counts_them(registry, smollm2_server, tiny_model_dir):
    """With the base's GGUF (llama.cpp, vocabulary only) or its tokenizer folder (transformers:
    the tiny model carries SmolLM2's tokenizer), the count is the server's own."""
    by_gguf = engine.load_generator("served", registry)
    by_folder = engine.load_generator("by-folder", Registry.from_dict({"models": {"by-folder": {
        **served_smollm2(smollm2_server), "base": {"path": str(tiny_model_dir)}}}}))
    for messages in PROMPTS + [CHATTY]:
        served = raw_completion(smollm2_server, messages, max_tokens=1, temperature=0)["usage"]["prompt_tokens"]
        assert by_gguf.count_tokens(messages) == by_folder.count_tokens(messages) == served
    assert "estimated" not in by_gguf.engine + by_folder.engine


def test_without_a_tokenizer_the_estimate_is_at_or_above_the_true_count(registry, smollm2_server):
    """A base named only by a Hub repo that isn't cached (offline): Spider's prompts, one per
    dev database, estimated at or above SmolLM2's count (its tokenizer needs more tokens than
    Qwen's), and not wildly above."""
    from text2sql.spider import Spider

    local = engine.load_generator("local", registry)
    served = engine.load_generator("estimating", Registry.from_dict({"models": {"estimating": {
        **served_smollm2(smollm2_server), "base": {"repo_id": "nobody/uncached", "revision": "0" * 40}}}}))
    spider = Spider(SPIDER)
    first_per_database = {e.db_id: e for e in reversed(spider.examples("dev")) if spider.has_database(e.db_id)}
    for example in first_per_database.values():
        messages = build_messages(spider.schema(example.db_id), example.question)
        assert local.count_tokens(messages) <= served.count_tokens(messages) <= 2 * local.count_tokens(messages)
    assert "prompt tokens estimated" in served.engine


# ---------------------------------------------------------------------------
# Failures


def test_a_server_that_is_down_is_named_soon(registry):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    generator = engine.load_generator("variant", entry(url, retries=2, backoff_s=0.1))
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError, match=f"{url}.*ConnectError.*3 attempts"):
        generator.generate(PROMPTS[:1])
    assert time.monotonic() - started < 5


def process_state(pid: int) -> str | None:
    """'R', 'S', 'Z' (ended, not yet reaped)... or None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_server_ends_when_the_process_that_started_it_is_killed():
    """``running`` starts its server with ``stop_with_parent``: a test run killed outright (no
    clean-up) leaves no server behind. Here the child is ``sleep``, the parent killed by SIGKILL."""
    code = ("import subprocess, time; from text2sql.llama_server import stop_with_parent; "
            "child = subprocess.Popen(['sleep', '120'], preexec_fn=stop_with_parent()); "
            "print(child.pid, flush=True); time.sleep(120)")  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    child = int(parent.stdout.readline())
    try:
        assert process_state(child) in ("S", "R")
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while process_state(child) not in (None, "Z") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_state(child) in (None, "Z")
    finally:
        if process_state(child) not in (None, "Z"):
            os.kill(child, signal.SIGKILL)


def test_a_server_that_never_answers_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # connections complete in the backlog; nothing ever reads or answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    try:
        generator = engine.load_generator("variant", entry(url, timeout_s=0.5, retries=1, backoff_s=0.1))
        started = time.monotonic()
        with pytest.raises(ModelUnavailableError, match=f"{url}.*timed out.*2 attempts"):
            generator.generate(PROMPTS[:1])
        assert time.monotonic() - started < 4
    finally:
        listener.close()
        engine.unload_all()


class FlakyProxy(BaseHTTPRequestHandler):
    """Answers the first requests with the statuses in ``failures`` (429s with Retry-After: 1),
    then forwards requests to the real server."""

    upstream = ""
    failures: list[int] = []
    seen: list[float] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(time.monotonic())
        if self.failures:
            status = self.failures.pop(0)
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")
            return
        forwarded = httpx.post(self.upstream + self.path.removeprefix("/v1"), content=body, timeout=120,
                               headers={"Authorization": self.headers["Authorization"], "Content-Type": "application/json"})
        self.send_response(forwarded.status_code)
        self.send_header("Content-Type", forwarded.headers["content-type"])
        self.send_header("Content-Length", str(len(forwarded.content)))
        self.end_headers()
        self.wfile.write(forwarded.content)

    def log_message(self, *args):
        pass


def test_429_and_5xx_are_retried_with_backoff_and_retry_after(registry, smollm2_server):
    FlakyProxy.upstream, FlakyProxy.failures, FlakyProxy.seen = smollm2_server, [503, 429], []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), FlakyProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}/v1"
        generator = engine.load_generator("variant", entry(url, retries=2, backoff_s=0.3))
        answer = generator.generate(PROMPTS[:1])[0]
    finally:
        proxy.shutdown()
    assert answer == engine.load_generator("served", registry).generate(PROMPTS[:1])[0]
    first, second, third = FlakyProxy.seen
    assert second - first >= 0.3 and third - second >= 1.0  # the backoff, then the server's Retry-After


def test_a_refusal_is_not_retried_and_the_key_never_shows(registry, smollm2_server, monkeypatch):
    key = os.environ[SERVER_KEY_ENV]
    monkeypatch.setenv("TEXT2SQL_OTHER_KEY", "wrong-key")
    generator = engine.load_generator("variant", entry(smollm2_server, api_key_env="TEXT2SQL_OTHER_KEY", backoff_s=5))
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="HTTP 401.*TEXT2SQL_OTHER_KEY") as refused:
        generator.generate(PROMPTS[:1])
    assert time.monotonic() - started < 3 and smollm2_server in str(refused.value)
    monkeypatch.delenv("TEXT2SQL_OTHER_KEY")
    engine.unload_all()
    with pytest.raises(ModelUnavailableError, match="environment variable TEXT2SQL_OTHER_KEY, which is not set"):
        engine.load_generator("variant", entry(smollm2_server, api_key_env="TEXT2SQL_OTHER_KEY"))
    served = engine.load_generator("served", registry)
    assert key not in served.origin + served.engine + repr(served.spec)


def test_bad_endpoint_entries_are_refused_clearly(smollm2_server):
    engine.unload_all()
    for endpoint, message in (({"base_url": "localhost:8000"}, "http"), ({"model": ""}, "needs endpoint model"),
                              ({"timeout": 3}, "unknown endpoint keys")):
        bad = Registry.from_dict({"models": {"variant": {**served_smollm2(smollm2_server), "endpoint": {
            **served_smollm2(smollm2_server)["endpoint"], **endpoint}}}})
        with pytest.raises(ModelUnavailableError, match=message):
            engine.load_generator("variant", bad)


@pytest.mark.parametrize("flags, extra_buffers", [("avx2,avx512f,avx512_bf16", True), ("avx512f,amx_tile,amx_int8", False)])
def test_the_server_loads_models_as_the_llama_cpp_backend_does_on_each_cpu_kind(monkeypatch, flags, extra_buffers):
    """text2sql.llama_server: llama.cpp's extra weight buffers everywhere but on AMX CPUs."""
    import llama_cpp.llama_cpp as bindings

    from text2sql.llama_server import prepare_llama_cpp

    prepare_llama_cpp()
    monkeypatch.setenv("TEXT2SQL_CPU_FLAGS", flags)
    assert bindings.llama_model_default_params().use_extra_bufts is extra_buffers


@pytest.mark.skipif(not (SPIDER / "dev.json").is_file(), reason="Spider data not found")
def test_evaluate_asks_a_server_several_questions_at_once_in_the_same_format(served_registry, tmp_path):
    """--concurrency 3: the lines of a one-at-a-time run, in the same order, each naming the
    server; an interrupted run resumes; in-process engines are refused."""
    from evaluation import evaluate
    from text2sql.spider import Spider

    def run(out: str, limit: int, *more: str) -> list[dict]:
        evaluate.main(["--model", "served", "--spider", str(SPIDER), "--out", str(tmp_path / out), "--batch-size", "1",
                       "--workers", "1", "--limit", str(limit), *more])
        return [json.loads(line) for line in (tmp_path / out / "predictions.jsonl").read_text().splitlines()]

    one = run("one", 5)
    run("three", 3, "--concurrency", "3")
    with open(tmp_path / "three" / "predictions.jsonl", "a") as handle:
        handle.write('{"id": 3, "db_id": "conc')  # cut short by an interruption
    three = run("three", 5, "--concurrency", "3")
    assert [p["id"] for p in three] == [p["id"] for p in one] == [0, 1, 2, 3, 4]
    for alone, together in zip(one, three):
        assert set(alone) == set(together) and alone["engine"] == together["engine"]
        assert together["engine"].startswith("openai") and together["model"] == "served"
    in_process = Registry.from_dict({"models": {"local": {"backend": "llama.cpp", "base": {"embedded": "smollm2-135m-instruct"}}}})
    (tmp_path / "local").mkdir()
    with pytest.raises(SystemExit, match="--concurrency is for models behind a server"):
        evaluate.generate_predictions("local", Spider(SPIDER), "dev", tmp_path / "local", 2, 1, registry=in_process,
                                      concurrency=2)
