"""A small RL environment for tinker-cookbook's rl.train on the local byte model.

The policy sees ``"Say a: "`` and writes 8 bytes; the reward is the share of
them that are the letter ``a``. A byte model starts near 1/256 and learns
quickly, so a few steps show the reward rising.
"""

from __future__ import annotations

from collections.abc import Sequence

import chz
import tinker
from tinker_cookbook.rl.types import Env, EnvGroupBuilder, RLDataset, RLDatasetBuilder, StepResult

PROMPT = list(b"Say a: ")
TARGET = ord("a")


class LetterEnv(Env):
    async def initial_observation(self):  # noqa: ANN201
        return tinker.ModelInput.from_ints(PROMPT), []

    async def step(self, action, *, extra=None) -> StepResult:  # noqa: ANN001
        reward = sum(1 for t in action if t == TARGET) / max(1, len(action))
        return StepResult(reward=reward, episode_done=True, next_observation=tinker.ModelInput.empty(),
                          next_stop_condition=[], metrics={"letter_share": reward})


class LetterGroup(EnvGroupBuilder):
    def __init__(self, size: int) -> None:
        self.size = size

    async def make_envs(self) -> Sequence[Env]:
        return [LetterEnv() for _ in range(self.size)]

    async def compute_group_rewards(self, trajectory_group, env_group):  # noqa: ANN001, ANN201
        return [(0.0, {}) for _ in trajectory_group]

    def logging_tags(self) -> list[str]:
        return ["letter"]


class LetterDataset(RLDataset):
    def __init__(self, batches: int, groups: int, group_size: int) -> None:
        self.batches, self.groups, self.group_size = batches, groups, group_size

    def get_batch(self, index: int) -> Sequence[EnvGroupBuilder]:
        return [LetterGroup(self.group_size) for _ in range(self.groups)]

    def __len__(self) -> int:
        return self.batches


@chz.chz
class LetterDatasetBuilder(RLDatasetBuilder):
    batches: int = 6
    groups: int = 4
    group_size: int = 8

    async def __call__(self) -> tuple[RLDataset, RLDataset | None]:
        return LetterDataset(self.batches, self.groups, self.group_size), None
