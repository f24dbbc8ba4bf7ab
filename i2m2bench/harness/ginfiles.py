"""Gin files: parsing a suite's files and bindings, checking its scopes, listing installed suites.

The project's suites are installed with the package, in :func:`suites_dir` (``i2m2bench/gin``;
``gin/`` at the repository root links to it). An ``include 'NAME'`` in any gin file resolves to
the first of:

1. ``NAME`` itself, if it is an absolute path;
2. ``NAME`` next to the including file (so a suite's own ``base.gin`` wins over ours);
3. ``NAME`` in :func:`suites_dir` (so a gin file anywhere, e.g. in a plugin package, can
   ``include 'avmnist_smoke.gin'`` or ``include 'base.gin'``);
4. ``NAME`` relative to the working directory;
5. otherwise gin's own lookup (its working directory and any folder added with
   ``gin.add_config_file_search_path``), which reports the file and line of a missing include.

A circular include (``a.gin -> b.gin -> a.gin``) is refused before gin reads anything, in one
line naming the cycle. The files' lines are kept, in gin's reading order, so that a setting refused
later can be traced to the line that set it (:func:`binding_location`).

Only gin's public API is used. Steps 1-4 are done by a file reader registered once with
``gin.config.register_file_reader``: the files this module hands to gin carry a name that only
this reader claims; it serves the real file with each resolvable ``include`` rewritten, on the
same line, to such a name, and names the stream after the real path, so gin's error messages
give the real file and line. Nothing is added to gin's global search-path list
(``gin.add_config_file_search_path`` only appends, behind the working directory, and the list
outlives ``gin.clear_config``), so the order above does not depend on earlier parses, and gin
logs no failed lookups.
"""
from __future__ import annotations

import difflib
import io
import re
from pathlib import Path
from urllib.parse import quote, unquote

import gin

from i2m2bench.harness.errors import ConfigError

__all__ = ["suites_dir", "parse_gin", "check_scopes", "bound_scopes", "installed_suites",
           "resolve_gin_file", "binding_location"]

# The names this module hands to gin: ``i2m2bench/@ginfile@<absolute path, %-quoted>``. gin
# tries its own readers first: `open` finds no such file, and its package-resource reader
# (gin.resource_reader) looks for a file of that odd name in the i2m2bench package and quietly
# finds none (a name whose folder part is not an importable package would make it log an error).
_PREFIX = "i2m2bench/@ginfile@"
# `include '<name>'` at the start of a line: the literal is rewritten in place (same line).
_INCLUDE = re.compile(r"""^(?P<head>[ \t]*include[ \t]+)(?P<lit>'[^'\\\n]*'|"[^"\\\n]*")""", re.M)
_NAME = re.compile(re.escape(_PREFIX) + r"[^\s'\",\]]*")
_PARAMETERS_FOR = re.compile(r"^# Parameters for (\S+):$", re.M)  # gin.config_str()'s headers

# What the last parse_gin call read: every file (includes too, in the order gin opened them),
# and the --gin-param bindings; check_scopes points at the line that bound an unknown scope.
_parsed_files: list[Path] = []
_parsed_bindings: list[str] = []
# Every line the last parse_gin call read, in gin's order (an included file's lines where its
# `include` stands, then the --gin-param bindings): (where, text, installed suite?).
# binding_location() finds the line that set a binding; the last one wins, as in gin.
_parsed_lines: list[tuple[str, str, bool]] = []
# gin.config_str() right after that parse: locations are only given while gin still holds it.
_parsed_config: list[str] = []


_TRAIN_BINDING = re.compile(r"^\s*(?P<scopes>(?:[A-Za-z_][\w.]*/)*)train\.(?P<param>\w+)\s*=")


