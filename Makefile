# llm.h: build the examples, tests and benchmarks. Every example is one .c file that
# includes llm.h; there is no library to build.
#
#   make            examples into build/
#   make test       the test suite, built and run in parallel (about a minute on 2 cores):
#                   every feature, PyTorch's answers from tests/fixtures (no torch needed)
#   make check      test, plus the ASan+UBSan builds of every test, the CUDA emulator
#                   suites, ThreadSanitizer, GPT-2 124M (test-big) and, when
#                   /usr/bin/python3 has torch, the fixtures regenerated and compared
#   make test-big   GPT-2 124M's full shape against PyTorch
#   make fuzz       every libFuzzer target for FUZZ_SECONDS each (clang)
#   make fixtures   regenerate the PyTorch references and compare them with the
#                   committed ones (fixtures-update replaces them)
#   make valgrind   memcheck on the examples' typical runs
#   make tsan       the thread pool and two models in two threads under ThreadSanitizer
#   make bench      benchmarks (speed is measured here, never in tests)
#   make demo       train a small GPT-2 on Tiny Shakespeare, then generate
#   make data       fetch the data files into data/ (or copy them from ../shared/data)
#   make cuda       the CUDA companion, examples and tests built with nvcc
#
# A test is a program that prints "name: N passed, N failed, N skipped" last;
# tests/run.sh runs a list of them (in parallel with -j) and ends with the total. To
# run the suite elsewhere (another compiler, an emulator): build $(TEST_BINS) with B= and
# CC= set, and run tests/run.sh with LLM_TEST_WRAPPER (e.g. "qemu-aarch64 -L /usr/aarch64-
# linux-gnu" or "wine"); the fixtures and fuzz corpora are found through LLM_FIXTURES and
# LLM_FUZZ_DIR, which $(TEST_ENV) sets to absolute paths.

