"""TS-Align training data (TS-Rec §3.3) plus the main task, as prompt/completion pairs built with ``datasets``.

Tasks (templates in :mod:`sidrec.align.prompts`):

- ``next_sid`` (main), in the model's prompt format: ``sequence`` gives one example per training user, its most
  recent ``max_history`` training items as SIDs after the prefix token, loss on every SID token (every next-item
  position at once); ``instruction`` gives one example per training sample of the split (history -> next SID);
- item level: ``titles_next_sid`` (history of titles -> next SID), ``sid_to_title``, ``title_to_sid``;
- token level: ``prefix_to_text`` (a SID prefix -> its cluster's description and keywords) and ``text_to_prefix``
  (keywords or description -> the prefix), i.e. every SID token tied, within its prefix, to what its items share.

Mixing: an auxiliary task gets ``round(ratio * n_main)`` examples, drawn by cycling through shuffled passes over
its pool (items, prefixes or training samples), so every pool member appears about equally often.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from sidrec.align.prompts import PromptSettings, build_prompts, sid_history, task_prompts
from sidrec.sid import SidTable

COLUMNS = ("prompt", "completion", "task")


def _draw(pool_size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices into a pool, cycling through shuffled full passes."""
    if pool_size == 0 or n <= 0:
        return np.zeros(0, dtype=np.int64)
    passes = -(-n // pool_size)
    return np.concatenate([rng.permutation(pool_size) for _ in range(passes)])[:n]


def _columns(ds: datasets.Dataset, *names: str) -> list[list]:
    """Whole columns as Python lists, read once (indexing a ``datasets`` column row by row re-reads it)."""
    return [ds[name][:] for name in names]


def _rows(prompts: list[str], completions: list[str], task: str, **extra: Sequence[Any]) -> dict[str, list]:
    return {"prompt": prompts, "completion": completions, "task": [task] * len(prompts),
            **{k: list(v) for k, v in extra.items()}}


def main_task(tokenizer, samples: datasets.Dataset, sid_table: SidTable, max_history: int | None,
              settings: PromptSettings | None = None) -> dict:
    """``next_sid`` rows (prompt = history, completion = target SID) for every sample whose target and history
    items have SIDs (others are dropped), in the prompt format of ``settings`` (default: instruction)."""
    known = sid_table.item_index
    all_histories, all_targets, sample_ids = _columns(samples, "history", "target", "sample_id")
    keep = [i for i, (h, t) in enumerate(zip(all_histories, all_targets))
            if t in known and h and all(x in known for x in h)]
    histories = [all_histories[i] for i in keep]
    targets = [all_targets[i] for i in keep]
    prompts = build_prompts(tokenizer, histories, sid_table, max_history=max_history,
                            settings=settings or PromptSettings())
    return _rows(prompts, [sid_table.item_sid_string(t) for t in targets], "next_sid",
                 sample_id=[int(sample_ids[i]) for i in keep], target=targets)


def sequence_task(train_sequences: datasets.Dataset, sid_table: SidTable, settings: PromptSettings,
                  max_history: int | None, max_users: int | None = None) -> dict:
    """``next_sid`` rows of the ``sequence`` format: per training user, prompt = the prefix token and completion =
    the SIDs of the user's most recent ``max_history`` training items (items without a SID left out; users left
    with none dropped). With ``max_users``, the last ``max_users`` users of the table are kept."""
    known = sid_table.item_index
    users, sequences = _columns(train_sequences, "user_id", "item_ids")
    rows = [(u, [i for i in seq if i in known]) for u, seq in zip(users, sequences)]
    rows = [(u, seq) for u, seq in rows if seq]
    if max_users is not None:
        rows = rows[-max_users:]
    completions = [sid_history(seq, sid_table, max_history) for _, seq in rows]
    return _rows([settings.sequence_prefix] * len(rows), completions, "next_sid", user_id=[u for u, _ in rows])


def item_tasks(tokenizer, sid_table: SidTable, titles: Mapping[str, str], samples: datasets.Dataset,
               counts: Mapping[str, int], max_history: int | None, rng: np.random.Generator) -> list[dict]:
    """The item-level TS-Align rows (``titles_next_sid``, ``sid_to_title``, ``title_to_sid``)."""
    out = []
    items = [i for i in sid_table.item_ids if titles.get(i)]
    known = sid_table.item_index
    if counts.get("titles_next_sid", 0):
        all_histories, all_targets = _columns(samples, "history", "target")
        usable = [i for i, (h, t) in enumerate(zip(all_histories, all_targets)) if t in known and h]
        pick = [usable[j] for j in _draw(len(usable), counts["titles_next_sid"], rng)]
        histories = [all_histories[i] for i in pick]
        prompts = build_prompts(tokenizer, histories, sid_table, task="titles_next_sid", titles=titles,
                                max_history=max_history)
        out.append(_rows(prompts, [sid_table.item_sid_string(all_targets[i]) for i in pick],
                         "titles_next_sid"))
    if counts.get("sid_to_title", 0):
        pick = [items[j] for j in _draw(len(items), counts["sid_to_title"], rng)]
        prompts = task_prompts(tokenizer, "sid_to_title", [{"sid": sid_table.item_sid_string(i)} for i in pick])
        out.append(_rows(prompts, [titles[i] for i in pick], "sid_to_title"))
    if counts.get("title_to_sid", 0):
        pick = [items[j] for j in _draw(len(items), counts["title_to_sid"], rng)]
        prompts = task_prompts(tokenizer, "title_to_sid", [{"title": titles[i]} for i in pick])
        out.append(_rows(prompts, [sid_table.item_sid_string(i) for i in pick], "title_to_sid"))
    return out


def token_tasks(tokenizer, prefixes: Mapping[str, Mapping[str, Any]], counts: Mapping[str, int],
                rng: np.random.Generator) -> list[dict]:
    """The token-level TS-Align rows: each SID prefix <-> its cluster's description and keywords."""
    out = []
    keys = [k for k, v in prefixes.items() if v.get("keywords")]
    if counts.get("prefix_to_text", 0):
        pick = [keys[j] for j in _draw(len(keys), counts["prefix_to_text"], rng)]
        prompts = task_prompts(tokenizer, "prefix_to_text", [{"prefix": k} for k in pick])
        answers = [f"{prefixes[k]['description']} Keywords: {', '.join(prefixes[k]['keywords'])}." for k in pick]
        out.append(_rows(prompts, answers, "prefix_to_text"))
    if counts.get("text_to_prefix", 0):
        pick = [keys[j] for j in _draw(len(keys), counts["text_to_prefix"], rng)]
        # Half the questions quote the keywords, half the description, so both point back to the prefix.
        use_kw = rng.random(len(pick)) < 0.5
        texts = [", ".join(prefixes[k]["keywords"]) if kw else prefixes[k]["description"]
                 for k, kw in zip(pick, use_kw)]
        prompts = task_prompts(tokenizer, "text_to_prefix", [{"text": t} for t in texts])
        out.append(_rows(prompts, list(pick), "text_to_prefix"))
    return out


def build_align_dataset(tokenizer, data, sid_table: SidTable, prefixes: Mapping[str, Mapping[str, Any]],
                        ratios: Mapping[str, float], max_history: int | None = None, valid_samples: int = 300,
                        max_train_samples: int | None = None, seed: int = 0,
                        settings: PromptSettings | None = None) -> datasets.DatasetDict:
    """The SFT dataset: ``train`` (main task + TS-Align tasks mixed by ``ratios``, shuffled) and ``valid`` (main
    task on a sample of the validation split, with ``sample_id`` and ``target`` for ranking metrics).

    ``ratios`` maps an auxiliary task name to its size relative to the main task (0 = off): to the number of
    training users in the ``sequence`` format, of training samples in the ``instruction`` format.
    ``max_train_samples`` caps main-task examples (users or samples; the most recent kept).
    """
    settings = settings or PromptSettings()
    rng = np.random.default_rng(seed)
    train_samples = data.split("train")
    if settings.prompt_format == "sequence":
        main = sequence_task(data.train_sequences, sid_table, settings, max_history, max_train_samples)
    else:
        if max_train_samples is not None and len(train_samples) > max_train_samples:
            # Keep the most recent samples of the split order (later prefixes carry the longest histories).
            train_samples = train_samples.select(range(len(train_samples) - max_train_samples,
                                                       len(train_samples)))
        main = main_task(tokenizer, train_samples, sid_table, max_history, settings)
    n_main = len(main["prompt"])
    counts = {task: int(round(ratio * n_main)) for task, ratio in ratios.items()}
    titles = dict(zip(data.items["item_id"], data.items["title"]))
    parts = [main] + item_tasks(tokenizer, sid_table, titles, train_samples, counts, max_history, rng)
    parts += token_tasks(tokenizer, prefixes, counts, rng)
    train = datasets.concatenate_datasets([datasets.Dataset.from_dict({c: p[c] for c in COLUMNS})
                                           for p in parts if p["prompt"]]).shuffle(seed=seed)
    valid_split = data.split("valid")
    if valid_samples and len(valid_split) > valid_samples:
        valid_split = valid_split.select(np.sort(rng.choice(len(valid_split), valid_samples, replace=False)))
    valid = datasets.Dataset.from_dict(main_task(tokenizer, valid_split, sid_table, max_history, settings))
    return datasets.DatasetDict({"train": train, "valid": valid})


def describe_dataset(ds: datasets.DatasetDict) -> dict[str, Any]:
    """Counts per task and split, and one example per task (for stats.json and the log)."""
    out: dict[str, Any] = {}
    for split, d in ds.items():
        tasks = d["task"][:]
        counts = dict(Counter(tasks))
        examples = {}
        for t in counts:
            row = d[tasks.index(t)]
            examples[t] = {"prompt": row["prompt"], "completion": row["completion"]}
        out[split] = {"n": len(d), "per_task": counts, "examples": examples}
    return out

