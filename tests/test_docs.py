"""Every command, link, repository path and config key shown in README.md and docs/*.md is correct (as far
as it can be checked without running it), and the checker itself finds wrong ones."""

from __future__ import annotations

import pytest
from docs_testing import (
    REPO,
    Command,
    check_commands,
    commands_in_markdown,
    config_key_problem,
    config_keys_in_prose,
    config_of,
    heading_anchors,
    link_problems,
    linked_pages,
    pages,
    path_problems_in_prose,
)


def _relative(page) -> str:
    return page.relative_to(REPO).as_posix()


@pytest.fixture(scope="module")
def documented() -> tuple[list[Command], list[str]]:
    """The commands of every page, and the problems of parsing them."""
    errors: list[str] = []
    commands = [
        command
        for page in pages()
        for command in commands_in_markdown(page.read_text(), _relative(page), errors)
    ]
    return commands, errors


def _problems_of(markdown: str) -> list[str]:
    errors: list[str] = []
    return errors + check_commands(commands_in_markdown(markdown, "SELF_TEST.md", errors))


def test_every_page_with_shell_blocks_has_commands(documented):
    commands, _ = documented
    found_in = {command.source.split(":")[0] for command in commands}
    for page in pages():
        if "```bash" in page.read_text():
            assert _relative(page) in found_in, f"no command found in the shell blocks of {page}"
    assert sum(command.source.startswith("README.md") for command in commands) >= 2


def test_documented_commands_are_correct(documented):
    commands, errors = documented
    problems = errors + check_commands(commands)
    elsewhere = [command.source for command in commands if command.elsewhere]
    print(f"{len(commands)} documented commands, {len(elsewhere)} run outside the repository: {elsewhere}")
    assert not problems, "\n".join(problems)


def test_relative_links_resolve():
    problems = [problem for page in pages() for problem in link_problems(page)]
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_one_click_from_the_readme():
    readme, *docs = pages()
    assert docs, "no docs/*.md page found"
    unlinked = sorted(_relative(page) for page in set(docs) - linked_pages(readme))
    assert not unlinked, f"README.md links to none of: {unlinked}"


def test_repository_paths_named_in_docs_exist():
    problems = [
        problem for page in pages() for problem in path_problems_in_prose(page.read_text(), _relative(page))
    ]
    assert not problems, "\n".join(problems)


def test_config_keys_named_in_docs_exist():
    cfg = config_of("any")
    problems = [
        f"{_relative(page)}:{number}: {problem}"
        for page in pages()
        for number, key in config_keys_in_prose(page.read_text())
        if (problem := config_key_problem(cfg, key, None, renamed_ok=True))
    ]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------ the checker itself

WRONG_COMMANDS = [
    ("python tools/pretrain_net.py --config-file soco/configs/SoCo_FPN_100ep.yaml --num-gpu 8", "--num-gpu"),
    ("python tools/no_such_tool.py --config-file x.yaml", "tools/no_such_tool.py does not exist"),
    ("python tools/train_net.py --config-file detectron2_configs/coco/nope.yaml", "nope.yaml does not exist"),
    ("python tools/pretrain_net.py --config-file ... SOLVER.NO_KEY 1", "no config key SOLVER.NO_KEY"),
    ("python tools/pretrain_net.py SOCO.DATA.IMAGE_ROOT /data", "renamed to PRETRAIN.DATA.IMAGE_ROOT"),
    ("python tools/pretrain_net.py SOLVER.MAX_ITER ten", "SOLVER.MAX_ITER ten"),
    ("python tools/pretrain_net.py MODEL.FREEZE_PARTS ['fpn']", "no config key MODEL.FREEZE_PARTS"),
    ("python tools/train_net.py OUTPUT_DIR out --resume", "--resume after the KEY VALUE overrides"),
    ("python tools/submit.py pretrian --nodes 2", "no sub-command pretrian"),
    ("python tools/submit.py pretrain --nodes 2 --gpus 8", "has no option --gpus"),
    ("python tools/submit.py proposals --image-root x SOLVER.MAX_ITER 5", "takes no KEY VALUE"),
    ("tools/SoCo_FPN_100ep.sh --data /d --gpu 8", "tools/SoCo_FPN_100ep.sh has no option --gpu"),
    ("bash tools/MoCoV2_200ep_linear.sh --train t --val v SOLVER.NO_KEY 1", "no config key SOLVER.NO_KEY"),
    ("python tools/demo/run_demo.py --transfer-modes frozen partial", "'partial' is not one of"),
    ("python -m soco.no_such_module", "no Python module soco.no_such_module"),
    ("make tset", "make has no target tset"),
    ("torchrun --nproc-per-nod 8 tools/pretrain_net.py --launcher torchrun", "torchrun has no option"),
    ("python tools/evaluate_probes.py --output p.json SOLVER.MAX_ITER 5", "takes no KEY VALUE"),
    ("python tools/plot_probes.py 'unclosed", "cannot be parsed as a shell command"),
]


@pytest.mark.parametrize(("command", "expected"), WRONG_COMMANDS)
def test_checker_finds_a_wrong_command(command, expected):
    problems = _problems_of(f"Text.\n\n```bash\n{command}\n```\n")
    assert any(expected in problem for problem in problems), problems
    assert all(problem.startswith("SELF_TEST.md:4") for problem in problems), problems


