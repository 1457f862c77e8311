"""A checker of the commands and links shown in README.md and docs/*.md (used by tests/test_docs.py).

A command is a ```bash block line (continuation lines joined) or an inline code span of prose or a table
that starts with a program: ``python [-m module | script]``, ``torchrun ... script``, ``bash script``, a
``tools/*.sh`` / ``*.py`` path, or ``make``. For each one: the script (or module, or make target) exists,
every ``--flag`` is an option of the script's own parser (or a launcher's ``case`` patterns), a value is one
of the option's choices where it has some, every path into the repository exists, and every ``KEY VALUE``
config override names a key of the config the tool loads, with a value of the key's type. Parsers are
taken from the scripts themselves: each runs as ``__main__`` until its first ``parse_args`` call, which
stops it (nothing else of ``main`` runs).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import runpy
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Programs that run a Python script or module.
PYTHONS = {"python", "python3"}
#: Folders of the command-line entry points (a path there may start a command without ``python``).
ENTRY_POINT_FOLDERS = ("tools/", "selective_search/", "converters/", "./")
#: Tokens a page uses for "more arguments here" or a value left to the reader.
ELLIPSIS = "..."
#: A config key on a command line (``SOLVER.MAX_ITER``, ``OUTPUT_DIR``).
CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*")
#: Placeholder words of the syntax lines (``[KEY VALUE ...]``).
PLACEHOLDER_WORDS = {"KEY", "VALUE", "CONFIG"}
#: Which config each tool with ``KEY VALUE`` overrides loads (script, or "script sub-command").
CONFIG_FLAVOURS = {
    "tools/pretrain_net.py": "pretrain",
    "tools/launch_pretrain.sh": "pretrain",
    "tools/submit.py pretrain": "pretrain",
    "tools/train_net.py": "finetune",
    "tools/benchmark_transfer.py": "finetune",
    "tools/submit.py finetune": "finetune",
    "tools/submit.py benchmark": "finetune",
    "tools/train_linear.py": "linear",
    "tools/launch_linear.sh": "linear",
    "tools/submit.py linear": "linear",
}
FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
INLINE_CODE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


@dataclass(frozen=True)
class Command:
    """One documented command: where it is (``README.md:12``), its words after shell parsing, and whether
    it runs outside the repository (after a ``cd`` in its block: not checked)."""

    source: str
    argv: tuple[str, ...]
    elsewhere: bool = False


@dataclass
class Options:
    """What a command line may pass a script: option strings with their actions, sub-commands, and
    whether trailing ``KEY VALUE`` config overrides are accepted."""

    actions: dict[str, argparse.Action | None] = field(default_factory=dict)
    value_counts: dict[str, int] = field(default_factory=dict)
    subcommands: dict[str, Options] = field(default_factory=dict)
    config_overrides: bool = False


def pages(repo: Path = REPO) -> list[Path]:
    """README.md and every docs/*.md page."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def _prose_lines(text: str) -> Iterator[tuple[int, str, str | None]]:
    """(line number, line, language of the fenced block it is in or None) for every line of ``text``;
    fence lines themselves are skipped."""
    language = None
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line)
        if fence:
            language = None if language is not None else fence.group(2).lower()
            continue
        yield number, line, language


def _paragraphs(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of the prose paragraphs of ``text``: runs of non-blank lines outside code
    blocks (an inline code span or a link may continue on the next line)."""
    start, lines = 0, []
    for number, line, language in [*_prose_lines(text), (0, "", None)]:
        if language is None and line.strip():
            start = start or number
            lines.append(line)
        elif lines:
            yield start, "\n".join(lines)
            start, lines = 0, []


def inline_code(text: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of the inline code spans outside code blocks; a line break inside a span is a
    space, as Markdown renders it."""
    for start, paragraph in _paragraphs(text):
        for span in INLINE_CODE.finditer(paragraph):
            yield start + paragraph.count("\n", 0, span.start()), span.group(1).replace("\n", " ")


def link_targets(text: str) -> Iterator[tuple[int, str]]:
    """(line number, target) of the links and images outside code."""
    for start, paragraph in _paragraphs(text):
        # code spans become blank text of the same line count, so line numbers stay right
        prose = INLINE_CODE.sub(lambda span: "\n" * span.group(0).count("\n"), paragraph)
        for link in LINK.finditer(prose):
            yield start + prose.count("\n", 0, link.start()), link.group(1)


def _split_commands(words: list[str]) -> Iterator[list[str]]:
    """Split shell words at ``&&``, ``||``, ``;`` and ``|``."""
    current: list[str] = []
    for word in words:
        if word in {"&&", "||", ";", "|"}:
            if current:
                yield current
            current = []
        else:
            current.append(word.removesuffix(";"))
    if current:
        yield current


def _shell_words(text: str, source: str, errors: list[str]) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError as e:
        errors.append(f"{source}: cannot be parsed as a shell command ({e}): {text}")
        return []


def is_program(words: list[str]) -> bool:
    """Whether a command starts with a program this checker knows (after ``VAR=value`` assignments)."""
    words = _without_assignments(words)
    if not words:
        return False
    first = words[0]
    if first in PYTHONS or first.endswith("/python") or first in {"torchrun", "bash", "sh", "make"}:
        return True
    return first.startswith(ENTRY_POINT_FOLDERS) and first.endswith((".py", ".sh"))


def _without_assignments(words: list[str]) -> list[str]:
    index = 0
    while index < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[index]):
        index += 1
    return words[index:]


def commands_in_markdown(text: str, name: str, errors: list[str]) -> list[Command]:
    """The commands of a page in page order: every line of its shell blocks, and the inline code spans
    outside code blocks that start with a program. Unparsable shell text is reported in ``errors``."""
    found: list[tuple[int, Command]] = []
    for number, span in inline_code(text):
        words = _shell_words(span, f"{name}:{number}", errors) if is_program(span.split()) else []
        found += [(number, Command(f"{name}:{number}", tuple(c))) for c in _split_commands(words)]
    pending: list[str] = []
    pending_line = 0
    elsewhere = False
    for number, line, language in _prose_lines(text):
        if language is None:
            elsewhere = False
            continue
        if language not in SHELL_LANGUAGES:
            continue
        if not pending:
            pending_line = number
        stripped = line.rstrip()
        pending.append(stripped.removesuffix("\\"))
        if stripped.endswith("\\"):
            continue
        words = _shell_words(" ".join(pending), f"{name}:{pending_line}", errors)
        pending = []
        for words_of_one in _split_commands(words):
            elsewhere = elsewhere or words_of_one[0] == "cd"
            found.append((pending_line, Command(f"{name}:{pending_line}", tuple(words_of_one), elsewhere)))
    return [command for _, command in sorted(found, key=lambda item: item[0])]


# ---------------------------------------------------------------------------------------------- parsers


class _ParserCaptured(BaseException):
    """Raised by the patched ``parse_args``: carries the parser (a BaseException, so that a script's own
    ``except Exception`` cannot swallow it)."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__(parser.prog)
        self.parser = parser


@contextmanager
def _parsers_captured() -> Iterator[None]:
    def capture(parser: argparse.ArgumentParser, *args, **kwargs):
        raise _ParserCaptured(parser)

    names = ("parse_args", "parse_known_args", "parse_intermixed_args", "parse_known_intermixed_args")
    saved = {name: getattr(argparse.ArgumentParser, name) for name in names}
    for name in names:
        setattr(argparse.ArgumentParser, name, capture)
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(argparse.ArgumentParser, name, method)


def capture_parser(script: Path) -> argparse.ArgumentParser:
    """The parser ``script`` builds, from running it as ``__main__`` until it parses its arguments.

    The script's folder is importable meanwhile (as when Python runs it); modules it imported from there
    are forgotten afterwards."""
    folder = str(script.parent)
    saved_argv, saved_path, saved_modules = sys.argv, list(sys.path), set(sys.modules)
    sys.argv = [str(script)]
    sys.path.insert(0, folder)
    try:
        with _parsers_captured():
            runpy.run_path(str(script), run_name="__main__")
    except _ParserCaptured as captured:
        return captured.parser
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        for name in set(sys.modules) - saved_modules:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(folder):
                del sys.modules[name]
    raise AssertionError(f"{script} returned without parsing its arguments")


def _value_count(action: argparse.Action) -> int:
    """How many words after the option are its values (-1: any number)."""
    if action.nargs == 0:
        return 0
    if action.nargs in (None, "?"):
        return 1
    if isinstance(action.nargs, int):
        return action.nargs
    return -1


def options_of_parser(parser: argparse.ArgumentParser) -> Options:
    options = Options()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            options.subcommands = {name: options_of_parser(sub) for name, sub in action.choices.items()}
        elif not action.option_strings and action.nargs == argparse.REMAINDER:
            options.config_overrides = True
        for option in action.option_strings:
            options.actions[option] = action
            options.value_counts[option] = _value_count(action)
    return options


LAUNCHER_CASE = re.compile(r"^\s*((?:-[-\w]+\|)*-[-\w]+)\)(.*)$")
LAUNCHER_EXEC = re.compile(r"exec\s+.*?(launch_\w+\.sh)")
LAUNCHER_SOURCE = re.compile(r"^\s*(?:source|\.)\s+\S*?([\w-]+\.sh)\"?\s*$", flags=re.MULTILINE)


def launcher_base(script: Path) -> Path:
    """The launcher that does the work: ``tools/SoCo_FPN_100ep.sh`` execs ``tools/launch_pretrain.sh``."""
    found = LAUNCHER_EXEC.search(script.read_text())
    return script.with_name(found.group(1)) if found else script


def options_of_launcher(script: Path) -> Options:
    """The options of a shell launcher, from the patterns of the ``case`` statements of the launcher that
    does the work and of the files it sources (``--data) need_value ...`` takes a value); ``KEY VALUE``
    overrides where that launcher has a config flavour."""
    base = launcher_base(script)
    options = Options(config_overrides=_relative(base) in CONFIG_FLAVOURS)
    sourced = [base.with_name(name) for name in LAUNCHER_SOURCE.findall(base.read_text())]
    for shell_file in [base, *sourced]:
        for line in shell_file.read_text().splitlines():
            pattern = LAUNCHER_CASE.match(line)
            if not pattern:
                continue
            takes_value = "shift 2" in pattern.group(2) or "need_value" in pattern.group(2)
            for option in pattern.group(1).split("|"):
                options.actions[option] = None
                options.value_counts[option] = 1 if takes_value else 0
    return options


def options_of_torchrun() -> Options:
    from torch.distributed.run import get_args_parser

    return options_of_parser(get_args_parser())


@cache
def options_of(script: Path) -> Options:
    if script.suffix == ".sh":
        return options_of_launcher(script)
    return options_of_parser(capture_parser(script))


@cache
def make_targets(repo: Path = REPO) -> frozenset[str]:
    makefile = (repo / "Makefile").read_text()
    return frozenset(re.findall(r"^([\w.-]+)\s*:(?!=)", makefile, flags=re.MULTILINE))


@cache
def tracked_top_level(repo: Path = REPO) -> frozenset[str]:
    """First components of the repository's tracked paths with a folder below (``soco``, ``tools``, ...)."""
    listed = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout
    return frozenset(path.split("/", 1)[0] for path in listed.splitlines() if "/" in path)


# ---------------------------------------------------------------------------------------------- configs


def _config_loaders() -> dict[str, Callable[[], object]]:
    from detectron2.config import get_cfg

    from soco.config import add_soco_config
    from soco.detection.config import add_transfer_config
    from soco.engine.linear.config import add_linear_config

    def build(*adders):
        def load():
            cfg = get_cfg()
            for add in adders:
                add(cfg)
            return cfg

        return load

    return {
        "pretrain": build(add_soco_config),
        "finetune": build(add_transfer_config),
        "linear": build(add_soco_config, add_linear_config),
        "any": build(add_soco_config, add_transfer_config, add_linear_config),
    }


@cache
def config_of(flavour: str):
    return _config_loaders()[flavour]()


def is_placeholder(value: str) -> bool:
    """A value left to the reader: ``...``, ``N``, ``FILE``, ``<name>``, ``$i``, ``{100,400}``."""
    return ELLIPSIS in value or bool(re.search(r"[<>${}]", value)) or bool(re.fullmatch(r"[A-Z_]+", value))


def config_key_problem(cfg, key: str, value: str | None, renamed_ok: bool = False) -> str | None:
    """Why ``KEY VALUE`` is not a valid override of ``cfg`` (None: it is). A ``*`` ending the key (``SOCO.
    VIEWS.*``) asks only that the group exists; a renamed key is a problem naming its new name, unless
    ``renamed_ok`` (prose may name an old key to say it was renamed)."""
    from detectron2.config import CfgNode

    if cfg.key_is_renamed(key.removesuffix(".*")):
        if renamed_ok:
            return None
        try:
            cfg.raise_key_rename_error(key.removesuffix(".*"))
        except KeyError as e:
            return str(e).strip("'\"")
    node = cfg
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if part == "*" and depth == len(parts) - 1:
            return None if isinstance(node, CfgNode) else f"{'.'.join(parts[:depth])} is not a group of keys"
        if not isinstance(node, CfgNode) or part not in node:
            return f"no config key {key}"
        node = node[part]
    if value is None or is_placeholder(value):
        return None
    trial = cfg.clone()
    trial.defrost()
    try:
        trial.merge_from_list([key, value])
    except Exception as e:  # noqa: BLE001 - any refusal of the value is the finding
        return f"{key} {value}: {e}"
    return None


# ---------------------------------------------------------------------------------------------- commands


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return path.as_posix()


def _expand_braces(word: str) -> list[str]:
    found = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not found:
        return [word]
    return [
        expanded
        for choice in found.group(1).split(",")
        for expanded in _expand_braces(word[: found.start()] + choice + word[found.end() :])
    ]


def repo_path_problems(word: str, repo: Path = REPO) -> list[str]:
    """Paths into the repository (first component a tracked folder: ``soco/configs/x.yaml``) that do not
    exist; ``name=path`` (``--weights soco=...``) is read as its path, ``{a,b}`` expanded, ``*`` globbed."""
    path = word.split("=", 1)[1] if re.match(r"[\w-]+=", word) else word
    path = path.strip("'\",:;()")
    if "/" not in path or path.split("/", 1)[0] not in tracked_top_level(repo):
        return []
    if ELLIPSIS in path or re.search(r"[<>$]", path):
        return []
    problems = []
    for candidate in _expand_braces(path):
        exists = any(repo.glob(candidate)) if "*" in candidate else (repo / candidate).exists()
        if not exists:
            problems.append(f"{candidate} does not exist in the repository")
    return problems


def _clean(word: str) -> str:
    """A word without the square brackets of an optional part (``[--freeze``, ``box_head]``)."""
    return word.strip("[]")


@dataclass
class _Invocation:
    """A command resolved to what it runs: ``kind`` script / module / make, the target, its arguments."""

    kind: str
    target: str
    args: list[str]
    torchrun_args: list[str] = field(default_factory=list)


def resolve_invocation(argv: list[str]) -> _Invocation | None:
    """What a command runs; None for a command of no program this checker knows (``export``, ``cd``)."""
    words = _without_assignments(argv)
    if not is_program(words):
        return None
    first, rest = words[0], words[1:]
    if first == "make":
        return _Invocation("make", "make", rest)
    if first == "torchrun":
        for index, word in enumerate(rest):
            if word.endswith(".py"):
                return _Invocation("script", word, rest[index + 1 :], torchrun_args=rest[:index])
        return _Invocation("torchrun", "torchrun", rest)
    if first in PYTHONS or first.endswith("/python"):
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest = rest[1:]
        if rest[:1] == ["-m"] and len(rest) > 1:
            return _Invocation("module", rest[1], rest[2:])
        return _Invocation("script", rest[0], rest[1:]) if rest else None
    if first in {"bash", "sh"}:
        return _Invocation("script", rest[0], rest[1:]) if rest else None
    return _Invocation("script", first, rest)


def check_arguments(
    args: list[str], options: Options, target: str, source: str, runs: str | None = None
) -> list[str]:
    """Problems of ``args`` passed to ``target``: unknown options, values outside an option's choices,
    missing repository paths and invalid ``KEY VALUE`` overrides (of the config of :data:`CONFIG_FLAVOURS`
    for ``runs``, the script that does the work, ``target`` by default)."""
    problems: list[str] = []
    words = [_clean(word) for word in args]
    words = [word for word in words if word]
    overrides: list[tuple[str, str | None]] = []
    flavour_name = runs or target
    positional_seen = False
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == ELLIPSIS or word in PLACEHOLDER_WORDS:
            continue
        problems += [f"{source}: {problem}" for problem in repo_path_problems(word)]
        if word.startswith("-") and not re.fullmatch(r"-\d.*", word):
            option, equals, _ = word.partition("=")
            if overrides and options.config_overrides:
                problems.append(f"{source}: {target}: {option} after the KEY VALUE overrides is read as one")
                continue
            if option not in options.actions:
                problems.append(f"{source}: {target} has no option {option}")
                continue
            wanted = 0 if equals else options.value_counts[option]
            action = options.actions[option]
            taken = 0
            while index < len(words) and taken != wanted:
                value = words[index]
                ends_values = value.startswith("--") or (wanted < 0 and bool(CONFIG_KEY.fullmatch(value)))
                if value == ELLIPSIS or ends_values:
                    break
                problems += [f"{source}: {problem}" for problem in repo_path_problems(value)]
                choices = getattr(action, "choices", None)
                if choices is not None and not is_placeholder(value):
                    bad = [choice for choice in value.split("|") if choice not in choices]
                    if bad:
                        problems.append(
                            f"{source}: {target} {option} {value}: {bad[0]!r} is not one of {sorted(choices)}"
                        )
                index += 1
                taken += 1
            continue
        if options.subcommands and not positional_seen:
            positional_seen = True
            if word not in options.subcommands:
                known = ", ".join(sorted(options.subcommands))
                problems.append(f"{source}: {target} has no sub-command {word} (it has {known})")
                return problems
            options = options.subcommands[word]
            flavour_name = f"{flavour_name} {word}"
            continue
        positional_seen = True
        if CONFIG_KEY.fullmatch(word) and (options.config_overrides or "." in word):
            value = words[index] if index < len(words) else None
            index += value is not None
            overrides.append((word, value))
    if overrides and not options.config_overrides:
        problems.append(f"{source}: {target} takes no KEY VALUE config overrides, got {overrides[0][0]}")
    elif overrides:
        flavour = CONFIG_FLAVOURS.get(flavour_name)
        if flavour is None:
            problems.append(f"{source}: no config flavour for {flavour_name}: add it to CONFIG_FLAVOURS")
            return problems
        for key, value in overrides:
            problem = config_key_problem(config_of(flavour), key, value)
            if problem:
                problems.append(f"{source}: {flavour_name}: {problem}")
    return problems


def check_command(command: Command, repo: Path = REPO) -> list[str]:
    """Every problem of one documented command (an empty list: it is correct as far as can be checked
    without running it)."""
    invocation = resolve_invocation(list(command.argv))
    if invocation is None or command.elsewhere:
        return []
    source = command.source
    if invocation.kind == "make":
        return [
            f"{source}: make has no target {word}"
            for word in invocation.args
            if not word.startswith("-") and "=" not in word and word not in make_targets(repo)
        ]
    if invocation.kind == "module":
        found = importlib.util.find_spec(invocation.target) is not None
        return [] if found else [f"{source}: no Python module {invocation.target}"]
    if invocation.kind == "torchrun":
        return check_arguments(invocation.args, options_of_torchrun(), "torchrun", source)
    target = invocation.target
    if any(character in target for character in "*?") or ELLIPSIS in target:
        matched = any(repo.glob(target.replace(ELLIPSIS, "*")))
        return [] if matched else [f"{source}: no script matches {target}"]
    script = (repo / target).resolve()
    if not script.is_file():
        return [f"{source}: script {target} does not exist"]
    problems = check_arguments(invocation.torchrun_args, options_of_torchrun(), "torchrun", source)
    if script.suffix not in {".py", ".sh"} or not invocation.args:
        return problems
    runs = _relative(launcher_base(script) if script.suffix == ".sh" else script)
    return problems + check_arguments(invocation.args, options_of(script), _relative(script), source, runs)


def check_commands(commands: list[Command], repo: Path = REPO) -> list[str]:
    return [problem for command in commands for problem in check_command(command, repo)]


# ---------------------------------------------------------------------------------------------- links


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a page (lower case, punctuation dropped, spaces to
    hyphens, ``-1``, ``-2`` for repeats), plus explicit ``<a name=...>`` / ``<a id=...>`` anchors."""
    anchors: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for _, line, language in _prose_lines(text):
        heading = HEADING.match(line) if language is None else None
        if not heading:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(2))
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def link_problems(page: Path, text: str | None = None) -> list[str]:
    """Relative links (and images) of ``page`` whose file or ``#anchor`` does not exist. Links inside
    code are not links; ``http(s):`` and ``mailto:`` targets are not checked."""
    text = page.read_text() if text is None else text
    problems = []
    for number, target in link_targets(text):
        if re.match(r"[a-z]+:", target):
            continue
        path_part, _, anchor = target.partition("#")
        where = f"{_relative(page)}:{number}"
        linked = (page.parent / path_part).resolve()
        if path_part and not linked.exists():
            problems.append(f"{where}: link to {target}: {path_part} does not exist")
            continue
        if not anchor or (path_part and linked.suffix != ".md"):
            continue
        if anchor not in heading_anchors(linked.read_text() if path_part else text):
            page_name = path_part or "this page"
            problems.append(f"{where}: link to {target}: no heading #{anchor} in {page_name}")
    return problems


def linked_pages(page: Path, text: str | None = None) -> set[Path]:
    """The files that the relative links of ``page`` point to (anchors dropped), resolved."""
    text = page.read_text() if text is None else text
    return {
        (page.parent / target.partition("#")[0]).resolve()
        for _, target in link_targets(text)
        if not re.match(r"[a-z]+:", target) and target.partition("#")[0]
    }


def path_problems_in_prose(text: str, name: str) -> list[str]:
    """Repository paths named in inline code outside code blocks that do not exist."""
    return [
        f"{name}:{number}: {problem}"
        for number, span in inline_code(text)
        for word in span.split()
        for problem in repo_path_problems(word)
    ]


def config_keys_in_prose(text: str) -> Iterator[tuple[int, str]]:
    """Full config keys written in inline code outside code blocks (``PRETRAIN.DATA.IMAGE_ROOT``,
    ``SOCO.VIEWS.*``), with their line numbers."""
    for number, span in inline_code(text):
        for word in span.split():
            key = word.strip(",;:()")
            if re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)+(\.\*)?", key):
                yield number, key
