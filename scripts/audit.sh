#!/usr/bin/env bash
# pip-audit of the installed environment (the one of $PYTHON, default python3), for known vulnerabilities.
#
#   scripts/audit.sh                          # the environment of python3 (make audit: the project's .venv)
#   PYTHON=.venv/bin/python scripts/audit.sh  # another environment
#   scripts/audit.sh -r requirements.txt      # extra arguments go to pip-audit
#   scripts/audit.sh --report audit.json      # judge a report pip-audit wrote earlier (-f json), run nothing
#
# Exit status: 0 when nothing is found, and also when the vulnerability service cannot be reached or
# answers for no package (one plain line says so: nothing was audited, which is not a pass); 1 when a
# vulnerability is found (each is listed); 2 when pip-audit is missing or fails for another reason.
# Local (editable) packages such as tidecast itself are skipped: they are not on PyPI.
set -uo pipefail

PY="${PYTHON:-python3}"
REPORT=""
if [ "${1:-}" = "--report" ]; then
    REPORT="${2:?--report needs a file}"
    shift 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ -z "$REPORT" ]; then
    if ! "$PY" -c "import pip_audit" 2>/dev/null; then
        echo "audit: pip-audit is not installed in $("$PY" -c 'import sys; print(sys.prefix)' 2>/dev/null || echo "$PY")" \
             "(pip install pip-audit, or the project's test extra)"
        exit 2
    fi
    REPORT="$work/report.json"
    "$PY" -m pip_audit --skip-editable --progress-spinner off -f json -o "$REPORT" "$@" 2>"$work/stderr"
    status=$?
    if [ ! -s "$REPORT" ]; then
        # no report: a network failure is one line and exit 0, anything else is pip-audit's error
        reason="$(grep -Eo "(NameResolutionError|ConnectionError|ProxyError|ConnectTimeout|ReadTimeout|SSLError|Max retries exceeded|Temporary failure in name resolution|Connection refused|Network is unreachable)[^\"')]*" "$work/stderr" | head -n 1)"
        if [ -n "$reason" ]; then
            echo "audit: the vulnerability service could not be reached (${reason:0:160}); nothing was audited"
            exit 0
        fi
        echo "audit: pip-audit failed (exit $status):"
        tail -n 20 "$work/stderr"
        exit 2
    fi
fi

"$PY" - "$REPORT" <<'PYEOF'
import json
import sys

report = json.load(open(sys.argv[1], encoding="utf-8"))
deps = report.get("dependencies", []) if isinstance(report, dict) else report
audited = [d for d in deps if "skip_reason" not in d]
skipped = [d for d in deps if "skip_reason" in d]
found = [(d, v) for d in audited for v in d.get("vulns") or []]
if found:
    print(f"audit: {len(found)} known vulnerabilit{'y' if len(found) == 1 else 'ies'} in {len({d['name'] for d, _ in found})} package(s):")
    for dep, vuln in found:
        fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
        print(f"  {dep['name']} {dep.get('version', '?')}: {vuln.get('id')} (fixed in: {fixes})")
    sys.exit(1)
if not audited:
    print(f"audit: the vulnerability service answered for none of the {len(skipped)} packages; nothing was audited")
    sys.exit(0)
names = ", ".join(d["name"] for d in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
print(f"audit: {len(audited)} packages audited, no known vulnerabilities" + (f" ({len(skipped)} skipped: {names})" if skipped else ""))
PYEOF