def test_checker_finds_a_wrong_command_in_a_table():
    markdown = "| step | command |\n|---|---|\n| plot | `python tools/plot_probes.py --bogus m.json` |\n"
    assert _problems_of(markdown) == ["SELF_TEST.md:3: tools/plot_probes.py has no option --bogus"]


def test_checker_reads_an_inline_command_across_a_line_break():
    markdown = "Intro.\n\nRun `python tools/plot_probes.py\n--bogus m.json`, `make\ndemo`, `make tset`.\n"
    assert _problems_of(markdown) == [
        "SELF_TEST.md:3: tools/plot_probes.py has no option --bogus",
        "SELF_TEST.md:5: make has no target tset",
    ]


def test_checker_accepts_correct_commands():
    markdown = """
```bash
# a comment line, then continuation lines, optional parts, placeholders and a value with a choice
python tools/benchmark_transfer.py --config-file detectron2_configs/coco/mask_rcnn_R_50_FPN_1x.yaml \\
    --weights soco=output/soco.pkl --weights scratch= --seeds 3 [--freeze backbone,fpn] [--num-gpus 8] \\
    output/benchmark_coco [KEY VALUE ...] SOLVER.MAX_ITER 150 DATASETS.TRAIN '("my_train",)'
tools/SoCo_FPN_100ep.sh --data /data/train --gpus 8 --nodes 2 --node-rank 0 SOLVER.IMS_PER_BATCH 1024
OMP_NUM_THREADS=1 python tools/submit.py linear --gpus-per-node 8 --sbatch=--qos=high \\
    --config-file soco/configs/linear/Base-Linear.yaml MODEL.WEIGHTS ... LINEAR.DATA.TRAIN /d/train
torchrun --nproc-per-node 8 tools/train_net.py --config-file ... MODEL.ROI_HEADS.NUM_CLASSES N
export DETECTRON2_DATASETS=/data && make demo
cd ../mmdetection
python tools/train.py configs/x.py   # another project's script, not checked after the cd
```

Inline: `python -m soco.collect_env`, `make test`, `tools/submit.py` and `--freeze PARTS` (not a command).
"""
    errors: list[str] = []
    commands = commands_in_markdown(markdown, "SELF_TEST.md", errors)
    assert [command.argv[0] for command in commands] == [
        "python", "tools/SoCo_FPN_100ep.sh", "OMP_NUM_THREADS=1", "torchrun", "export", "make", "cd",
        "python", "python", "make", "tools/submit.py",
    ]  # fmt: skip
    assert [command.elsewhere for command in commands] == [False] * 6 + [True, True] + [False] * 3
    assert errors + check_commands(commands) == []


def test_heading_anchors_follow_github():
    text = "# soco: a title\n\n## 6. Is it learning? Probes, and `x`\n\n## FAQ\n\n## FAQ\n"
    text += "```\n# not a heading\n```\n"
    assert heading_anchors(text) == {"soco-a-title", "6-is-it-learning-probes-and-x", "faq", "faq-1"}


def test_link_checker_finds_broken_links():
    page = REPO / "docs" / "SELF_TEST.md"
    text = (
        "# Top\n\n[ok](#top) [ok](../README.md) [ok](BENCHMARKS.md#benchmarks) [web](https://x.org/#y)\n"
        "[bad](NOPE.md) [bad](#nowhere) ![bad](../README.md#no-such-heading) `[code](NOPE.md)`\n"
        "[a link across\na line break](#nowhere-either)\n"
    )
    assert link_problems(page, text) == [
        "docs/SELF_TEST.md:4: link to NOPE.md: NOPE.md does not exist",
        "docs/SELF_TEST.md:4: link to #nowhere: no heading #nowhere in this page",
        "docs/SELF_TEST.md:4: link to ../README.md#no-such-heading: no heading #no-such-heading in "
        "../README.md",
        "docs/SELF_TEST.md:5: link to #nowhere-either: no heading #nowhere-either in this page",
    ]


def test_linked_pages_resolve_relative_links():
    page = REPO / "docs" / "SELF_TEST.md"
    text = "[a](FAQ.md#why-syncbn-everywhere) [b](../README.md) [c](#here) [d](https://x.org/a.md) `[e](X)`\n"
    assert linked_pages(page, text) == {REPO / "docs" / "FAQ.md", REPO / "README.md"}


def test_prose_paths_and_keys_are_checked():
    text = "Run `tools/nope.py`, `soco/configs/{SoCo_FPN_100ep,Nope}.yaml`; `SOCO.VIEWS.*`, `SOCO.NOPE.*`.\n"
    assert path_problems_in_prose(text, "SELF_TEST.md") == [
        "SELF_TEST.md:1: tools/nope.py does not exist in the repository",
        "SELF_TEST.md:1: soco/configs/Nope.yaml does not exist in the repository",
    ]
    cfg = config_of("any")
    problems = [config_key_problem(cfg, key, None) for _, key in config_keys_in_prose(text)]
    assert problems == [None, "no config key SOCO.NOPE.*"]
