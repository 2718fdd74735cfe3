#!/usr/bin/env bash
# test-failures.sh LOG: print, for every top-level test that failed in a
# `go test -v` log, its own messages (every `_test.go:N:` line and every
# `--- FAIL` line) without the node logs a failed integration test dumps
# (harness_test.go's "==== name: last lines of …" and "name| …" lines).
#
# The Makefile runs it after a failed integration or chaos run, so that the
# end of the console output, which is what a CI summary keeps, names the
# checks that failed and not only the last node's log lines. The whole
# output, dumps included, stays in the LOG file.
set -euo pipefail
log=${1:?usage: test-failures.sh LOG}
awk '
  /^=== RUN   Test[^\/]*$/ { cur = $3; buf[cur] = "" }
  /^--- FAIL: Test/        { failed[$3] = 1; order[++n] = $3 }
  /_test\.go:[0-9]+: ==== / || /_test\.go:[0-9]+: [A-Za-z0-9_.-]+\| / { next }
  /_test\.go:[0-9]+:/ || /^ *--- FAIL/ || /^panic/ { if (cur != "") buf[cur] = buf[cur] $0 "\n" }
  END {
    if (n == 0) exit
    print "==== what failed (the node logs are in the full log):"
    for (i = 1; i <= n; i++) { t = order[i]; if (t in seen) continue; seen[t] = 1; printf "%s", buf[t] }
  }
' "$log"
