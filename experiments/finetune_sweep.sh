#!/usr/bin/env bash
# Runs the fine-tuning results of experiments/README.md one after another and appends one JSON line
# per run (name, seed, seconds, final validation metrics) to experiments/results/finetune.jsonl.
#   bash experiments/finetune_sweep.sh RUNS_DIR [NAME ...]   (no names = all, in the order below)
# Each run is `python -m llm.train` in RUNS_DIR/<name>_s<seed>; a finished run is not rerun. Each
# finished run is then scored on the test split (test_metrics.py -> results/finetune_test.jsonl).
# BERT_WORKDIR (our bert_tiny pretraining, default RUNS_DIR/bert_tiny), RECIPE_WORKDIR
# (configs/recipe.py, default RUNS_DIR/recipe_bert), RECIPE_GPT and RECIPE_T5
# (configs/recipe.py:family=gpt|t5, default RUNS_DIR/recipe_gpt|t5) are trained first if a run
# needs them and they are missing; the results files name them by these placeholders.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: finetune_sweep.sh RUNS_DIR [NAME ...]}; shift
bert=${BERT_WORKDIR:-$runs/bert_tiny}
recipe=${RECIPE_WORKDIR:-$runs/recipe_bert}
recipe_gpt=${RECIPE_GPT:-$runs/recipe_gpt}
recipe_t5=${RECIPE_T5:-$runs/recipe_t5}
results=experiments/results/finetune.jsonl
mkdir -p "$runs" experiments/results

