# Wukong: make build | test | bench | up | down | image | release | generate | verify
SHELL := /usr/bin/env bash
BIN   := _output/bin
GO    ?= go
# Same flags locally and in CI, so the build cache is shared (docs/testing.md, "Build facts": -trimpath changes every key).
GOFLAGS_BUILD ?=
INTEGRATION_TIMEOUT ?= 60m

.PHONY: all build image release tools test-deps test test-unit test-fuzz test-integration verify generate bench up down clean

all: build

## build: wukong-apiserver, the kubectl-wukong plugin and wukong-agent (static) into _output/bin
build:
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/wukong-apiserver ./cmd/wukong-apiserver
	$(GO) build $(GOFLAGS_BUILD) -o $(BIN)/kubectl-wukong ./cmd/kubectl-wukong
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/wukong-agent ./cmd/wukong-agent

## image: wukong-apiserver's multi-arch (linux/amd64, linux/arm64) OCI image, reproducible, with no
## container daemon (hack/build-release.sh, hack/image). Written as an OCI layout to _output/image;
## IMAGE=registry/wukong-apiserver:tag pushes it too (IMAGE_INSECURE=1 for a plain-HTTP registry).
image:
	hack/build-release.sh image

## release: the image, and kubectl-wukong for linux, darwin and windows on amd64 and arm64 as archives
## with SHA256SUMS and a krew manifest, in _output/release/plugin (RELEASE_URL= where they will be served)
release: image
	hack/build-release.sh plugin

## tools: etcd, kube-apiserver, kubectl, versitygw (S3) and registry (OCI) for the tests and the local stack (cached)
tools:
	hack/tools/build.sh
	hack/tools/krew/build.sh

## test-deps: sshd, scp and qemu-img from apt when missing (hack/ensure-test-deps.sh)
test-deps:
	hack/ensure-test-deps.sh

## test: everything CI runs: static checks, generated-code check, unit, fuzz and integration tests.
## Needs root (guests on 127.0.0.N, tmpfs); installs the test-deps packages if missing.
test: test-deps verify test-unit test-fuzz test-integration

## test-fuzz: the path and tar checks under Go's fuzzer for a few seconds each.
## Budgets are execution counts, not durations: a duration races the fuzz
## coordinator's deadline in Go 1.26 and fails on a busy machine with nothing
## found (golang/go#75804, fixed in Go 1.27).
FUZZ_FAST ?= 100000x
FUZZ_SLOW ?= 10000x
test-fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzJoin$$' -fuzztime $(FUZZ_FAST) ./pkg/transfer/remotepath
	$(GO) test -run '^$$' -fuzz '^FuzzLinkTargetOK$$' -fuzztime $(FUZZ_FAST) ./pkg/transfer/remotepath
	$(GO) test -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(FUZZ_SLOW) ./pkg/transfer/archive
	$(GO) test -run '^$$' -fuzz '^FuzzExtractEntries$$' -fuzztime $(FUZZ_SLOW) ./pkg/transfer/archive
	$(GO) test -run '^$$' -fuzz '^FuzzExtract$$' -fuzztime $(FUZZ_SLOW) ./pkg/client/tarball
	$(GO) test -run '^$$' -fuzz '^FuzzAgentPath$$' -fuzztime $(FUZZ_SLOW) ./pkg/transfer/agent

test-unit:
	$(GO) test ./pkg/... ./cmd/...

test-integration: test-deps build tools
	WUKONG_APISERVER_BIN=$(CURDIR)/$(BIN)/wukong-apiserver KUBECTL_WUKONG_BIN=$(CURDIR)/$(BIN)/kubectl-wukong \
	  WUKONG_AGENT_BIN=$(CURDIR)/$(BIN)/wukong-agent \
	  $(GO) test -count=1 -timeout $(INTEGRATION_TIMEOUT) ./test/...

## verify: import rules (docs/architecture.md), licence headers, gofmt, go vet and generated code up to date
verify:
	hack/verify-imports.sh
	hack/verify-boilerplate.sh
	@out=$$(gofmt -l cmd pkg hack test); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	hack/verify-codegen.sh

## generate: regenerate deepcopy, conversion, defaults, openapi, clientset, listers, informers
generate:
	hack/update-codegen.sh

## bench: throughput and memory benchmarks, reported as ratios to a baseline measured in the same run
bench: test-deps build tools
	WUKONG_APISERVER_BIN=$(CURDIR)/$(BIN)/wukong-apiserver KUBECTL_WUKONG_BIN=$(CURDIR)/$(BIN)/kubectl-wukong \
	  $(GO) test -count=1 -p 1 -run '^$$' -bench . -benchtime 1x -timeout 60m ./test/...

## up: a local control plane (etcd, kube-apiserver, wukong-apiserver behind an APIService) in the background
up: test-deps build tools
	hack/local-up.sh start

## down: stop what `make up` started
down:
	hack/local-up.sh stop

clean:
	rm -rf _output
