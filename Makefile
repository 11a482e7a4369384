# Evident: run `make` (or `make help`) for the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

GO        ?= go
# A go.work in a parent directory must not change what this module builds.
export GOWORK := off
# The Go release everything is built and tested with: go1.26.8's standard
# library has known vulnerabilities (net/http, crypto/tls, crypto/x509; see
# `make vulncheck`). The go command fetches this release from the module
# proxy once (76 MB). GO_TOOLCHAIN=local uses the machine's own Go, with
# which `make vulncheck` (and so `make test`) fails if that Go is older.
GO_TOOLCHAIN ?= go1.27.3
export GOTOOLCHAIN := $(GO_TOOLCHAIN)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/evident-dev/evident/internal/version.Version=$(VERSION)
BIN       := bin
FUZZTIME  ?= 10s
# Pinned protobuf generators: `make proto` output must not depend on the machine.
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PROTOC_VERSION     := 3.21.12
# Pinned vulnerability scanner and database snapshot (the Go vulnerability
# database's OSV records as published in golang.org/x/vulndb), so that
# `make vulncheck` works where vuln.go.dev cannot be reached. Update the
# snapshot with VULNDB_VERSION=<newer pseudo-version>.
GOVULNCHECK    := golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
VULNDB_DIR     := var/vulndb/$(VULNDB_VERSION)
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "}; /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build evident-agent and evident-server into ./bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./agent/cmd/evident-agent ./server/cmd/evident-server

.PHONY: cross
cross: ## Build both binaries for linux, darwin and windows (amd64, arm64) with CGO_ENABLED=0
	@set -e; for os in linux darwin windows; do for arch in amd64 arm64; do \
	  ext=; [ $$os = windows ] && ext=.exe; \
	  echo "  $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$os-$$arch/evident-agent$$ext ./agent/cmd/evident-agent; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$$os-$$arch/evident-server$$ext ./server/cmd/evident-server; \
	done; done

.PHONY: run
run: build ## Start a server on SQLite under ./var, enroll this machine's agent, print its posture report, stop
	./test/run-local.sh

.PHONY: serve
serve: build ## Keep the server of ./var up with the web UI on 127.0.0.1:8080 (WEB=host:port); prints a login token
	./test/serve.sh

.PHONY: run-swtpm
run-swtpm: build ## Like run, with the agent bound to a software TPM (swtpm) under ./var/swtpm-lab
	VAR=var/swtpm-lab EVIDENT_TPM=swtpm ./test/run-local.sh

.PHONY: release
release: ## From the v* tag at HEAD: packages, binaries for 6 platforms, man pages and SHA256SUMS into ./dist/release-VERSION
	./installers/release.sh

.PHONY: man
man: build ## Write the man pages and bash/zsh/fish completions, generated from the binaries' own help, into ./bin/docs
	for p in evident-agent evident-server; do $(GO) run ./installers/docgen --bin bin/$$p --version "$$(./installers/version.sh)" --date "$$(git log -1 --format=%cs)" --out bin/docs || exit 1; done

.PHONY: package
package: ## Build the deb and rpm (amd64, arm64) and the Windows MSI (x64) into ./dist, versioned from git
	./installers/package.sh --out dist

.PHONY: pkg-macos
pkg-macos: ## Build the macOS installer package into ./dist (on a Mac: pkgbuild, productbuild, lipo)
	./installers/darwin/build-pkg.sh --version "$$(./installers/version.sh)" --out dist/evident-agent-$$(./installers/version.sh).pkg

.PHONY: test
test: proto-check cross-check vulncheck ## Run every test (unit, conformance, end-to-end over loopback mTLS) and the vulnerability scan
	$(GO) vet ./...
	$(GO) vet -tags evidenttest ./internal/clock ./test/...
	$(GO) build -o bin/testsummary ./internal/testsummary
	set -o pipefail; $(GO) test -count=1 -timeout 20m -json ./... | bin/testsummary

.PHONY: cross-check
cross-check: ## Check with CGO_ENABLED=0 that the agent builds for darwin, windows and linux/arm64 and that every package vets on windows/amd64 and darwin/arm64
	@set -e; for t in windows/amd64 windows/arm64 darwin/amd64 darwin/arm64 linux/arm64; do \
	  echo "cross-check $$t"; \
	  CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -o /dev/null ./agent/cmd/evident-agent; \
	  case $$t in \
	  windows/amd64|darwin/arm64) \
	    CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) vet ./...; \
	    CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) vet -tags evidenttest ./internal/clock ./test/...;; \
	  *) CGO_ENABLED=0 GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) vet ./agent/... ./collectors/... ./platform/...;; \
	  esac; \
	done

.PHONY: vulncheck
vulncheck: $(VULNDB_DIR)/index/db.json ## Fail if the code calls a function with a known vulnerability (govulncheck, for linux, windows and darwin)
	@set -e; tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT; \
	GOBIN=$$tmp $(GO) install $(GOVULNCHECK); $(GO) build -o $$tmp/vulncheck ./test/vulncheck; \
	for os in linux windows darwin; do \
	  echo "vulncheck GOOS=$$os ($(GOTOOLCHAIN), database $(VULNDB_VERSION))"; \
	  GOOS=$$os $$tmp/govulncheck -db file://$(CURDIR)/$(VULNDB_DIR) -format json ./... > $$tmp/$$os.json; \
	  $$tmp/vulncheck -accepted test/vulncheck/accepted.txt < $$tmp/$$os.json; \
	done