# The recipe's layout (pre-LN, no dropout) for from-scratch runs beside it.
PRELN="--config.model.norm=pre --config.model.dropout_rate=0.0 --config.model.attention_dropout_rate=0.0"
SUM300="--config.stop_at_step=300 --config.eval_every=300 --config.checkpoint_every=300"
declare -A RUN=(   # name -> config[:arg] and overrides
  [topic_scratch]="configs/finetune_topic.py:init=scratch"
  [topic_ours]="configs/finetune_topic.py:init=BERT_WORKDIR --config.optimizer.learning_rate=5e-4"
  [topic_minilm]="configs/finetune_topic.py"
  [topic_minilm_lora]="configs/finetune_topic.py:tuning=lora"
  [topic_minilm_prompt]="configs/finetune_topic.py:tuning=prompt"
  [topic_minilm_probe]="configs/finetune_topic.py --config.optimizer.train_only=^(classify_out|pooler)/ --config.optimizer.learning_rate=3e-3"
  [topic_cloze_ours]="configs/cloze_topic.py:init=BERT_WORKDIR --config.optimizer.learning_rate=5e-4"
  [sentiment_minilm]="configs/finetune_sentiment.py"
  [spam_minilm]="configs/finetune_spam.py"
  [ner_minilm]="configs/finetune_ner.py --config.optimizer.learning_rate=1e-4"
  [qa_scratch]="configs/finetune_qa.py:init=scratch"
  [qa_minilm]="configs/finetune_qa.py"
  [qa_minilm_lr1e-4]="configs/finetune_qa.py --config.optimizer.learning_rate=1e-4"
  [sentiment_scratch]="configs/finetune_sentiment.py:init=scratch"
  [sentiment_ours]="configs/finetune_sentiment.py:init=BERT_WORKDIR --config.optimizer.learning_rate=5e-4"
  [sentiment_minilm_lora]="configs/finetune_sentiment.py:tuning=lora"
  [spam_scratch]="configs/finetune_spam.py:init=scratch"
  [spam_ours]="configs/finetune_spam.py:init=BERT_WORKDIR --config.optimizer.learning_rate=5e-4"
  [spam_minilm_lora]="configs/finetune_spam.py:tuning=lora"
  [ner_scratch]="configs/finetune_ner.py:init=scratch"
  [ner_ours]="configs/finetune_ner.py:init=BERT_WORKDIR --config.optimizer.learning_rate=5e-4"
  [ner_minilm_lora]="configs/finetune_ner.py:tuning=lora"
  # From scratch or from bert_tiny, 300 steps only ever predict O (from scratch the loss sits near
  # 0.35 until step ~650), so these rows train 5x longer.
  [ner_scratch_1500]="configs/finetune_ner.py:init=scratch --config.total_steps=1500 --config.eval_every=500 --config.checkpoint_every=1500"
  [ner_ours_1500]="configs/finetune_ner.py:init=BERT_WORKDIR --config.optimizer.learning_rate=5e-4 --config.total_steps=1500 --config.eval_every=500 --config.checkpoint_every=1500"
  # bert_tiny's position table has 128 entries, so its QA windows are 128 pieces (stride 64).
  [qa_ours]="configs/finetune_qa.py:init=BERT_WORKDIR --config.optimizer.learning_rate=5e-4 --config.seq_len=128 --config.qa.doc_stride=64"
  [qa_minilm_lora]="configs/finetune_qa.py:tuning=lora"
  # From configs/recipe.py (about an hour of pretraining), at the scratch runs' steps.
  [topic_recipe]="configs/finetune_topic.py:init=RECIPE_WORKDIR --config.optimizer.learning_rate=5e-4"
  [sentiment_recipe]="configs/finetune_sentiment.py:init=RECIPE_WORKDIR --config.optimizer.learning_rate=5e-4"
  [spam_recipe]="configs/finetune_spam.py:init=RECIPE_WORKDIR --config.optimizer.learning_rate=5e-4"
  [ner_recipe]="configs/finetune_ner.py:init=RECIPE_WORKDIR --config.optimizer.learning_rate=5e-4"
  [ner_recipe_1500]="configs/finetune_ner.py:init=RECIPE_WORKDIR --config.optimizer.learning_rate=5e-4 --config.total_steps=1500 --config.eval_every=500 --config.checkpoint_every=1500"
  [qa_recipe]="configs/finetune_qa.py:init=RECIPE_WORKDIR --config.optimizer.learning_rate=5e-4"
  # From scratch in the recipe's own layout (pre-LN, no dropout): the same-architecture baseline.
  [topic_scratch_preln]="configs/finetune_topic.py:init=scratch $PRELN"
  [sentiment_scratch_preln]="configs/finetune_sentiment.py:init=scratch $PRELN"
  [spam_scratch_preln]="configs/finetune_spam.py:init=scratch $PRELN"
  [ner_scratch_preln]="configs/finetune_ner.py:init=scratch $PRELN"
  [ner_scratch_preln_1500]="configs/finetune_ner.py:init=scratch $PRELN --config.total_steps=1500 --config.eval_every=500 --config.checkpoint_every=1500"
  [qa_scratch_preln]="configs/finetune_qa.py:init=scratch $PRELN"
  # Summarization (ACLSum) from scratch and from the GPT and T5 recipes: the config's 600-step
  # schedule stopped at step 300, where from scratch it is best (it then memorises its 300
  # examples; a 300-step schedule does worse: docs/tasks.md).
  [summarize_t5_scratch]="configs/summarize.py $SUM300"
  [summarize_t5_recipe]="configs/summarize.py:init=RECIPE_T5 $SUM300 --config.optimizer.learning_rate=5e-4"
  [summarize_gpt_scratch]="configs/summarize.py:model=gpt $SUM300"
  [summarize_gpt_recipe]="configs/summarize.py:model=gpt,init=RECIPE_GPT $SUM300 --config.optimizer.learning_rate=5e-4"
  # Headlines and translation (issue 27): from scratch, from the T5 recipe, BERT2BERT from MiniLM.
  [headline_scratch]="configs/headline.py"
  [headline_recipe]="configs/headline.py:init=RECIPE_T5 --config.optimizer.learning_rate=5e-4"
  [headline_bert2bert]="configs/headline.py:init=minilm --config.optimizer.learning_rate=1e-4"
  [translate_en_es_scratch]="configs/translate.py:direction=en-es"
  [translate_es_en_scratch]="configs/translate.py:direction=es-en"
  [translate_en_es_recipe]="configs/translate.py:direction=en-es,init=RECIPE_T5 --config.optimizer.learning_rate=5e-4"
)
ORDER=(qa_minilm:0 qa_scratch:0 topic_minilm_prompt:0 topic_cloze_ours:0 topic_scratch:0
       topic_scratch:1 topic_scratch:2 topic_minilm_lora:0 topic_minilm_lora:1 topic_minilm_lora:2
       sentiment_minilm:0 spam_minilm:0 topic_minilm_probe:0 qa_minilm_lr1e-4:0 topic_minilm:0
       topic_minilm:1 topic_minilm:2 ner_minilm:0 topic_ours:0 qa_minilm:1 qa_minilm:2
       sentiment_scratch:0 sentiment_ours:0 sentiment_minilm_lora:0 ner_scratch:0 ner_ours:0
       ner_minilm_lora:0 ner_scratch_1500:0 ner_ours_1500:0 qa_ours:0 spam_scratch:0 spam_ours:0
       spam_minilm_lora:0 qa_minilm_lora:0 sentiment_scratch:1 sentiment_scratch:2 sentiment_ours:1
       sentiment_ours:2 spam_scratch:1 spam_scratch:2 spam_ours:1 spam_ours:2 sentiment_minilm_lora:1
       sentiment_minilm_lora:2 ner_scratch_1500:1 ner_scratch_1500:2 ner_ours_1500:1 ner_ours_1500:2
       qa_ours:1 qa_ours:2 qa_scratch:1 qa_scratch:2
       topic_recipe:0 sentiment_recipe:0 qa_recipe:0 spam_recipe:0 ner_recipe:0 ner_recipe_1500:0
       topic_recipe:1 topic_recipe:2 sentiment_recipe:1 sentiment_recipe:2 qa_recipe:1 qa_recipe:2
       spam_recipe:1 spam_recipe:2 ner_recipe_1500:1 ner_recipe_1500:2 ner_recipe:1 ner_recipe:2
       ner_scratch:1 ner_scratch:2 topic_scratch_preln:0 topic_scratch_preln:1
       topic_scratch_preln:2 sentiment_scratch_preln:0 sentiment_scratch_preln:1
       sentiment_scratch_preln:2 spam_scratch_preln:0 spam_scratch_preln:1 spam_scratch_preln:2
       qa_scratch_preln:0 qa_scratch_preln:1 qa_scratch_preln:2 ner_scratch_preln:0
       ner_scratch_preln_1500:0 ner_scratch_preln_1500:1 ner_scratch_preln_1500:2
       summarize_t5_recipe:0 summarize_t5_scratch:0 summarize_gpt_recipe:0 summarize_gpt_scratch:0
       summarize_t5_recipe:1 summarize_t5_scratch:1 summarize_gpt_recipe:1 summarize_gpt_scratch:1
       summarize_t5_recipe:2 summarize_t5_scratch:2 summarize_gpt_recipe:2 summarize_gpt_scratch:2
       headline_scratch:0 headline_recipe:0 headline_bert2bert:0 translate_en_es_scratch:0
       translate_es_en_scratch:0 translate_en_es_recipe:0 headline_scratch:1 headline_scratch:2
       headline_recipe:1 headline_recipe:2)
