"""ROPG-RL: fine-tune the dense retriever by REINFORCE on the LLM's feedback (spec lamp.md 8.5).

    python -m ropg.train_rl --do_train --task LaMP_4 --train_data data/sample/LaMP_4/train_questions.json \\
        --train_outputs data/sample/LaMP_4/train_outputs.json --scores_path runs/ropg/feedback/train.json \\
        --name rl --ctx_size 4 --total_steps 100

Per question one candidate j ~ softmax(<q, d>), reward feedback(j) - feedback(first candidate), loss
-log pi(j) * reward. Checkpoints: <checkpoint_dir>/<name>/checkpoint/step-N and latest (an HF encoder folder for
lamp_rag.rank_profiles --contriever_checkpoint). Also under torchrun --nproc_per_node N (DDP). A rerun resumes
from latest.
"""
from __future__ import annotations

from typing import Sequence

from data.cli import run


def main(argv: Sequence[str] | None = None) -> int:
    from ropg.training import main as train_main

    return train_main(argv, "rl", __doc__)


if __name__ == "__main__":
    raise SystemExit(run(main))
