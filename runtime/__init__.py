"""The shared method runtime: result folders, resumable generation, per-user loops. Below the methods
(lamp_rag, logit_adjust, ropg, rspg, cope, curp import it), above data/, eval/ and lm/ (never a method).

* ``runtime.run_folder``: the run-folder layout (config.json, run.log, prompts.jsonl, generations.jsonl,
  predictions.json, scores.json) that ``python -m eval.report`` reads for every method;
* ``runtime.generation``: resumable batched generation keyed by everything that changes the text, then
  predictions and scores (``generate_and_score``);
* ``runtime.users``: per-user loops that resume, shard (``--num_shards/--shard_id``, torchrun's
  RANK/WORLD_SIZE) and merge (``python -m runtime.merge``);
* ``runtime.distributed``: one process or many (torchrun, accelerate launch): the process group, rank-0
  writing, DDP wrapping, per-user workers, keyed resume states.
"""
