"""The lm-evaluation-harness bridge, both ways (docs/lm-eval.md).

* ``rrbench export lm-eval DIR``: an lm-eval task pack, one YAML per preference task plus ``utils.py``, whose
  documents, prompt, image order, answer parsing and aggregation are rrbench's own (``rrbench.lmeval.pack``), so
  ``lm_eval --include_path DIR --tasks rrbench_genai_bench_t2i --model hf-multimodal ...`` scores any VLM as a judge;
* ``rrbench import lm-eval SAMPLES.jsonl --task T``: lm-eval's ``--log_samples`` output as an rrbench run directory,
  rescored with rrbench's metric code (coverage, CIs), so the same answers give the same numbers.

``core`` holds what both directions share: which tasks can be expressed, the documents (one per presentation
order), the prompt as lm-eval text with ``<image>`` markers, and answers -> sample results.
"""
