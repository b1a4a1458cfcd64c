"""docs/interfaces.md keeps up with the code.

Its index names exactly each module's ``__all__``, and every signature it writes as a code span
(`name(params)`) has the parameters of the real callable.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "interfaces.md"
PACKAGES = ("analysis", "trainers", "services", "sweeps")
INDEX_HEADING = "## Public names by module"


def _module(name: str) -> types.ModuleType:
    """Import a module the doc names by its folder path (``analysis.analyze``) from the installed
    namespace (``htsweep.analysis.analyze``)."""
    return importlib.import_module(name if name.split(".")[0] not in PACKAGES else f"htsweep.{name}")


def _public_modules() -> list[str]:
    """Every package and its modules, without the private ``_name`` ones."""
    names = []
    for pkg in PACKAGES:
        names.append(pkg)
        path = _module(pkg).__path__
        names += [f"{pkg}.{m.name}" for m in pkgutil.iter_modules(path) if not m.name.startswith("_")]
    return names


def _label(module: str) -> str:
    """How the index names a module: the package by name, a module by its file."""
    return module if "." not in module else module.replace(".", "/") + ".py"


def _exported() -> dict[str, set[str]]:
    out = {}
    for module in _public_modules():
        names = getattr(_module(module), "__all__", None)
        if names is not None:
            out[_label(module)] = set(names)
    return out


def _index() -> dict[str, set[str]]:
    """Module label → names, from the index table at the end of interfaces.md."""
    text = DOC.read_text(encoding="utf-8")
    assert INDEX_HEADING in text, f"{DOC.name} lost its {INDEX_HEADING!r} section"
    section = text.split(INDEX_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, flags=re.MULTILINE)
    return {label: set(re.findall(r"`([^`]+)`", names)) for label, names in rows}


def test_every_module_with_an_all_has_one_index_row():
    exported, index = _exported(), _index()
    assert sorted(set(exported) - set(index)) == [], "modules missing from the index"
    assert sorted(set(index) - set(exported)) == [], "index rows for modules that are gone or have no __all__"


def test_each_index_row_names_exactly_the_modules_all():
    exported, index = _exported(), _index()
    drift = {label: {"missing": sorted(names - index.get(label, set())),
                     "stale": sorted(index.get(label, set()) - names)}
             for label, names in exported.items() if names != index.get(label)}
    assert drift == {}, f"update the rows in {DOC.name}: {drift}"


def test_every_module_file_has_no_missing_all_but_the_cli():
    # A new public module declares its interface; the two without one are named in the doc.
    without = sorted(m for m in _public_modules() if not hasattr(_module(m), "__all__"))
    assert without == ["sweeps", "sweeps.cli"]
    text = DOC.read_text(encoding="utf-8")
    assert "`sweeps/__init__.py` and `sweeps/cli.py`" in text


# --- signatures ---------------------------------------------------------------------------------
# A code span written like a call, `name(params)` or `name(params) -> result`, states a signature.
# The doc's shorthand: `...` elides parameters (or, as a default, leaves it unstated), `*` starts
# the keyword-only ones, `**kw` stands for keywords passed on, `name (shape)` / `name: type`
# annotate, `a | b` lists alternatives (the first one of a default's is the default), and an
# argument written as a value (`{group: factor}`) names no parameter. Without `...` the documented
# parameters are all of them; without `*` none of them is keyword-only.

# Spans that read like calls but name something other than a Python callable, with why.
NOT_SIGNATURES = {
    "vec": "math: the vectorized outer product of the bilinear layer's inputs",
    "torch.get_num_threads": "torch's",
    "optimizer.step": "torch's (any optimizer)",
}
# Doc names that are not importable names: what they stand for.
ALIASES = {
    "handle.analyze.remote": "services.esd_actor.ESDService.analyze",  # a Ray actor handle's method
    "handle.stats.remote": "services.esd_actor.ESDService.stats",
    "analyzer": "trainers.monitor.InProcessAnalyzer.__call__",  # the analyzer protocol's default
}
_CALL = re.compile(r"(\.?[A-Za-z_][\w.]*)\(")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_LABEL = re.compile(r"^(?:\| |- )`((?:htsweep/)?\w+/\w+)\.py`")


@dataclass(frozen=True)
class DocParam:
    name: str | None  # None: an argument written as a value, which names no parameter
    marker: str = ""  # "*" bare star, "*args", "**kw", "..." elision; "" for a parameter
    default: str | None = None  # the documented default's text; None when none is written


@dataclass(frozen=True)
class DocSignature:
    span: str
    name: str
    params: tuple[DocParam, ...]
    context: str | None  # the module whose row or bullet states it, e.g. "analysis.analyze"


def _split_top(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
    return [*parts, text[start:]]


def _closing(text: str, open_at: int) -> int | None:
    """Index of the parenthesis closing the one at ``open_at`` (None if unbalanced)."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return None


