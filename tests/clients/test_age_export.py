"""save_weights_external with age_encryption_recipients: the server stores only .age files; the client decrypts."""

from __future__ import annotations

import pyrage
import pytest
from pyrage import x25519

from tinker_actors.clients.external import download_external_weights
from tinker_actors.errors import BadRequestError
from tinker_actors.wire import types as wt

BASE = "tinker-actors/byte-lm-tiny"


async def test_encrypted_export_decrypts_to_the_plain_export(tmp_path, h) -> None:
    me, stranger = x25519.Identity.generate(), x25519.Identity.generate()
    async with h.local_server(tmp_path / "server") as url, h.client_on(url) as service:
        training = await service.create_lora_training_client(BASE, rank=2, seed=0)
        datum = wt.Datum(model_input=wt.ModelInput.from_ints([1, 2, 3]),
                         loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 1.0, 1.0]})
        await training.forward_backward([datum], "cross_entropy")
        await training.optim_step(wt.AdamParams(learning_rate=1e-2))
        plain = (await training.save_weights_external("plain")).path
        sealed = (await training.save_weights_external("sealed", age_encryption_recipients=[str(me.to_public())])).path
        rest = service.create_rest_client()

        names = sorted((await rest.get_external_weights_urls(sealed)).urls)
        assert names and all(n.endswith(".age") for n in names)

        clear = await download_external_weights(rest, plain, tmp_path / "plain")
        opened = await download_external_weights(rest, sealed, tmp_path / "opened", identities=[str(me)])
        assert [p.name for p in opened] == [p.name for p in clear]
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(opened, clear, strict=True))

        with pytest.raises(pyrage.DecryptError):
            await download_external_weights(rest, sealed, tmp_path / "stranger", identities=[stranger])
        assert not [p for p in (tmp_path / "stranger").iterdir() if not p.name.endswith(".part")]

        with pytest.raises(BadRequestError, match=r"age_encryption_recipients\[0\]"):
            await training.save_weights_external("bad", age_encryption_recipients=["age1notakey"])