[ $# -gt 0 ] && ORDER=("$@")

needs() { for item in "${ORDER[@]}"; do [[ ${RUN[${item%%:*}]} == *$1* ]] && return 0; done; return 1; }
if needs BERT_WORKDIR && [ ! -f "$bert/config.json" ]; then
  .venv/bin/python -m llm.train --config=configs/bert_tiny.py --workdir="$bert" > "$bert.log" 2>&1
fi
# An interrupted pretraining resumes; a finished one is marked, so it is not re-evaluated.
pretrain() {   # placeholder, workdir, config[:arg]
  if needs "$1" && [ ! -f "$2.finished" ]; then
    .venv/bin/python -m llm.train --config="$3" --workdir="$2" > "$2.log" 2>&1 \
      || { echo "pretraining $3 failed: see $2.log"; exit 1; }
    touch "$2.finished"
  fi
}
pretrain RECIPE_WORKDIR "$recipe" configs/recipe.py
pretrain RECIPE_GPT "$recipe_gpt" configs/recipe.py:family=gpt
pretrain RECIPE_T5 "$recipe_t5" configs/recipe.py:family=t5
for item in "${ORDER[@]}"; do
  name=${item%%:*}; seed=${item##*:}; dir=$runs/${name}_s$seed
  [ -f "$dir/done.json" ] && continue
  read -r config overrides <<< "${RUN[$name]}"
  run_config=${config//BERT_WORKDIR/$bert}; run_config=${run_config//RECIPE_WORKDIR/$recipe}
  run_config=${run_config//RECIPE_GPT/$recipe_gpt}; run_config=${run_config//RECIPE_T5/$recipe_t5}
  start=$(date +%s)
  # shellcheck disable=SC2086
  .venv/bin/python -m llm.train --config="$run_config" --workdir="$dir" --config.seed="$seed" \
    $overrides > "$dir.log" 2>&1 || { echo "$name seed $seed failed: see $dir.log"; continue; }
  seconds=$(( $(date +%s) - start ))
  .venv/bin/python - "$name" "$seed" "$seconds" "$dir" "$config $overrides" >> "$results" <<'PY'
import json, pathlib, sys
name, seed, seconds, workdir, command = sys.argv[1:]
rows = [json.loads(l) for l in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()]
final = [r for r in rows if any(k.startswith("eval/") for k in r)][-1]
line = {"name": name, "seed": int(seed), "seconds": int(seconds), "step": final["step"],
        "command": f"python -m llm.train --config={command} --config.seed={seed}",
        **{k: v for k, v in final.items() if k.startswith("eval/")}}
(pathlib.Path(workdir) / "done.json").write_text(json.dumps(line))
print(json.dumps(line))
PY
  echo "$name seed $seed: ${seconds}s"
  # Score it on the test split now, so the table does not depend on the workdir surviving.
  .venv/bin/python experiments/test_metrics.py "$runs" BERT_WORKDIR="$bert" \
    RECIPE_WORKDIR="$recipe" RECIPE_GPT="$recipe_gpt" RECIPE_T5="$recipe_t5"
done