# The database is built from the snapshot's OSV records with the indexer the
# Go team publishes next to them.
$(VULNDB_DIR)/index/db.json:
	@set -eo pipefail; osv=$$(GOFLAGS=-mod=mod $(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	test -d "$$osv/data/osv" || { echo "vulncheck: golang.org/x/vulndb@$(VULNDB_VERSION) has no data/osv"; exit 1; }; \
	rm -rf $(VULNDB_DIR).tmp; \
	GOFLAGS=-mod=mod $(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) -vulns "$$osv/data/osv" -out $(VULNDB_DIR).tmp; \
	rm -rf $(VULNDB_DIR); mv $(VULNDB_DIR).tmp $(VULNDB_DIR)

.PHONY: test-race
test-race: ## Run the tests with the race detector
	$(GO) test -race -count=1 ./...

.PHONY: load
load: build ## Load test: DEVICES simulated agents (1000) against SPAWN local server replicas (1) on STORE (empty: SQLite) every INTERVAL (10s) for DURATION (1m); checks exactly-once
	$(GO) run ./test/load -bin $(BIN)/evident-server -devices $(or $(DEVICES),1000) -spawn $(or $(SPAWN),1) -interval $(or $(INTERVAL),10s) -duration $(or $(DURATION),1m) $(if $(STORE),-store '$(STORE)')

.PHONY: bench-scale
bench-scale: build ## Fleet-scale table (not in make test; long): SQLite and PostgreSQL at SIZES (1000,10000,50000) streams, with the raw write limits (PG=postgres://… for the database)
	$(GO) run ./test/load scale -bin $(BIN)/evident-server $(if $(SIZES),-sizes $(SIZES)) $(if $(STORES),-stores $(STORES)) $(if $(PG),-pg '$(PG)')

.PHONY: chaos
chaos: ## Long fault run (not in make test; root, at most 15 min): FAULTS (240) kills, cuts, partitions, lost acks, full disks and clock jumps against a real server and AGENTS (3) agents; 0 lost, 0 duplicated
	$(GO) run ./test/chaos -faults $(or $(FAULTS),240) -agents $(or $(AGENTS),3) $(if $(SEED),-seed $(SEED))

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 10s) each
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./test/fuzz.sh

.PHONY: bench
bench: build ## Print performance figures: collection cycle, agent RSS/CPU, outbox vs raw bbolt, ingest vs raw SQLite and gRPC, TPM verification, period report, firewall evaluation, alerts vs raw loopback POSTs
	$(GO) test -run '^$$' -bench . -benchtime 1s ./agent/outbox ./server/store/sqlite ./server/attest ./agent/tpm
	$(GO) test -run '^$$' -bench PeriodReport -benchtime 1x ./server/period
	$(GO) test -run '^$$' -bench Evaluate -benchtime 1s ./collectors/firewall
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./server/webhook
	$(GO) run ./test/bench

.PHONY: proto-tools
proto-tools:
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler ($(PROTOC_VERSION))"; exit 1; }
	@protoc --version | grep -q ' $(PROTOC_VERSION)$$' || echo "warning: $$(protoc --version) is not the pinned $(PROTOC_VERSION); generated headers will differ"
	@tmp=$$(mktemp -d); echo 'syntax = "proto3"; import "google/protobuf/timestamp.proto";' > $$tmp/wkt.proto; \
	  protoc -I $$tmp --descriptor_set_out=/dev/null $$tmp/wkt.proto 2>/dev/null; rc=$$?; rm -rf $$tmp; \
	  [ $$rc = 0 ] || { echo "protoc cannot find the well-known types (google/protobuf/*.proto): apt-get install libprotobuf-dev"; exit 1; }
	@GOBIN=$(GOBIN_DIR) $(GO) install $(PROTOC_GEN_GO)
	@GOBIN=$(GOBIN_DIR) $(GO) install $(PROTOC_GEN_GO_GRPC)

.PHONY: proto
proto: proto-tools ## Regenerate the protobuf/gRPC Go code (pinned generator versions)
	PATH="$(GOBIN_DIR):$$PATH" ./proto/gen.sh

.PHONY: proto-check
proto-check: ## Fail if the checked-in generated code is stale
	@set -e; if ! command -v protoc >/dev/null; then \
	  if [ "$$CI" = true ]; then echo "proto-check: protoc missing (apt-get install protobuf-compiler libprotobuf-dev)"; exit 1; fi; \
	  echo "proto-check skipped: protoc not installed (apt-get install protobuf-compiler libprotobuf-dev)"; exit 0; fi; \
	$(MAKE) --no-print-directory proto-tools; \
	tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	PATH="$(GOBIN_DIR):$$PATH" ./proto/gen.sh $$tmp || { echo "proto-check: protoc failed"; exit 1; }; \
	if ! diff -r $$tmp/proto/evident/v1 proto/evident/v1 -x '*.proto' >/dev/null; then \
	  diff -r $$tmp/proto/evident/v1 proto/evident/v1 -x '*.proto' | head -20; \
	  echo "proto-check: generated code is stale: run 'make proto' and commit"; exit 1; fi; \
	echo "proto-check: generated code is up to date"

.PHONY: clean
clean: ## Remove ./bin and ./var
	rm -rf $(BIN) var
