"""Load the Python 2 Autobahn|Testsuite case classes on Python 3, in memory.

The installed ``autobahntestsuite`` package (PyPI 25.10.1) is the original
Python 2 code.  Nothing on disk is modified: the case modules are read from
site-packages and compiled through a small source transform:

* py2 byte-string semantics: sources are decoded as latin-1, so a py2 literal
  such as ``'\\xce\\xba'`` or a raw UTF-8 literal (``"µ"`` in a coding=utf-8
  file) becomes a ``str`` whose code points are exactly the py2 bytes.  The
  protocol layer turns such strings back into bytes with ``latin-1``.
* ``print x`` statements become ``print(x)`` (only case6_x_x.py has them).
* ``type(name, (object, Case), d)`` (py2 old-style class mixing) drops the
  redundant ``object`` base, which is an MRO error on py3.
* ``a / b`` follows py2 rules (floor division for two ints) via an AST pass.
* py2 builtins (``xrange``, ``unichr``, ...) are provided per module, and
  ``import binascii`` inside case modules yields a shim that accepts
  latin-1 "byte strings".
* implicit relative imports (``from case import Case``) resolve to the
  modules of the installed ``autobahntestsuite/case`` directory.
* ``autobahn.websocket.*``, ``pkg_resources``, ``zope.interface`` and
  ``twisted.internet`` are satisfied by small stubs (see ``stubs.py``);
  permessage-deflate parameter classes come from ``pmce.py``.

``Case.compare`` (pickle equality of event lists) is wrapped so that bytes
received from the wire compare equal to the py2 byte strings of the case
definitions (bytes -> latin-1 str, recursively).  Expected results are never
touched.
"""

import ast
import binascii as _real_binascii
import builtins
import importlib.abc
import importlib.util
import os
import re
import sys
import types

_PRINT_RE = re.compile(r"^(\s*)print(\s+(?![=(])(.*?)|\s*)$")


def _fix_print(src):
    out = []
    for line in src.split("\n"):
        m = _PRINT_RE.match(line)
        if m:
            arg = (m.group(3) or "").rstrip()
            line = "%sprint(%s)" % (m.group(1), arg)
        out.append(line)
    return "\n".join(out)


def py2_div(a, b):
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return a / b


class _Py2Div(ast.NodeTransformer):
    def visit_Call(self, node):
        # type(name, (object, OldStyleBase), d): py2 old-style base classes may
        # be mixed with ``object``; on py3 that is an MRO error -> drop object
        self.generic_visit(node)
        if (isinstance(node.func, ast.Name) and node.func.id == "type" and len(node.args) == 3
                and isinstance(node.args[1], ast.Tuple) and len(node.args[1].elts) > 1):
            elts = node.args[1].elts
            if isinstance(elts[0], ast.Name) and elts[0].id == "object":
                node.args[1].elts = elts[1:]
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Div):
            call = ast.Call(func=ast.Name(id="__py2_div__", ctx=ast.Load()),
                            args=[node.left, node.right], keywords=[])
            return ast.copy_location(call, node)
        return node

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Div) and isinstance(node.target, ast.Name):
            call = ast.Call(func=ast.Name(id="__py2_div__", ctx=ast.Load()),
                            args=[ast.Name(id=node.target.id, ctx=ast.Load()), node.value],
                            keywords=[])
            assign = ast.Assign(targets=[node.target], value=call)
            return ast.copy_location(assign, node)
        return node


def to_bytes(x):
    """py2 'str' (latin-1 code points) -> bytes; real unicode -> UTF-8."""
    if x is None:
        return b""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, str):
        try:
            return x.encode("latin-1")
        except UnicodeEncodeError:
            return x.encode("utf-8")
    raise TypeError("expected bytes or str, got %r" % type(x))


def py2norm(obj):
    """bytes -> latin-1 str, recursively (py2 str == bytes)."""
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("latin-1")
    if isinstance(obj, list):
        return [py2norm(x) for x in obj]
    if isinstance(obj, tuple):
        return tuple(py2norm(x) for x in obj)
    if isinstance(obj, dict):
        return {py2norm(k): py2norm(v) for k, v in obj.items()}
    return obj


def _make_binascii_shim():
    m = types.ModuleType("binascii")
    for name in dir(_real_binascii):
        if not name.startswith("__"):
            setattr(m, name, getattr(_real_binascii, name))

    def b2a_hex(data):
        return _real_binascii.b2a_hex(to_bytes(data)).decode("ascii")

    m.b2a_hex = b2a_hex
    m.hexlify = b2a_hex
    return m


class Py2CaseLoader(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder/loader for the modules of autobahntestsuite/case/ as top-level modules."""

    def __init__(self, case_dir, shims):
        self.case_dir = case_dir
        self.names = {f[:-3] for f in os.listdir(case_dir)
                      if f.endswith(".py") and f != "__init__.py"}
        self.shims = shims  # module name -> module object (only visible to case modules)
        self.builtins = dict(builtins.__dict__)
        self.builtins.update({
            "xrange": range,
            "unichr": chr,
            "unicode": str,
            "long": int,
            "basestring": str,
            "__py2_div__": py2_div,
            "__import__": self._import,
        })

    # --- import hook -------------------------------------------------------
    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in self.shims:
            if fromlist:
                return self.shims[name]
            return self.shims[name.split(".")[0]]
        return builtins.__import__(name, globals, locals, fromlist, level)

    def find_spec(self, fullname, path=None, target=None):
        if path is None and fullname in self.names:
            return importlib.util.spec_from_file_location(
                fullname, os.path.join(self.case_dir, fullname + ".py"), loader=self)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        self.exec_file(module, module.__spec__.origin)

    def exec_file(self, module, path):
        with open(path, "rb") as f:
            src = f.read().decode("latin-1")
        src = _fix_print(src)
        tree = ast.parse(src, filename=path)
        tree = ast.fix_missing_locations(_Py2Div().visit(tree))
        code = compile(tree, path, "exec", dont_inherit=True)
        module.__dict__["__builtins__"] = self.builtins
        module.__file__ = path
        exec(code, module.__dict__)


def package_dir(name="autobahntestsuite"):
    spec = importlib.util.find_spec(name)  # does not execute the (py2) package __init__
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("package %r is not installed (pip install -r tests/autobahn/requirements.txt)" % name)
    return list(spec.submodule_search_locations)[0]


def load_cases():
    """Returns (case_module, cases_module, pkgdir).

    cases_module is autobahntestsuite/case/__init__.py executed in memory; it
    has Cases, CaseCategories, CaseSubCategories.
    """
    from stubs import make_shims

    pkgdir = package_dir()
    case_dir = os.path.join(pkgdir, "case")
    shims = make_shims(pkgdir)
    shims["binascii"] = _make_binascii_shim()
    loader = Py2CaseLoader(case_dir, shims)
    sys.meta_path.insert(0, loader)

    import importlib
    case_mod = importlib.import_module("case")

    # py2 str == bytes: compare wire bytes with py2 byte-string literals
    orig_compare = case_mod.Case.compare

    def compare(self, obj1, obj2):
        return orig_compare(self, py2norm(obj1), py2norm(obj2))

    case_mod.Case.compare = compare

    cases = types.ModuleType("autobahntestsuite_cases")
    loader.exec_file(cases, os.path.join(case_dir, "__init__.py"))
    return case_mod, cases, pkgdir
