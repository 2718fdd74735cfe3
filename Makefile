SHELL := /bin/bash
# hasidecar — see README.md. Every target works from a clean clone on a
# machine with Go and the PostgreSQL 15 server binaries (.ci/run installs
# them when missing).
GO       ?= go
BIN      := bin/hasidecar
# The guard beside every postmaster (internal/guardcmd): found by the agent
# in its own directory, so it is always built next to BIN.
GUARD_BIN := bin/hasidecar-guard
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/hasidecar/hasidecar/node.Version=$(VERSION)
# Unit-test packages, all under the race detector (pgctl's tests run real
# Postgres processes; the integration suite is not raced: it runs binaries).
RACE_PKGS := ./fsm/... ./clusterconf/... ./config/... ./node/... ./cmd/... ./internal/... ./pgctl/...
LAB_DIR  ?= lab

.PHONY: all build test test-unit test-integration sim chaos lint proto demo demo-down bench-failover bench-switchover bench-restart bench-gate bench-idle soak clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/hasidecar
	$(GO) build -ldflags "-s -w" -o $(GUARD_BIN) ./cmd/hasidecar-guard

## test: everything CI runs: unit tests (with -race), pgctl against real
## Postgres, and the integration suite with real processes.
test: sim test-unit test-integration

## sim: the deterministic simulator (sim/, docs/SIMULATOR.md): SCHEDULES
## seeded schedules (default 10000) in virtual time, every invariant checked
## after every step. SEED=n replays one (SIM_KEEP=i,j: only those fault
## events; SIM_TRACE=1 prints its events), SIM_SCHEDULE=name a named one
## (sim/faults.go); SIM_PLANT=name switches on a planted bug
## (no-drift-margin, promote-before-commit, no-fence, no-commit-gate,
## sync-count-minus-one),
## which must make it fail.
SCHEDULES ?= 10000
sim:
	SCHEDULES=$(SCHEDULES) SEED=$(SEED) SIM_KEEP=$(SIM_KEEP) SIM_PLANT=$(SIM_PLANT) SIM_TRACE=$(SIM_TRACE) SIM_SCHEDULE=$(SIM_SCHEDULE) \
		$(GO) test -v -count=1 -timeout 10m -run '^Test' ./sim/ 2>&1 | grep -v '^\(ok \|FAIL\|=== RUN\|--- \|PASS\)' ; test $${PIPESTATUS[0]} -eq 0

# Each fuzz target for FUZZTIME on top of its seed corpus (go test -fuzz takes
# one package and one target at a time); a crasher lands in testdata/fuzz.
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator may
# fail the run with a bare "context deadline exceeded" at the deadline, no
# crasher written (golang/go#75804, fixed in Go 1.27; seen in CI here).
FUZZTIME ?= 40000x

test-unit:
	$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./fsm/
	$(GO) test -run '^$$' -fuzz '^FuzzRestore$$' -fuzztime $(FUZZTIME) ./fsm/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/history/
	$(GO) test -run '^$$' -fuzz '^FuzzParseDetails$$' -fuzztime $(FUZZTIME) ./clusterconf/

test-integration:
	$(GO) test -count=1 -timeout 40m -v ./integration/... 2>&1 | tee integration.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go' ; rc=$${PIPESTATUS[0]}; [ $$rc -eq 0 ] || scripts/test-failures.sh integration.log; exit $$rc

## chaos: the long form of TestChaos (make test runs each fault once, seed 1):
## CHAOS_ROUNDS seeded faults (default 30: each of the 15 faults twice); a random
## seed unless CHAOS_SEED is given; CHAOS_FAULTS=a,b runs exactly those.
CHAOS_ROUNDS ?= 30
CHAOS_SEED   ?= $(shell date +%s)
chaos:
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_SEED=$(CHAOS_SEED) $(GO) test -count=1 -timeout 90m -v -run 'TestChaos$$' ./integration/ 2>&1 | tee chaos.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go' ; rc=$${PIPESTATUS[0]}; [ $$rc -eq 0 ] || scripts/test-failures.sh chaos.log; exit $$rc

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## proto: regenerate the committed Go code from proto/ (needs buf,
## protoc-gen-go and protoc-gen-go-grpc on PATH; the README's Developing section says how to install them).
proto:
	buf lint
	buf generate

## demo: a primary, three standbys and a witness on this machine; writes a
## table on the primary, reads it from every standby, prints cluster show.
demo: build
	./scripts/demo.sh $(LAB_DIR)

demo-down:
	$(BIN) lab down --dir $(LAB_DIR) --purge

## Benchmarks print measured numbers; they assert nothing about speed.
bench-failover: build
	$(GO) run ./bench/failover -bin $(BIN) $(BENCH_ARGS)

## soak: one lab under pgbench and an INSERT writer for SOAK_DURATION, with
## Raft-leader and standby kills (never the primary); counts false failovers
## and fencings (bench/soak). BENCH_ARGS='-lease 2s -raft 250ms' tries timings.
SOAK_DURATION ?= 30m
soak: build
	$(GO) run ./bench/soak -bin $(BIN) -duration $(SOAK_DURATION) $(BENCH_ARGS)

bench-switchover: build
	$(GO) run ./bench/switchover -bin $(BIN) $(BENCH_ARGS)

bench-restart: build
	$(GO) run ./bench/restart -bin $(BIN) $(BENCH_ARGS)

bench-gate: build
	$(GO) run ./bench/gate -bin $(BIN) $(BENCH_ARGS)

## bench-idle: CPU and memory of every hasidecar process of a lab at rest
## (2 standbys + witness, 30 s; bench/idle/idle.sh says the knobs). On a
## shared machine: flock /tmp/heavy.lock make bench-idle
bench-idle: build
	BIN=$(BIN) ./bench/idle/idle.sh

clean:
	rm -rf bin integration.log chaos.log
