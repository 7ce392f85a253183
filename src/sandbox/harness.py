# Runs one candidate program against test cases inside the sandbox. Reads a JSON spec on stdin;
# writes JSON lines on the original stdout: {"cases": N}, {"load": ok, "error": ...}, then one
# {"case": i, "passed": bool, "output": repr} per case, then {"probe": j, "output": repr} for each
# probe: a case's call with one literal argument changed, run without an expected value, so that
# programs that pass the same cases can still be told apart by what they do (AlphaCode's
# clustering on generated inputs). The program's own output goes to stderr, which the sandbox
# captures under its output cap: a program that prints without end is killed, as a plain run is.
import ast, copy, json, math, os, signal, sys


def main():
    spec = json.loads(sys.stdin.read())
    out = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, "r")
    sys.stdout = sys.stderr

    def emit(**r):
        out.write(json.dumps(r) + "\n")
        out.flush()

    limit = float(spec.get("case_seconds", 3))

    def alarm(sig, frame):
        raise TimeoutError("case timed out")

    signal.signal(signal.SIGALRM, alarm)

    def timed(fn, seconds=None):
        signal.setitimer(signal.ITIMER_REAL, seconds or limit)
        try:
            return fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    entry = spec.get("entry_point")
    cases = [("example", e) for e in spec.get("examples", [])]
    setup = []
    tests = spec.get("tests")
    if tests:
        try:
            tree = ast.parse(tests)
        except SyntaxError as e:
            if not spec.get("lenient"):
                emit(cases=len(cases) + 1)
                emit(load=False, error="the tests do not parse: %s" % e)
                return
            # Model-written tests: keep the statements that parse (the last is often cut short).
            tree = ast.Module(body=[], type_ignores=[])
            chunks = []
            for line in tests.splitlines():
                if chunks and line[:1] in (" ", "\t", ")", "]", "}"):
                    chunks[-1] += "\n" + line
                else:
                    chunks.append(line)
            for chunk in chunks:
                try:
                    tree.body += ast.parse(chunk).body
                except SyntaxError:
                    pass
        asserts = [s for s in tree.body if isinstance(s, ast.Assert)]
        setup = [s for s in tree.body if not isinstance(s, ast.Assert)]
        cases += [("assert", s) for s in asserts]
        defines_check = any(isinstance(s, ast.FunctionDef) and s.name == "check" for s in setup)
        if not asserts and defines_check and entry:
            cases.append(("check", None))
    emit(cases=len(cases))
    ns = {"__name__": "candidate"}
    try:
        if spec.get("prelude"):
            timed(lambda: exec(compile(spec["prelude"], "prelude.py", "exec"), ns))
        program = spec["program"]
        if spec.get("definitions_only"):
            program = definitions(program)
        timed(lambda: exec(compile(program, "candidate.py", "exec"), ns))
        if entry and entry not in ns:
            raise NameError("the program defines no %r" % entry)
        if setup:
            timed(lambda: exec(compile(ast.Module(body=setup, type_ignores=[]), "tests.py", "exec"), ns))
    except BaseException as e:
        emit(load=False, error=describe(e))
        return
    emit(load=True)

    for i, (kind, case) in enumerate(cases):
        try:
            if kind == "example":
                got = timed(lambda: eval(case["call"], ns))
                try:
                    want = eval(case["expected"], ns)
                except BaseException:
                    want = case["expected"].strip()
                    got_cmp = str(got)
                    emit(case=i, passed=got_cmp == want or repr(got) == want, output=show(got))
                    continue
                emit(case=i, passed=same(got, want), output=show(got))
            elif kind == "assert":
                t = case.test
                if isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq):
                    got = timed(lambda: eval(compile(ast.Expression(t.left), "tests.py", "eval"), ns))
                    want = timed(lambda: eval(compile(ast.Expression(t.comparators[0]), "tests.py", "eval"), ns))
                    emit(case=i, passed=same(got, want), output=show(got))
                else:
                    timed(lambda: exec(compile(ast.Module(body=[case], type_ignores=[]), "tests.py", "exec"), ns))
                    emit(case=i, passed=True, output="ok")
            else:
                timed(lambda: ns["check"](ns[entry]))
                emit(case=i, passed=True, output="ok")
        except BaseException as e:
            emit(case=i, passed=False, output="raised " + type(e).__name__)

    calls = [c["call"] for k, c in cases if k == "example"]
    calls += [ast.unparse(c.test.left) for k, c in cases if k == "assert" and isinstance(c.test, ast.Compare)]
    for j, call in enumerate(probes(calls, int(spec.get("probes", 0)))):
        try:
            got = timed(lambda: eval(call, ns), float(spec.get("probe_seconds", 1)))
            emit(probe=j, output=show(got))
        except BaseException as e:
            emit(probe=j, output="raised " + type(e).__name__)


KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


def definitions(program):
    """The program's imports, definitions and assignments (EvalPlus's sanitizer keeps these): its
    example calls, prints and asserts at top level are dropped. A program that does not parse is
    left as written, to fail as written."""
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return program
    return ast.Module(body=[s for s in tree.body if isinstance(s, KEPT)], type_ignores=[])


def probes(calls, limit):
    """Calls with one literal argument changed, round-robin over the calls, at most `limit`."""
    per_call = []
    for call in calls:
        try:
            node = ast.parse(call, mode="eval").body
        except SyntaxError:
            continue
        if not isinstance(node, ast.Call):
            continue
        variants = []
        for k, arg in enumerate(node.args):
            for m in mutations(arg):
                new = copy.deepcopy(node)
                new.args[k] = m
                variants.append(ast.unparse(new))
        per_call.append(variants)
    out, seen = [], set(calls)
    for row in range(max((len(v) for v in per_call), default=0)):
        for v in per_call:
            if row < len(v) and v[row] not in seen and len(out) < limit:
                seen.add(v[row])
                out.append(v[row])
    return out


def mutations(arg):
    try:
        v = ast.literal_eval(arg)
    except Exception:
        return []
    if isinstance(v, bool):
        vs = [not v]
    elif isinstance(v, int):
        vs = [v + 1, v - 1, 2 * v + 3, 0]
    elif isinstance(v, float):
        vs = [v + 0.5, -v, 0.0]
    elif isinstance(v, str):
        vs = [v[::-1], v + v[:1], "", v.upper()]
    elif isinstance(v, list):
        vs = [v[::-1], v[:-1], v + v[:1], []]
    elif isinstance(v, tuple):
        vs = [tuple(reversed(v)), v[:-1]]
    else:
        vs = []
    return [ast.parse(repr(x), mode="eval").body for x in vs if x != v]


def same(a, b):
    try:
        if isinstance(a, float) or isinstance(b, float):
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        return bool(a == b)
    except BaseException:
        return False


def show(v):
    try:
        if isinstance(v, (set, frozenset)):
            # Set order follows string hashing, which differs per process.
            return "set" + repr(sorted(v, key=repr))[:300]
        return repr(v)[:300]
    except BaseException as e:
        return "unprintable " + type(e).__name__


def describe(e):
    return (type(e).__name__ + ": " + str(e))[:300]


main()
