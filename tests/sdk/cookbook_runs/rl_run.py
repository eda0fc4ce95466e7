"""Run tinker-cookbook's rl.train, unmodified, with the letter environment (argv: log_path base_url)."""

import asyncio
import sys

from letter_env import LetterDatasetBuilder
from tinker_cookbook.rl import train

from tinker_actors.sdk.cookbook import register_local_tokenizers

register_local_tokenizers()
log_path, base_url = sys.argv[1], sys.argv[2]
config = train.Config(
    learning_rate=3e-2, dataset_builder=LetterDatasetBuilder(), model_name="tinker-actors/byte-lm-tiny",
    recipe_name="letter_rl", max_tokens=8, log_path=log_path, base_url=base_url, lora_rank=8,
    eval_every=0, save_every=0, num_groups_to_log=0, rollout_json_export=False,
)
asyncio.run(train.main(config))
