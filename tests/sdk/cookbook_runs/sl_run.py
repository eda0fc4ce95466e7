"""Run tinker-cookbook's supervised.train, unmodified, on a conversation file (argv: log_path data base_url epochs)."""

import asyncio
import sys

from tinker_cookbook.supervised import train
from tinker_cookbook.supervised.data import FromConversationFileBuilder
from tinker_cookbook.supervised.types import ChatDatasetBuilderCommonConfig

from tinker_actors.sdk.cookbook import register_local_tokenizers

register_local_tokenizers()
log_path, data_file, base_url, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = "tinker-actors/byte-lm-tiny"
config = train.Config(
    log_path=log_path, model_name=model, recipe_name="sl_local", base_url=base_url,
    dataset_builder=FromConversationFileBuilder(
        file_path=data_file,
        common_config=ChatDatasetBuilderCommonConfig(
            model_name_for_tokenizer=model, renderer_name="role_colon", max_length=256, batch_size=4),
    ),
    learning_rate=1e-2, lora_rank=8, num_epochs=epochs, save_every=2, eval_every=0, infrequent_eval_every=0,
)
asyncio.run(train.main(config))