def explicit_train_settings(method: str) -> set[str]:
    """The ``train.*`` settings of ``method`` that a ``--gin-param`` binding of the last parse
    set explicitly (``train.epochs = 5`` or ``<method>/train.epochs = 5``): such a setting wins
    over ``embedded_schedule.overrides``, since the user asked for it on the command line."""
    found = set()
    for binding in _parsed_bindings:
        m = _TRAIN_BINDING.match(binding)
        if m is None:
            continue
        scopes = [s for s in m["scopes"].split("/") if s]
        if not scopes or method in scopes:
            found.add(m["param"])
    return found


def suites_dir() -> Path:
    """The folder of the installed gin suites (``i2m2bench/gin``)."""
    return Path(__file__).resolve().parents[1] / "gin"


# ------------------------------------------------------------------------------ include lookup
def _gin_name(path: Path) -> str:
    return _PREFIX + quote(str(path), safe="")


def _real_path(name: str) -> Path:
    return Path(unquote(name[len(_PREFIX):]))


def _is_ours(name: str) -> bool:
    return name.startswith(_PREFIX) and _real_path(name).is_file()


def _resolve_include(name: str, folder: Path) -> Path | None:
    """Where ``include 'name'`` in a file of ``folder`` resolves (steps 1-4), or None."""
    p = Path(name)
    bases = [Path()] if p.is_absolute() else [folder, suites_dir(), Path.cwd()]
    for base in bases:
        if (base / p).is_file():
            return (base / p).resolve()
    return None


def _open(name: str) -> io.StringIO:
    """gin's reader for our names: the real file, its includes made unambiguous."""
    path = _real_path(name)
    text = path.read_text(encoding="utf-8")
    _parsed_files.append(path)

    def rewrite(m: re.Match) -> str:
        target = _resolve_include(m.group("lit")[1:-1], path.parent)
        return m.group(0) if target is None else m.group("head") + repr(_gin_name(target))

    stream = io.StringIO(_INCLUDE.sub(rewrite, text))
    stream.name = str(path)  # gin's error locations name the real file
    return stream


gin.config.register_file_reader(_open, _is_ours)  # gin registers a reader only once


# ------------------------------------------------------------------------------ parsing
def _suite_names() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.gin"))


def resolve_gin_file(f: str | Path) -> Path:
    """A ``--gin`` argument as a file: an existing file, else the installed suite of that name
    (``avmnist.gin`` or ``avmnist``, without a folder, or ``official/avmnist.gin``); ConfigError
    otherwise."""
    if not str(f).strip():
        raise ConfigError(f"gin file {str(f)!r}: an empty name; name a .gin file")
    p = Path(f)
    if p.is_file():
        return p.resolve()
    if p.name == str(f) and p.name or (str(p.parent) == "official" and p.name):  # installed?
        for cand in (suites_dir() / p, suites_dir() / f"{p}.gin"):
            if cand.is_file():
                return cand.resolve()
    if p.is_dir():
        inside = sorted(q.name for q in p.glob("*.gin"))[:6]
        hint = f" holding {', '.join(inside)}" if inside else ""
        raise ConfigError(f"gin file {f}: is a folder{hint}, not a gin file; name a .gin file")
    raise ConfigError(f"gin file {f}: not found (nor one of the installed gin files in "
                      f"{suites_dir()}: {', '.join(_suite_names())})")