CC      ?= cc
CXX     ?= c++
PY      ?= /usr/bin/python3
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g -std=c99 -Wall -Wextra -pthread
LDLIBS  ?= -lm -pthread
SAN     := -DLLM_TEST_SAN=1 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
TSAN    := -O1 -g -fsanitize=thread
B       := build
NPROC   := $(shell nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

EXAMPLES := $(patsubst examples/%.c,$(B)/%,$(wildcard examples/*.c))
BENCHES  := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/bench_*.c))
# The CUDA tests on the CPU, through tests/cuda_emu.h (see the CUDA block below).
EMUTESTS    := $(B)/emu/tests/test_cuda $(B)/emu/tests/test_dist $(B)/emu/tests/test_cuda_emu $(B)/emu/tests/test_cuda_attn16
EMUSANTESTS := $(B)/emu/san/test_cuda $(B)/emu/san/test_dist $(B)/emu/san/test_cuda_emu $(B)/emu/san/test_cuda_attn16
EMUEXAMPLES := $(B)/emu/generate $(B)/emu/train_gpt2 $(B)/emu/chat $(B)/emu/bench_cuda

# ---- the test programs ---------------------------------------------------------------
# TEST_NAMES: tests/test_*.c, plus the replays of the fuzz corpora (tests/fuzz_*.c built
# with -DFUZZ_REPLAY, see tests/fuzz.h). Those that test private llm__ functions define
# LLM_IMPLEMENTATION themselves (TEST_SELF); the others link the implementation compiled
# once, $(B)/llm.o (from tests/llm_impl.c).
TEST_NAMES := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c)) \
              $(filter-out fuzz_seeds,$(patsubst tests/%.c,%,$(wildcard tests/fuzz_*.c)))
TEST_SELF  := $(patsubst tests/%.c,%,$(shell grep -l '^\#define LLM_IMPLEMENTATION' tests/test_*.c tests/fuzz_*.c))
TEST_HDRS  := tests/test.h tests/ref.h tests/fuzz.h
TESTS      := $(addprefix $(B)/tests/,$(TEST_NAMES))
# llm.h as C++, and as C11 with clang when it is installed.
CLANG      := $(shell command -v clang 2>/dev/null)
TEST_BINS  := $(TESTS) $(B)/tests/test_cpp $(if $(CLANG),$(B)/tests/test_options_c11)
# What `make test` runs: the programs, then the examples as users run them.
TEST_RUN   := $(TEST_BINS) tests/test_examples.sh
TEST_ENV    = LLM_FIXTURES=$(CURDIR)/tests/fixtures LLM_FUZZ_DIR=$(CURDIR)/tests/fuzz LLM_BUILD=$(B)

.PHONY: all test test-build check check-build test-big fixtures fixtures-update fuzz fuzz-build \
        fuzz-seeds valgrind tsan bench demo data clean cuda
all: $(EXAMPLES)

$(B)/%: examples/%.c llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)

$(B)/llm.o: tests/llm_impl.c llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. -c $< -o $@

$(filter $(addprefix $(B)/tests/,$(TEST_SELF)),$(TESTS)): $(B)/tests/%: tests/%.c llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFUZZ_REPLAY -I. $< -o $@ $(LDLIBS)
$(filter-out $(addprefix $(B)/tests/,$(TEST_SELF)),$(TESTS)): $(B)/tests/%: tests/%.c $(B)/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFUZZ_REPLAY -I. $< $(B)/llm.o -o $@ $(LDLIBS)

$(B)/tests/test_cpp: tests/test_cpp.cpp llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -g -Wall -Wextra -pthread -I. $< -o $@ $(LDLIBS)

$(B)/tests/test_options_c11: tests/test_options.c llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CLANG) $(OPT) -g -std=c11 -Wall -Wextra -pthread -I. $< -o $@ $(LDLIBS)

# The same programs under ASan+UBSan (make check), with the implementation in $(B)/san/llm.o;
# the CUDA tests' sanitizer copies are the emulated ones (EMUSANTESTS).
SANTESTS := $(addprefix $(B)/san/,$(filter-out test_cuda test_cuda_attn16 test_dist,$(TEST_NAMES)))
$(B)/san/llm.o: tests/llm_impl.c llm.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(SAN) -I. -c $< -o $@
$(filter $(addprefix $(B)/san/,$(TEST_SELF)),$(SANTESTS)): $(B)/san/%: tests/%.c llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(SAN) -DFUZZ_REPLAY -I. $< -o $@ $(LDLIBS)
$(filter-out $(addprefix $(B)/san/,$(TEST_SELF)),$(SANTESTS)): $(B)/san/%: tests/%.c $(B)/san/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(SAN) -DFUZZ_REPLAY -I. $< $(B)/san/llm.o -o $@ $(LDLIBS)

# ThreadSanitizer: the thread pool, and two models trained in two threads at once.
TSANTESTS := $(B)/tsan/test_threads
$(B)/tsan/%: tests/%.c tests/llm_impl.c llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(TSAN) -DLLM_TEST_TSAN=1 -I. $< tests/llm_impl.c -o $@ $(LDLIBS)

# GPT-2 124M against PyTorch (tests/big_gpt2.c; make test-big and make check).
$(B)/tests/big_gpt2: tests/big_gpt2.c $(B)/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $< $(B)/llm.o -o $@ $(LDLIBS)

# ---- fuzzing -------------------------------------------------------------------------------
# libFuzzer targets (clang): one binary per input surface, each started from its seed
# corpus tests/fuzz/<corpus>/ (`make fuzz-seeds` rewrites the seeds) and run for
# FUZZ_SECONDS; new inputs go to $(B)/fuzz/corpus/<name>/, crashes to $(B)/fuzz/.
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.
# name:source:mode:corpus:max_len
FUZZERS := safetensors:fuzz_model:0:safetensors:16384 llmc:fuzz_model:1:llmc:16384 \
           llama2c:fuzz_model:2:llama2c:16384 ckpt:fuzz_model:3:ckpt:65536 \
           llama_tokenizer:fuzz_llama_tokenizer:0:llama_tokenizer:8192 gpt2_tokenizer:fuzz_tokenizer:0:tokenizer:4096 \
           dataset:fuzz_dataset:0:dataset:4096 json:fuzz_json:0:json:4096
fz = $(word $(2),$(subst :, ,$(1)))
FUZZ_BINS := $(foreach f,$(FUZZERS),$(B)/fuzz/fuzz_$(call fz,$(f),1))
define FUZZ_RULE
$(B)/fuzz/fuzz_$(1): tests/$(2).c tests/llm_impl.c llm.h $(TEST_HDRS)
	@mkdir -p $$(dir $$@)
	$$(CLANG) $$(FUZZ_FLAGS) -DFUZZ_MODE=$(3) $$< $(if $(filter $(2),$(TEST_SELF)),,tests/llm_impl.c) -o $$@ $$(LDLIBS)
endef
$(foreach f,$(FUZZERS),$(eval $(call FUZZ_RULE,$(call fz,$(f),1),$(call fz,$(f),2),$(call fz,$(f),3))))
fuzz-build: $(FUZZ_BINS)
fuzz:
	@[ -n "$(CLANG)" ] || { echo "make fuzz: needs clang with libFuzzer"; exit 1; }
	@$(MAKE) --no-print-directory -j$(NPROC) fuzz-build
	@$(TEST_ENV) FUZZERS="$(FUZZERS)" FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run.sh tests/test_fuzz.sh
fuzz-seeds: $(B)/tests/fuzz_seeds
	$(B)/tests/fuzz_seeds tests/fuzz
$(B)/tests/fuzz_seeds: tests/fuzz_seeds.c $(B)/llm.o llm.h $(TEST_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I. $< $(B)/llm.o -o $@ $(LDLIBS)

# ---- running them ----------------------------------------------------------------------
# The builds run in a sub-make with one job per core; tests/run.sh then runs the programs
# in parallel and prints each one's output whole, in the order given, then the total.
test:
	@$(MAKE) --no-print-directory -j$(NPROC) test-build
	@$(TEST_ENV) tests/run.sh -j $(NPROC) $(TEST_RUN)
test-build: all $(TEST_BINS)

# CHECK_FUZZ=1 adds every fuzz target for FUZZ_SECONDS, CHECK_VALGRIND=1 the valgrind run
# (.ci/run sets both), so that one total line covers everything.
CHECK_RUN = $(SANTESTS) $(EMUTESTS) tests/test_cuda_examples.sh $(EMUSANTESTS) $(TSANTESTS) $(B)/tests/big_gpt2 \
            tests/test_fixtures.sh $(if $(CHECK_VALGRIND),tests/test_valgrind.sh) $(if $(CHECK_FUZZ),tests/test_fuzz.sh)
check:
	@$(MAKE) --no-print-directory -j$(NPROC) test-build check-build
	@$(TEST_ENV) PY=$(PY) FUZZERS="$(FUZZERS)" FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run.sh -j $(NPROC) $(TEST_RUN) $(CHECK_RUN)
check-build: $(SANTESTS) $(EMUTESTS) $(EMUEXAMPLES) $(EMUSANTESTS) $(TSANTESTS) $(B)/tests/big_gpt2 \
             $(if $(CHECK_FUZZ),$(if $(CLANG),$(FUZZ_BINS)))

test-big:
	@$(MAKE) --no-print-directory -j$(NPROC) $(B)/tests/big_gpt2
	@$(TEST_ENV) tests/run.sh $(B)/tests/big_gpt2

tsan:
	@$(MAKE) --no-print-directory -j$(NPROC) $(TSANTESTS)
	@$(TEST_ENV) tests/run.sh $(TSANTESTS)

# ---- PyTorch references ----------------------------------------------------------------
# tests/ref_*.py compute PyTorch's answers (Debian python3-torch) into $(B)/fixtures;
# tests/test_fixtures.sh then compares them with the committed tests/fixtures (the test
# that the repository's truth is PyTorch's now). fixtures-update copies them over.
fixtures:
	@$(TEST_ENV) PY=$(PY) tests/run.sh tests/test_fixtures.sh
fixtures-update:
	@$(PY) -c 'import torch' || { echo "fixtures-update: $(PY) has no torch (apt-get install python3-torch)"; exit 1; }
	@rm -rf $(B)/fixtures && mkdir -p $(B)/fixtures
	@for s in tests/ref_gpt2.py tests/ref_llama.py tests/ref_generate.py; do echo "== $$s"; $(PY) $$s $(B)/fixtures || exit 1; done
	rm -rf tests/fixtures && cp -r $(B)/fixtures tests/fixtures

# ---- valgrind -------------------------------------------------------------------------------
# memcheck on the examples' typical runs (tests/test_valgrind.sh: tests/test_examples.sh with
# every example under valgrind; any error or leak fails).
valgrind: all
	@$(TEST_ENV) tests/run.sh tests/test_valgrind.sh

# OpenBLAS is used by the SGEMM benchmark only, as the yardstick (never by llm.h).
OPENBLAS_INC := $(wildcard /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h)
ifneq ($(OPENBLAS_INC),)
$(B)/bench/bench_gemm: BENCH_LIBS = -DLLM_BENCH_OPENBLAS -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas
endif

$(B)/bench/%: bench/%.c llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O3 -I. $< -o $@ $(LDLIBS) $(BENCH_LIBS)

bench: $(BENCHES) all
	@for b in $(BENCHES); do echo "== $$b"; $$b || exit 1; done

# The README's first command: train a small GPT-2 on Tiny Shakespeare, then generate.
demo: all
	@scripts/demo.sh

# Data files into data/ (downloaded and checked, or copied from ../shared/data offline).
data:
	@scripts/data.sh

clean:
	rm -rf $(B)

# ---- CUDA: `make cuda` builds llm_cuda.cu with nvcc, then the CUDA test and the
# examples linked with it (compiled with -DLLM_CUDA=1, which enables `--device cuda`),
# and runs the test (it prints SKIP where there is no GPU).
NVCC      ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_75,code=sm_75 -gencode arch=compute_80,code=sm_80 \
             -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra
CUDA_LIBS ?= -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart -lstdc++
CUDA_EXAMPLES := $(patsubst examples/%.c,$(B)/cuda/%,$(wildcard examples/*.c))
# NCCL, for multi-GPU data parallel (llm_options.dist_world), when nccl.h is found;
# `make cuda NCCL=` builds without it (dist_world >= 1 is then refused at create).
NCCL      ?= $(if $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h),1)
NCCL_DEFS := $(if $(NCCL),-DLLM_CUDA_NCCL=1)
comma     := ,
NCCL_LIBS := $(if $(NCCL),$(foreach d,lib lib64,$(if $(wildcard $(CUDA_HOME)/$(d)/libnccl.so*), \
               -L$(CUDA_HOME)/$(d) -Wl$(comma)-rpath$(comma)$(CUDA_HOME)/$(d))) -lnccl)

$(B)/cuda/llm_cuda.o: llm_cuda.cu llm.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(NCCL_DEFS) -I. -c $< -o $@

$(B)/cuda/tests/test_cuda: tests/test_cuda.c $(B)/cuda/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(B)/cuda/tests/test_dist: tests/test_dist.c $(B)/cuda/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(B)/cuda/tests/test_cuda_attn16: tests/test_cuda_attn16.c $(B)/cuda/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

$(B)/cuda/%: examples/%.c $(B)/cuda/llm_cuda.o llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

# The GPU benchmark (GPT-2 124M training step and MFU, batch-1 inference): `make cuda`
# builds it, `make bench-cuda` runs it (SKIP without a GPU).
$(B)/cuda/bench_cuda: bench/bench_cuda.c bench/bench.h $(B)/cuda/llm_cuda.o llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O3 -DLLM_CUDA=1 -I. $< $(B)/cuda/llm_cuda.o -o $@ \
	  $(NCCL_LIBS) $(CUDA_LIBS) $(LDLIBS)

.PHONY: bench-cuda
cuda: $(B)/cuda/bench_cuda
bench-cuda: $(B)/cuda/bench_cuda
	$(B)/cuda/bench_cuda

cuda: $(B)/cuda/llm_cuda.o $(B)/cuda/tests/test_cuda $(B)/cuda/tests/test_dist $(B)/cuda/tests/test_cuda_attn16 $(CUDA_EXAMPLES)
	@tests/run.sh $(B)/cuda/tests/test_cuda $(B)/cuda/tests/test_dist $(B)/cuda/tests/test_cuda_attn16

# ---- CUDA without a GPU: llm_cuda.cu compiled by the host C++ compiler against
# tests/cuda_emu.h, which runs its kernels on the CPU (each CUDA thread a fiber) and
# emulates cuBLAS, cuBLASLt and NCCL (ranks as host threads). `make check` runs the CUDA tests linked with
# it (they print EMULATED), the emulator's own test, and the same under ASan+UBSan.
EMUFLAGS    := -std=c++17 -Wall -Wextra -pthread -include tests/cuda_emu.h -include tests/cuda_emu_wmma.h -DLLM_CUDA_EMU=1 -I.

$(B)/emu/llm_cuda.o: llm_cuda.cu tests/cuda_emu.h tests/cuda_emu_wmma.h llm.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -g $(EMUFLAGS) -x c++ -c $< -o $@
$(B)/emu/tests/test_cuda_emu: tests/test_cuda_emu.cpp tests/cuda_emu.h tests/test.h
	@mkdir -p $(dir $@)
	$(CXX) $(OPT) -g $(EMUFLAGS) $< -o $@ $(LDLIBS)
$(B)/emu/tests/%: tests/%.c $(B)/emu/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. -c $< -o $@.o
	$(CXX) $@.o $(B)/emu/llm_cuda.o -o $@ $(LDLIBS)

# the examples, as users run them with --device cuda, and bench_cuda --tiny
# (tests/test_cuda_examples.sh)
$(B)/emu/%: examples/%.c $(B)/emu/llm_cuda.o llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. -c $< -o $@.o
	$(CXX) $@.o $(B)/emu/llm_cuda.o -o $@ $(LDLIBS)
$(B)/emu/bench_cuda: bench/bench_cuda.c bench/bench.h $(B)/emu/llm_cuda.o llm.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLM_CUDA=1 -I. -c $< -o $@.o
	$(CXX) $@.o $(B)/emu/llm_cuda.o -o $@ $(LDLIBS)

$(B)/emu/san/llm_cuda.o: llm_cuda.cu tests/cuda_emu.h tests/cuda_emu_wmma.h llm.h
	@mkdir -p $(dir $@)
	$(CXX) $(SAN) $(EMUFLAGS) -x c++ -c $< -o $@
$(B)/emu/san/test_cuda_emu: tests/test_cuda_emu.cpp tests/cuda_emu.h tests/test.h
	@mkdir -p $(dir $@)
	$(CXX) $(SAN) $(EMUFLAGS) $< -o $@ $(LDLIBS)
$(B)/emu/san/%: tests/%.c $(B)/emu/san/llm_cuda.o llm.h tests/test.h
	@mkdir -p $(dir $@)
	$(CC) -std=c99 -Wall -Wextra -pthread $(SAN) -DLLM_CUDA=1 -I. -c $< -o $@.o
	$(CXX) $(SAN) $@.o $(B)/emu/san/llm_cuda.o -o $@ $(LDLIBS)
# test_cuda builds models from the committed PyTorch fixtures through tests/ref.h.
$(B)/cuda/tests/test_cuda $(B)/emu/tests/test_cuda $(B)/emu/san/test_cuda: tests/ref.h
