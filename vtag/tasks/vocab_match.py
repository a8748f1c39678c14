"""Which model speaks the input's vocabulary, and refusing a model that does not.

A model's config.json names its vocabulary ("2018" where older configs name none). Record files say
theirs (the 2017 id key `video_id`, or a label beyond the 2018 classes); raw videos have none, so the
user says it with `--vocab` (default 2018). With no `--model`, the shipped model of that vocabulary is
used (weights/default for 2018, weights/default-2017 for 2017); a model given by the user that speaks
another vocabulary is refused, never scored: its class ids would name other classes.
"""

from __future__ import annotations

from pathlib import Path

from vtag.errors import VtagError

VOCABULARIES = ("2017", "2018")
CLASS_COUNTS = {"2017": "4,716", "2018": "3,862"}


def check_vocabulary_name(vocabulary: str | None) -> str | None:
    if vocabulary is not None and str(vocabulary) not in VOCABULARIES:
        raise VtagError(f"--vocab {vocabulary}: use 2017 (4,716 classes, the paper's) or 2018 (3,862)")
    return None if vocabulary is None else str(vocabulary)


def model_vocabulary(meta: dict) -> str:
    return str(meta.get("vocabulary", "2018"))


def records_vocabulary(paths, vocabulary: str | None = None, skip_bad: bool = False) -> str:
    """The vocabulary of record files; `vocabulary` (from --vocab) must agree with what they show."""
    from vtag.io.vocab import detect_vocabulary

    found = detect_vocabulary(paths, skip_bad=skip_bad)
    wanted = check_vocabulary_name(vocabulary)
    if wanted is not None and wanted != found:
        where = paths if isinstance(paths, (str, Path)) else ", ".join(map(str, list(paths)[:3]))
        raise VtagError(f"{where}: the records use the {found} vocabulary ({CLASS_COUNTS[found]} classes), "
                        f"not --vocab {wanted}: drop --vocab or pass --vocab {found}")
    return found


def require_vocabulary(meta: dict, model_dir, wanted: str, source: str) -> None:
    """Refuses a model whose vocabulary is not `wanted`. `source` says where `wanted` came from: a
    record file's path, or None for --vocab on raw videos."""
    have = model_vocabulary(meta)
    if have == wanted or have not in VOCABULARIES:  # a user's own vocabulary file: its ids are theirs to mean
        return
    if source is None:
        raise VtagError(
            f"--vocab {wanted} asks for {wanted} labels ({CLASS_COUNTS.get(wanted, '?')} classes) but the model "
            f"{model_dir} outputs {have} ones: pass --vocab {have}, or leave out --model to use the shipped {wanted} model"
        )
    raise VtagError(
        f"{source}: the records use the {wanted} vocabulary ({CLASS_COUNTS.get(wanted, '?')} classes) but the model "
        f"{model_dir} outputs the {have} one: leave out --model to use the shipped {wanted} model (--vocab {wanted} "
        f"for raw videos), or fit one with `vtag transfer --vocab {wanted}`"
    )