def _read_lines(path: Path, trail: tuple[Path, ...], out: list[tuple[str, str, bool]]) -> None:
    """Append the lines of gin file ``path`` to ``out`` in the order gin reads them (each
    resolvable ``include`` expanded where it stands); ConfigError on a circular include.
    ``trail``: the files whose ``include`` led here (outermost first)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return  # gin's own reader reports it, with its location
    ours = path.parent == suites_dir().resolve()
    includes = {text.count("\n", 0, m.start()) + 1: m.group("lit")[1:-1]
                for m in _INCLUDE.finditer(text)}
    for i, line in enumerate(text.splitlines(), 1):
        out.append((f'file "{path}", line {i}', line, ours))
        if i not in includes:
            continue
        target = _resolve_include(includes[i], path.parent)
        if target is None:
            continue  # gin's lookup reports a missing include, with file and line
        chain = (*trail, path)
        if target in chain:
            cycle = (*chain[chain.index(target):], target)
            raise ConfigError(f"circular include: {' -> '.join(str(p) for p in cycle)} "
                              f'(file "{path}", line {i}: {line.strip()})')
        _read_lines(target, (*trail, path), out)


_UNDEFINED_MACRO = re.compile(r"No bindings specified for '(?P<name>[^']+)/gin\.macro'")


def _undefined_macro(msg: str) -> str | None:
    """gin's "No bindings specified for 'X/gin.macro' in config string: <the whole config>" as
    one line naming the macro and where it is used."""
    m = _UNDEFINED_MACRO.search(msg)
    if m is None:
        return None
    name = m["name"]
    use = re.compile(rf"%{re.escape(name)}(?![\w.])")
    where = [w for w, line, _ in _parsed_lines if use.search(line.split("#", 1)[0])]
    at = f" (used at {'; '.join(where[:3])}{' and more' if len(where) > 3 else ''})" if where else ""
    return (f"undefined macro %{name}{at}: nothing binds {name}; define it in a gin file "
            f"({name} = <value>) or with --gin-param")


def parse_gin(files: list[str | Path], bindings: list[str] = ()) -> None:
    """Clear gin's config and parse ``files`` (in order) then ``bindings`` (``--gin-param``).

    Each of ``files`` is resolved by :func:`resolve_gin_file`; ``include``s resolve as the module
    docstring says, and a circular include is refused before gin reads anything. Errors raise
    ConfigError naming the files (and bindings); gin's own messages carry the file and line; an
    undefined macro is one line naming it and where it is used.
    """
    gin.clear_config()
    paths = [resolve_gin_file(f) for f in files]
    _parsed_files.clear()
    _parsed_bindings[:] = list(bindings)
    _parsed_lines.clear()
    for path in paths:
        _read_lines(path, (), _parsed_lines)
    _parsed_lines.extend((f"--gin-param {b!r}", line, False)
                         for b in bindings for line in str(b).splitlines())
    _parsed_config.clear()
    try:
        gin.parse_config_files_and_bindings([_gin_name(p) for p in paths], list(bindings))
        _parsed_config.append(gin.config_str())
    except Exception as exc:  # gin raises ValueError/ParseError/ImportError/IOError + location
        where = ", ".join(str(f) for f in files)
        extra = f" or --gin-param {list(bindings)}" if bindings else ""
        msg = _NAME.sub(lambda m: str(_real_path(m.group(0))), str(exc))
        macro = _undefined_macro(msg)
        if macro is not None:
            raise ConfigError(f"in {where}{extra}: {macro}") from exc
        if isinstance(exc, OSError) and "Unable to open file" in msg:
            msg += (f" (an include is looked up next to the including file, then in the "
                    f"installed suites {suites_dir()}, then in the working directory)")
        raise ConfigError(f"in {where}{extra}: {type(exc).__name__}: {msg}") from exc


def binding_location(selector: str, scope: str | None = None, *,
                     user_only: bool = False) -> tuple[str, str] | None:
    """Where the last :func:`parse_gin` set ``selector`` (``'train.epochs'``), as gin resolves it
    in ``scope``: the last ``scope/selector`` binding if there is one, else the last unscoped
    one. Returns (the binding as written, ``'file "F", line N'`` or ``"--gin-param '...'"``), or
    None when nothing binds it (the dataclass default), or when gin's config is no longer the one
    that call parsed (bindings made since, or another parse). ``user_only``: ignore the installed
    suites' own files (:func:`suites_dir`)."""
    if not _parsed_config or _parsed_config[0] != gin.config_str():
        return None
    configurable, _, param = selector.rpartition(".")
    key = rf"(?:[\w.]+\.)?{re.escape(configurable)}\.{re.escape(param)}[ \t]*="

    def last(prefix: str) -> tuple[str, str] | None:
        pattern = re.compile(rf"^[ \t]*{prefix}{key}")
        found = None
        for where, line, ours in _parsed_lines:
            if not (user_only and ours) and pattern.match(line):
                found = (line.split("#", 1)[0].strip(), where)
        return found

    scoped = last(rf"{re.escape(scope)}[ \t]*/[ \t]*") if scope else None
    return scoped or last("")


