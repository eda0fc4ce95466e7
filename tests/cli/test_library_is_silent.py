"""The library never writes to stdout/stderr by itself; its logs go through ``logging``.

A script that only uses the library (no logging configured) runs as a child
process against the local server: its stdout and stderr hold exactly what the
script printed. The same script with ``logging.basicConfig`` shows the
library's events on stderr, so an application routes them as it does httpx's.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from cli_runner import KEY, env

SCRIPT = textwrap.dedent(
    """
    import sys
    import trio
    import tinker_actors
    from tinker_actors.transport.client import Transport
    from tinker_actors.wire import types as wt

    if len(sys.argv) > 2:
        import logging
        logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

    async def main():
        async with tinker_actors.open_service(base_url=sys.argv[1], api_key="KEY") as service:
            training = await service.create_lora_training_client("tinker-actors/byte-lm-tiny", rank=4)
            tok = training.get_tokenizer()
            tokens = tok.encode("the cat", add_bos=True)
            datum = wt.Datum(
                model_input=wt.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
            )
            await training.forward_backward([datum], "cross_entropy")
            await training.optim_step(wt.AdamParams(learning_rate=1e-2))
            sampler = await training.save_weights_and_get_sampling_client()
            out = await sampler.sample(wt.ModelInput.from_ints(tok.encode("the ")), 1, wt.SamplingParams(max_tokens=4))
            print("samples", len(out.sequences))
        # a warning-level event: with no logging configured it must stay silent too
        async with Transport("https://127.0.0.1:9/", "KEY", verify=False):
            pass
        print("done")

    trio.run(main)
    """
).replace("KEY", KEY)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), *args], env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=120
    )


def test_library_only_script_output_is_exactly_what_it_printed(server_url: str, tmp_path: Path) -> None:
    proc = _run(tmp_path, server_url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "samples 1\ndone\n"
    assert proc.stderr == ""


def test_an_application_routes_library_logs_through_logging(server_url: str, tmp_path: Path) -> None:
    proc = _run(tmp_path, server_url, "--configure-logging")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "samples 1\ndone\n"
    lines = proc.stderr.splitlines()
    assert any(line.startswith("tinker_actors.runtime.service INFO service_open ") for line in lines), proc.stderr
    assert any(
        line.startswith("tinker_actors.transport.client WARNING transport.tls_verification_disabled") for line in lines
    ), proc.stderr
    assert KEY not in proc.stderr
