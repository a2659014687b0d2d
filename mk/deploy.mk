# Container images and a local docker-compose cluster.
# Included from the Makefile (`include mk/deploy.mk`, after its variables):
# uses its GO, BIN, VERSION, COMMIT, DATE, MNIST_MOD and build-static.
#
#	make images       ringtrain:dev and ringtrain-etcd:v3.7.3, both FROM scratch
#	make etcd-binary  bin/etcd and bin/etcdctl from the official modules
#	make up           build the images, start docker-compose.yml, follow the run to its end
#	make down         stop it and delete its volumes (etcd data, checkpoints)
#	make chaos        build the images, then run every fault scenario of
#	                  `ringtrain chaos` against the compose cluster, each in
#	                  its own project, removed afterwards (CHAOS_ARGS); each
#	                  must end with the params_sha256 of an undisturbed
#	                  single-process `ringtrain train` in the same image
#
# No registry is needed: every image is assembled from host-built binaries.

DOCKER          ?= docker
# `docker compose` (v2) where installed, else Debian's docker-compose 1.29.
COMPOSE         ?= $(shell if $(DOCKER) compose version >/dev/null 2>&1; then echo '$(DOCKER) compose'; else echo docker-compose; fi)
IMAGE_TAG       ?= dev
ETCD_VERSION    := v3.7.3
RINGTRAIN_IMAGE ?= ringtrain:$(IMAGE_TAG)
ETCD_IMAGE      ?= ringtrain-etcd:$(ETCD_VERSION)
# Extra arguments for `compose up`, e.g. UP_ARGS='--scale worker=5'.
UP_ARGS         ?=
# The run name docker-compose.yml trains and how long `make up` follows it.
RINGTRAIN_RUN   ?= mnist
UP_TIMEOUT      ?= 3600
# Arguments for `ringtrain chaos`, e.g. CHAOS_ARGS='--scenario kill-worker --seed 7 --strike-step 800'.
CHAOS_ARGS      ?= --all
IMAGES_DIR      := out/images
ETCD_BUILD      := deploy/etcd-build

.PHONY: images image-ringtrain image-etcd etcd-binary up down chaos

# One build date for the binary and the image labels: the Makefile's DATE is
# re-evaluated at every use, and target-specific values reach prerequisites.
images image-ringtrain: DATE := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)

images: image-ringtrain image-etcd

R := $(IMAGES_DIR)/ringtrain
E := $(IMAGES_DIR)/etcd

image-ringtrain: build-static
	@rm -rf $(R) && mkdir -p $(R)/root/data/mnist $(R)/root/tmp $(R)/owned/checkpoints \
	  $(R)/owned/certs $(R)/owned/certs-workers $(R)/owned/certs-etcd $(R)/owned/ca-root
	cp $(BIN)/ringtrain-static $(R)/root/ringtrain
	@dir=$$($(GO) mod download -json $(MNIST_MOD) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$$/\1/p'); \
	  if [ -z "$$dir" ] || ! ls "$$dir"/data/*-ubyte.gz >/dev/null 2>&1; then \
	    echo "MNIST files not found: 'go mod download -json $(MNIST_MOD)' printed Dir=\"$$dir\""; exit 1; fi; \
	  echo "cp $$dir/data/*-ubyte.gz $(R)/root/data/mnist/"; \
	  cp "$$dir"/data/*-ubyte.gz $(R)/root/data/mnist/
	chmod 0755 $(R)/root/ringtrain $(R)/root/data $(R)/root/data/mnist $(R)/owned/checkpoints
	chmod 0644 $(R)/root/data/mnist/*
	chmod 1777 $(R)/root/tmp
	chmod 0700 $(R)/owned/certs $(R)/owned/certs-workers $(R)/owned/certs-etcd $(R)/owned/ca-root
	cp deploy/docker/ringtrain.Dockerfile $(R)/Dockerfile
	$(DOCKER) build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) \
	  -t $(RINGTRAIN_IMAGE) $(R)
	$(DOCKER) run --rm $(RINGTRAIN_IMAGE) version

image-etcd: etcd-binary
	@rm -rf $(E) && mkdir -p $(E)/root/usr/local/bin $(E)/root/var/lib $(E)/root/tmp $(E)/owned/etcd
	cp $(BIN)/etcd $(BIN)/etcdctl $(E)/root/usr/local/bin/
	chmod 0755 $(E)/root/usr/local/bin/etcd $(E)/root/usr/local/bin/etcdctl $(E)/root/var/lib
	chmod 0700 $(E)/owned/etcd
	chmod 1777 $(E)/root/tmp
	cp deploy/docker/etcd.Dockerfile $(E)/Dockerfile
	$(DOCKER) build --build-arg ETCD_VERSION=$(ETCD_VERSION) -t $(ETCD_IMAGE) $(E)
	$(DOCKER) run --rm $(ETCD_IMAGE) --version

# The real etcd, built in its own module (deploy/etcd-build/go.mod) so that
# its dependencies never enter ringtrain's go.mod; CGO_ENABLED=0 makes it static.
etcd-binary: $(BIN)/etcd $(BIN)/etcdctl

$(BIN)/etcd: $(ETCD_BUILD)/go.mod $(ETCD_BUILD)/go.sum
	@mkdir -p $(BIN)
	cd $(ETCD_BUILD) && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(CURDIR)/$@ go.etcd.io/etcd/server/v3

$(BIN)/etcdctl: $(ETCD_BUILD)/go.mod $(ETCD_BUILD)/go.sum
	@mkdir -p $(BIN)
	cd $(ETCD_BUILD) && GOWORK=off CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(CURDIR)/$@ go.etcd.io/etcd/etcdctl/v3

up: images
	RINGTRAIN_IMAGE=$(RINGTRAIN_IMAGE) ETCD_IMAGE=$(ETCD_IMAGE) RINGTRAIN_RUN=$(RINGTRAIN_RUN) \
	  $(COMPOSE) up -d $(UP_ARGS)
	COMPOSE='$(COMPOSE)' RINGTRAIN_RUN=$(RINGTRAIN_RUN) UP_TIMEOUT=$(UP_TIMEOUT) deploy/compose/follow.sh

down:
	RINGTRAIN_IMAGE=$(RINGTRAIN_IMAGE) ETCD_IMAGE=$(ETCD_IMAGE) $(COMPOSE) down -v --remove-orphans

# Fault scenarios (deploy/chaos/): kill -9 a worker, kill the leader, pause,
# disconnect, restart etcd, corrupt a checkpoint, scale up and down.
chaos: images build
	RINGTRAIN_IMAGE=$(RINGTRAIN_IMAGE) ETCD_IMAGE=$(ETCD_IMAGE) COMPOSE='$(COMPOSE)' \
	  $(BIN)/ringtrain chaos $(CHAOS_ARGS)