# ------------------------------------------------------------------------------ scopes
def bound_scopes() -> dict[str, list[str]]:
    """Outermost scope -> the scoped configurables bound under it (``i2m2_lf/train``, ...), read
    from ``gin.config_str()`` (macros are not scopes)."""
    out: dict[str, list[str]] = {}
    for selector in _PARAMETERS_FOR.findall(gin.config_str()):
        if "/" in selector:
            out.setdefault(selector.split("/", 1)[0], []).append(selector)
    return out


def _where_bound(scope: str, *, user_only: bool = False) -> list[str]:
    """Where the last parse bound something under ``scope``: 'file "F", line N' or a binding.
    ``user_only``: leave out the installed suites' own files."""
    line_re = re.compile(rf"^[ \t]*{re.escape(scope)}[ \t]*/")
    ours = suites_dir().resolve()
    found, seen = [], set()
    for path in _parsed_files:
        if path in seen or (user_only and Path(path).resolve().parent == ours):
            continue
        seen.add(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        found += [f'file "{path}", line {i}' for i, ln in enumerate(lines, 1) if line_re.match(ln)]
    found += [f"--gin-param {b!r}" for b in _parsed_bindings
              if any(line_re.match(ln) for ln in b.splitlines())]
    return found


def check_scopes(methods: list[str]) -> None:
    """After :func:`parse_gin`: every binding's outermost scope must name one of ``methods``.

    ConfigError otherwise, one line per unknown scope: the scope, where it was bound (file and
    line, or the ``--gin-param``), the suite's methods and the closest method name. Scopes bound
    only in the installed suites (:func:`suites_dir`) are exempt: a file that includes one of them
    may keep a subset of its methods.
    """
    unknown = {s: sels for s, sels in bound_scopes().items() if s not in set(methods)}
    # An installed suite's own methods may be left out of suite.methods by a file that includes
    # it (a plugin's suite keeping a few of ours): only scopes bound in the user's files or
    # --gin-param count as typos.
    unknown = {s: sels for s, sels in unknown.items() if _where_bound(s, user_only=True)}
    if not unknown:
        return
    problems = []
    for scope, selectors in sorted(unknown.items()):
        where = _where_bound(scope) or [f"{selectors[0]}"]
        more = f" (and {len(where) - 3} more)" if len(where) > 3 else ""
        close = difflib.get_close_matches(scope, list(methods), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"gin scope {scope!r} names no method of the suite{hint}: bound at "
                        f"{'; '.join(where[:3])}{more}")
    raise ConfigError("\n  ".join(problems) + f"\n  suite.methods: {list(methods)}")


# ------------------------------------------------------------------------------ installed suites
def _query(key: str, default=None):
    try:
        return gin.query_parameter(key)
    except ValueError:  # not bound
        return default


def installed_suites() -> list[dict]:
    """Every installed gin file that defines a suite (binds ``suite.name``), parsed with gin:
    ``{"file": Path, "name", "dataset", "methods": [...], "error": None}``. A file that fails to
    parse is listed with ``"error"`` (its message) and its stem as name. Clears gin's config
    before and after (the caller's parsed config is gone)."""
    out = []
    try:
        for path in sorted(suites_dir().glob("*.gin")) + sorted(suites_dir().glob("official/*.gin")):
            try:
                parse_gin([path])
            except ConfigError as exc:
                out.append({"file": path, "name": path.stem, "dataset": None, "methods": [],
                            "error": str(exc)})
                continue
            name = _query("suite.name")
            if name is None:  # shared defaults (base.gin), not a suite
                continue
            out.append({"file": path, "name": name, "dataset": _query("suite.dataset"),
                        "methods": list(_query("suite.methods", [])), "error": None})
    finally:
        gin.clear_config()
    return out