def _parse_param(text: str) -> DocParam:
    text = text.strip()
    if text in ("*", "..."):
        return DocParam(None, text)
    if text.startswith("*"):
        marker = "**kw" if text.startswith("**") else "*args"
        return DocParam(text.lstrip("*"), marker)
    ident = _IDENT.match(text)
    if ident is None:
        return DocParam(None)
    _, *default = _split_top(text, "=")
    default_text = "=".join(default).strip() if default else None
    if default_text is not None:
        default_text = _split_top(default_text, " | ")[0].strip()
    return DocParam(ident.group(), default=default_text)


def parse_signature(span: str, context: str | None = None) -> DocSignature | None:
    """The signature a code span states, or None when the span is not written like a call."""
    span = span.replace("\\|", "|")
    call = _CALL.match(span)
    if call is None:
        return None
    close = _closing(span, call.end() - 1)
    if close is None or span[close + 1:] and not span[close + 1:].startswith(" -> "):
        return None
    inner = span[call.end():close].strip()
    params = tuple(_parse_param(p) for p in _split_top(inner, ",")) if inner else ()
    return DocSignature(span, call.group(1), params, context)


def _blocks(text: str) -> list[str]:
    """Table rows, bullets (with their indented continuation lines) and paragraphs."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        starts = not line.strip() or line.startswith(("| ", "- ", "#")) or not blocks
        if starts:
            blocks.append([])
        blocks[-1].append(line)
    return ["\n".join(b) for b in blocks]


def doc_signatures(text: str) -> list[DocSignature]:
    """Every signature the doc states before its index of names, with the module stating it."""
    body = text.split(INDEX_HEADING, 1)[0]
    out = []
    for block in _blocks(body):
        label = _LABEL.match(block)
        context = label.group(1).replace("/", ".") if label else None
        for span in re.findall(r"`([^`]+)`", block):  # a span may wrap onto the next line
            sig = parse_signature(re.sub(r"\s*\n\s*", " ", span), context)
            if sig is not None:
                out.append(sig)
    return out


def _import_path(dotted: str) -> tuple[Any, Any] | None:
    """Import ``pkg.module.Name.attr``: (owner, object), the owner being what the last name is on."""
    parts = dotted.split(".")
    owner, obj = None, _module(parts[0])
    for part in parts[1:]:
        if hasattr(obj, "__path__") and importlib.util.find_spec(f"{obj.__name__}.{part}") is not None:
            owner, obj = obj, importlib.import_module(f"{obj.__name__}.{part}")
        elif hasattr(obj, part):
            owner, obj = obj, getattr(obj, part)
        else:
            return None
    return owner, obj


def _our_classes(module: Any) -> list[type]:
    return [v for v in vars(module).values()
            if inspect.isclass(v) and v.__module__.split(".")[:2][-1] in PACKAGES and v.__module__.startswith("htsweep.")]


def _resolve(sig: DocSignature) -> tuple[Any, Any, str] | None:
    """(owner, object, qualified name) of the documented callable; None when nothing fits."""
    if sig.name in ALIASES:
        found = _import_path(ALIASES[sig.name])
        return None if found is None else (*found, ALIASES[sig.name])
    head, *rest = sig.name.lstrip(".").split(".")
    roots: list[tuple[Any, Any, str]] = []
    if head in PACKAGES:
        found = _import_path(sig.name)
        return None if found is None else (*found, sig.name)
    context = _module(sig.context) if sig.context else None
    if context is not None and hasattr(context, head) and not sig.name.startswith("."):
        roots.append((context, getattr(context, head), f"{sig.context}.{head}"))
    if not roots and not sig.name.startswith("."):
        exporters = [m for m in _public_modules() if head in getattr(_module(m), "__all__", ())]
        objects = {id(getattr(_module(m), head)): m for m in exporters}
        if len(objects) == 1:
            module = next(iter(objects.values()))
            roots.append((_module(module), getattr(_module(module), head),
                          f"{module}.{head}"))
    if not roots and context is not None:
        # a method (`.fit(...)`, a hook) of a class the module has; the base class when several do
        having = [c for c in _our_classes(context) if hasattr(c, head)]
        bases = [c for c in having if all(issubclass(o, c) for o in having)]
        if len(bases) == 1:
            roots.append((bases[0], getattr(bases[0], head), f"{bases[0].__module__}.{bases[0].__name__}.{head}"))
    if len(roots) != 1:
        return None
    owner, obj, qualname = roots[0]
    for part in rest:
        if not hasattr(obj, part):
            return None
        owner, obj, qualname = obj, getattr(obj, part), f"{qualname}.{part}"
    return owner, obj, qualname


def _real_parameters(owner: Any, obj: Any, name: str) -> list[inspect.Parameter]:
    # Ray's tracing hook adds `_ray_trace_ctx` to an actor class's methods once the class has been
    # made remote in this process (as the suite's earlier tests do): not part of our signature
    params = [p for p in inspect.signature(obj).parameters.values() if p.name != "_ray_trace_ctx"]
    # a plain function looked up on a class is a method: its first parameter is the instance
    if inspect.isclass(owner) and isinstance(inspect.getattr_static(owner, name), types.FunctionType):
        params = params[1:]
    return params


def _default_value(text: str, context: str | None) -> tuple[bool, Any]:
    """(known, value) of a documented default: a literal, or a name the module or a package has."""
    try:
        return True, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if re.fullmatch(r"[A-Za-z_][\w.]*", text):
        found = _resolve(DocSignature(text, text, (), context))
        if found is not None:
            return True, found[1]
    return False, None


def _is_bases_claim(obj: Any, params: tuple[DocParam, ...]) -> bool:
    """`SpectralMonitor(Callback)`: a class written with its base classes, not its parameters."""
    bases = {c.__name__ for c in getattr(obj, "__mro__", ())[1:]}
    return (inspect.isclass(obj) and bool(params)
            and all(p.name in bases and not p.marker and p.default is None for p in params))


def signature_drift(sig: DocSignature, owner: Any, obj: Any, name: str) -> list[str]:
    """How the documented signature differs from the real one (empty: they agree)."""
    real = _real_parameters(owner, obj, name.rsplit(".", 1)[-1])
    positional = [p for p in real if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name: p for p in real}
    markers = [p.marker for p in sig.params]
    star = next((i for i, m in enumerate(markers) if m in ("*", "*args")), None)
    elided = next((i for i, m in enumerate(markers) if m == "..."), None)
    problems, seen = [], []
    for i, doc in enumerate(sig.params):
        if doc.marker == "**kw":
            if not any(p.kind == p.VAR_KEYWORD for p in real):
                problems.append(f"documents **{doc.name} but takes no **kwargs")
            continue
        if doc.marker == "*args" and not any(p.kind == p.VAR_POSITIONAL for p in real):
            problems.append(f"documents *{doc.name} but takes no *args")
        if doc.marker:
            continue
        if doc.name is None:  # an argument written as a value: the positional parameter there
            if elided is not None and i > elided or i >= len(positional):
                problems.append(f"argument {i + 1} ({doc}) matches no positional parameter")
                continue
            param = positional[i]
        elif doc.name not in by_name:
            problems.append(f"no parameter {doc.name!r}")
            continue
        else:
            param = by_name[doc.name]
        seen.append(param.name)
        keyword_only = param.kind == param.KEYWORD_ONLY
        if star is not None and i > star and not keyword_only:
            problems.append(f"{param.name!r} is documented after '*' but is not keyword-only")
        if (star is None or i < star) and keyword_only and (elided is None or i < elided):
            problems.append(f"{param.name!r} is keyword-only: document it after '*'")
        if doc.default is not None and doc.default != "...":
            if param.default is param.empty:
                problems.append(f"{param.name!r} has no default (documented ={doc.default})")
            else:
                known, value = _default_value(doc.default, sig.context)
                if known and not _same(value, param.default):
                    problems.append(f"{param.name!r} defaults to {param.default!r}, documented ={doc.default}")
    order = [p.name for p in real if p.name in seen]
    if seen != order and len(set(seen)) == len(seen):
        problems.append(f"parameter order is {order}, documented {seen}")
    if elided is None:
        skipped = [p.name for p in real if p.name not in seen
                   and not (p.kind == p.VAR_KEYWORD and "**kw" in markers)
                   and not (p.kind == p.VAR_POSITIONAL and "*args" in markers)]
        if skipped:
            problems.append(f"undocumented parameter(s) {skipped} (list them or write '...')")
    return problems


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # False == 0, but a flag is not a count
        return a is b
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # an array-like default has no plain truth value
        return False


def _drift_report(signatures: list[DocSignature]) -> tuple[list[str], list[str]]:
    """(unresolved spans, drift lines) over ``signatures``."""
    unresolved, drift = [], []
    for sig in signatures:
        if sig.name in NOT_SIGNATURES:
            continue
        found = _resolve(sig)
        if found is None:
            unresolved.append(f"`{sig.span}` (in {sig.context or 'no module row'})")
            continue
        owner, obj, qualname = found
        if _is_bases_claim(obj, sig.params):
            continue
        try:
            real = inspect.signature(obj)
        except (TypeError, ValueError):
            unresolved.append(f"`{sig.span}`: {qualname} has no signature")
            continue
        real = real.replace(parameters=_real_parameters(owner, obj, qualname.rsplit(".", 1)[-1]))
        problems = signature_drift(sig, owner, obj, qualname)
        if problems:
            drift.append(f"`{sig.span}` vs {qualname}{real}: " + "; ".join(problems))
    return unresolved, drift


def test_every_signature_span_names_a_callable():
    unresolved, _ = _drift_report(doc_signatures(DOC.read_text(encoding="utf-8")))
    assert unresolved == [], (f"{DOC.name}: these spans are written like calls but name nothing importable "
                              f"(qualify the name, or list them in NOT_SIGNATURES / ALIASES): {unresolved}")


def test_documented_signatures_match_the_code():
    _, drift = _drift_report(doc_signatures(DOC.read_text(encoding="utf-8")))
    assert drift == [], f"update the signatures in {DOC.name}:\n" + "\n".join(drift)


def test_the_doc_states_the_signatures_it_is_checked_on():
    # a parser that stopped seeing spans would make the check above pass vacuously
    signatures = doc_signatures(DOC.read_text(encoding="utf-8"))
    names = {sig.name for sig in signatures}
    assert len(signatures) >= 90
    assert {"esd", "analyze_matrix", "plan_layers", "Trainer", "handle.analyze.remote", ".fit", "run_sweep",
            "TrackingConfig.for_workdir", "on_report"} <= names


@pytest.mark.parametrize(("span", "context", "expected"), [
    ('esd(W, *, device=None, name="", precision="float32")', None, "'precision' defaults to 'float64'"),
    ('esd(W, device=None, name="", precision="float64")', None, "'device' is keyword-only"),
    ('esd(W, *, device=None, precision="float64")', None, "undocumented parameter(s) ['name']"),
    ('esd(X, *, device=None, name="", precision="float64")', None, "no parameter 'X'"),
    ('esd(W, *, precision="float64", device=None, name="")', None, "parameter order"),
    ("Trainer(config, *, callbacks=(), data=None)", None, "'callbacks' is documented after '*'"),
    ("extract_layers(model, **same)", None, "takes no **kwargs"),
    ("mp_edges(sigma2, q=1.0)", None, "'q' has no default"),
    ("analyze_matrix(W, *, precision=MONITOR_PRECISION, ...)", "analysis.analyze", "'precision' defaults to"),
    (".fit(resume_from=None, epochs=3)", "trainers.train", "no parameter 'epochs'"),
])
def test_a_wrong_signature_is_caught(span, context, expected):
    sig = parse_signature(span, context)
    assert sig is not None
    unresolved, drift = _drift_report([sig])
    assert unresolved == [] and len(drift) == 1
    assert expected in drift[0] and drift[0].startswith(f"`{span}` vs ")


def test_a_right_or_elided_signature_passes_and_an_unknown_name_is_reported():
    right = ['esd(W, *, device=None, name="", precision="float64") -> ndarray', "esd(W, ...)",
             "esd(W, *, ...)", "plan_layers(source: model | path, *, conv=\"reshape\" | \"kernel\", ...)"]
    assert _drift_report([parse_signature(span) for span in right]) == ([], [])
    unresolved, _ = _drift_report([parse_signature("no_such_function(x)")])
    assert unresolved == ["`no_such_function(x)` (in no module row)"]
    assert parse_signature("prod(k)·m") is None and parse_signature("WᵀW/N") is None
