# Short fuzzing runs of the parsers that read outside input: checkpoint
# files (safetensors, manifest.json), data files (IDX, CSV), config files
# and the collective's wire messages. Included from the Makefile
# (`include mk/fuzz.mk`); uses its GO.
#
#	make fuzz-smoke   each target for FUZZTIME (default 10s), one after the
#	                  other (go test fuzzes one target per run): about 80 s
#
# A failing input is written to the package's testdata/fuzz/<Target>/ and
# from then on runs with the seed corpus in every `go test`; commit it with
# the fix. -fuzzminimizetime bounds how long a new input is shrunk, which
# otherwise can take a whole short run.

FUZZTIME        ?= 10s
FUZZMINIMIZE    ?= 200x
FUZZ_TARGETS    := FuzzReadSafetensors:./checkpoint/ FuzzLoadManifest:./checkpoint/ \
                   FuzzReadIDX:./dataset/ FuzzLoadCSV:./dataset/ \
                   FuzzLoadFile:./train/ FuzzChunkCodec:./allreduce/

.PHONY: fuzz-smoke

fuzz-smoke:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  name=$${t%%:*}; pkg=$${t#*:}; \
	  echo "fuzz $$name $$pkg ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg; \
	done
