# mirrord — `make` or `make help` lists the targets.
GO       ?= go
BIN      ?= bin/mirrord
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.versionString=$(VERSION)
PREFIX   ?= /usr
FUZZTIME ?= 10s

.PHONY: help build run test test-short bench bench-go bench-db bench-proxy bench-sync bench-cluster fuzz lint install clean reliability

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

build: ## build bin/mirrord
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mirrord

run: build ## serve on the defaults (127.0.0.1:8080, ./data)
	./$(BIN) serve

test: ## all tests with the race detector, integration tests included (needs pacman, repo-add, bsdtar)
	$(GO) test -race -timeout 30m ./...

test-short: ## unit tests only, no race detector
	$(GO) test -short ./...

bench: bench-go bench-db bench-proxy bench-sync bench-cluster ## every benchmark below, with ratios against the baselines

bench-go: ## Go micro-benchmarks (parsers, flights, hit path, upstream)
	$(GO) test -run '^$$' -bench '^Benchmark(Fetch|PlainHTTP|ReadDB15k|WriteDB15k|ReadPackage|Vercmp|Flight|DoHit|ServeHit|ServeHitTCP|Hit)$$' -benchmem ./...

bench-db: ## a 1,000-package db: repo-add vs mirrord's writer; hosted publish and 15k rebuild
	scripts/bench-db.sh
	$(GO) test -run '^$$' -bench '^Benchmark(Publish1000|Build15000)$$' -benchtime 1x ./internal/hosted/

bench-proxy: ## hits, cold coalescing and memory: mirrord vs nginx (needs nginx, wrk, curl, jq)
	scripts/bench-proxy.sh

bench-cluster: build ## nodes over a SeaweedFS bucket: hits s3 vs fs, cold coalescing 1 vs 3 nodes, takeover (needs weed: scripts/seaweedfs.sh)
	MIRRORD_BENCH=1 MIRRORD_E2E_BINARY=$(CURDIR)/bin/mirrord $(GO) test -count=1 -v -run '^TestBenchCluster$$' ./e2e/

bench-sync: ## first sync and no-change resync of a 15,000-package repo vs wget/a plain downloader
	$(GO) test -run '^$$' -bench '^BenchmarkSync15k$$' -benchtime 1x ./internal/sync/

reliability: ## crash, hostile-input, fuzz and 1,000-connection load runs; rewrites docs/RELIABILITY.md (about 12 min)
	scripts/reliability.sh

fuzz: ## every fuzz target for FUZZTIME (default 10s)
	scripts/fuzz.sh $(FUZZTIME)

lint: ## go vet and a gofmt check
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# install builds only a missing binary (make build install rebuilds), so
# that it can run as root, or in a PKGBUILD's package(), without compiling.
$(BIN):
	$(MAKE) build

install: $(BIN) ## install bin/mirrord, the systemd unit and snippets and the example config under DESTDIR/PREFIX
	install -Dm755 $(BIN) $(DESTDIR)$(PREFIX)/bin/mirrord
	install -Dm644 systemd/mirrord.service $(DESTDIR)$(PREFIX)/lib/systemd/system/mirrord.service
	install -Dm644 systemd/mirrord.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/mirrord.conf
	install -Dm644 systemd/mirrord.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/mirrord.conf
	install -Dm644 config/mirrord.example.yaml $(DESTDIR)/etc/mirrord/mirrord.example.yaml

clean: ## remove build output
	rm -rf bin
